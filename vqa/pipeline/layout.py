"""Where each step reads and writes, relative to the project root (dvc.yaml declares the same)."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path("artifacts")
CORPUS_MANIFEST = ARTIFACTS / "corpus" / "manifest.json"
QUARANTINE = ARTIFACTS / "corpus" / "quarantine.json"
SIMULATED = ARTIFACTS / "simulated"
SIMULATED_MANIFEST = SIMULATED / "manifest.json"
CACHE = ARTIFACTS / "cache"  # content-addressed caches, safe to delete, not versioned


def round_dir(round_name: str) -> Path:
    return ARTIFACTS / round_name


def teacher_scores(round_name: str) -> Path:
    return round_dir(round_name) / "teacher_scores.json"


def pairs(round_name: str) -> Path:
    return round_dir(round_name) / "pairs.csv"


def pairs_summary(round_name: str) -> Path:
    return round_dir(round_name) / "pairs_summary.json"


def student(round_name: str) -> Path:
    return round_dir(round_name) / "student.pt"


def train_history(round_name: str) -> Path:
    return round_dir(round_name) / "train_history.json"


def metrics(round_name: str) -> Path:
    return round_dir(round_name) / "metrics.json"


def evaluation_details(round_name: str) -> Path:
    return round_dir(round_name) / "evaluation.json"


def registered(round_name: str) -> Path:
    return round_dir(round_name) / "registered.json"


def report_dir(round_name: str) -> Path:
    """report.md, figures.csv and plots/*.png of the round (vqa.evaluation.report)."""
    return round_dir(round_name) / "report"

