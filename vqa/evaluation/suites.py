"""Evaluation suites: labelled video sets and how a model's scores are correlated with them.

known_order: held-out content degraded at graded levels (level 0 = pristine); ground truth is the
level order inside each (source, distortion) group; SRCC/PLCC are computed per group against
-level and averaged. Reported over all groups, and over in-domain vs OOD distortion types.

ugc-smoke (or any CSV with file, mos, dataset columns): real videos with human MOS on different
scales, so correlations are computed within each dataset group with at least `min_group_size`
videos and averaged weighted by group size.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqa.evaluation.metrics import plcc, srcc, weighted_mean


@dataclass
class SuiteItem:
    path: Path
    group: str
    target: float  # higher = better quality
    tags: dict = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    items: list[SuiteItem]
    kind: str  # "known_order" or "mos"
    missing: list[str] = field(default_factory=list)


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: labels file not found") from None


def load_known_order(root: str | Path) -> Suite:
    root = Path(root)
    labels = root / "labels.csv"
    items, missing, pristine = [], [], {}
    for n, row in enumerate(_read_csv(labels), start=2):
        try:
            level = int(row["level"])
            file = root / row["file"]
            ood = str(row.get("ood", "0")).strip() in ("1", "true", "True")
            source, distortion = row["source"], row["distortion"]
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{labels}:{n}: bad row ({exc})") from None
        if not file.exists():
            missing.append(str(file))
        elif distortion == "pristine":
            pristine[source] = file
        else:
            items.append(SuiteItem(file, f"{source}/{distortion}", -float(level), {"ood": ood, "source": source}))
    # The pristine clip is level 0 of every distortion group of its source.
    groups = {it.group: it.tags for it in items}
    for group, tags in sorted(groups.items()):
        if tags["source"] in pristine:
            items.append(SuiteItem(pristine[tags["source"]], group, 0.0, dict(tags)))
    return Suite("known_order", items, "known_order", missing)


def load_mos_csv(labels: str | Path, name: str) -> Suite:
    labels = Path(labels)
    items, missing = [], []
    for n, row in enumerate(_read_csv(labels), start=2):
        try:
            file = labels.parent / row["file"]
            mos = float(row["mos"])
            group = row.get("dataset") or "all"
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{labels}:{n}: bad row ({exc})") from None
        if not file.exists():
            missing.append(str(file))
            continue
        items.append(SuiteItem(file, group, mos))
    return Suite(name, items, "mos", missing)


def correlate(suite: Suite, scores: dict[str, float], *, min_group_size: int = 3) -> dict:
    """scores: str(path) -> score (higher = better). Returns SRCC/PLCC overall and per subset."""
    groups: dict[str, list[tuple[float, float, SuiteItem]]] = {}
    for it in suite.items:
        s = scores.get(str(it.path))
        if s is not None and math.isfinite(s):
            groups.setdefault(it.group, []).append((s, it.target, it))
    per_group = {}
    for g, rows in sorted(groups.items()):
        if len(rows) < min_group_size:
            continue
        p, t = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        per_group[g] = {"n": len(rows), "srcc": srcc(p, t), "plcc": plcc(p, t)}

    def summary(names: list[str], weighted: bool) -> dict:
        w = [per_group[g]["n"] if weighted else 1.0 for g in names]
        return {
            "srcc": weighted_mean([per_group[g]["srcc"] for g in names], w),
            "plcc": weighted_mean([per_group[g]["plcc"] for g in names], w),
            "groups": len(names),
        }

    # known-order groups are equal-sized experiments: plain mean; MOS groups: weighted by size.
    weighted = suite.kind == "mos"
    out = {"all": summary(list(per_group), weighted), "groups": per_group}
    if suite.kind == "known_order":
        tag = {it.group: it.tags["ood"] for it in suite.items}
        out["in_domain"] = summary([g for g in per_group if not tag[g]], weighted)
        out["ood"] = summary([g for g in per_group if tag[g]], weighted)
    return out


def suite_from_benchmark(bench) -> Suite:
    """A loaded benchmark (vqa.evaluation.benchmarks) as a MOS suite: one group per MOS scale."""
    items = [SuiteItem(it.path, it.group, it.mos, {"role": bench.spec.role}) for it in bench.items]
    return Suite(bench.name, items, "mos", list(bench.missing))

