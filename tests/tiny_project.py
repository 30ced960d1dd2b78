"""A throw-away W2S project for end-to-end tests: this repo's pipeline and code, tiny params and a
6-clip demo corpus, in its own git + DVC repository."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def git(cwd, *args) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def tiny_params(rounds: int = 2, fast: bool = False) -> dict:
    """params.yaml of the repo, shrunk. fast: fewer simulator types and epochs (for tests that
    exercise orchestration rather than what the student learns)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpus"]["demo_clips"] = 6
    params["rounds"] = {f"round{i}": params["rounds"][f"round{i}"] for i in range(1, rounds + 1)}
    sims = params["teachers"]["simulators"]
    sims["h264"]["sources"] = 3
    sims["h265"]["sources"] = 1
    sims["h265"]["preset"] = "ultrafast"  # veryslow costs ~10 s per encode; the demo keeps it
    for sim in ("blur", "noise", "resize", "darken", "brighten", "jitter", "stutter"):
        sims[sim]["sources"] = 2
    if fast:
        for sim in ("h265", "resize", "darken", "brighten", "jitter", "stutter"):
            sims[sim]["enabled"] = False
        params["teachers"]["homogeneous"] = ["niqe", "brisque", "blur", "noise", "ti"]
    params["fusion"]["homogeneous_pairs"] = 15
    params["iteration"]["homogeneous_pairs"] = 8
    params["iteration"]["hard_synthetic"]["pairs"] = 10
    params["iteration"]["gmad"]["pairs"] = 8
    params["iteration"]["gmad"]["bins"] = 2
    params["student"]["epochs"] = 6 if fast else 15
    params["student"]["batch_size"] = 16
    params["video"]["max_key_frames"] = 3
    params["evaluation"]["suite_scale"] = 0.5
    params["evaluation"]["suite_max_duration"] = 2.0
    params["evaluation"]["ugc_smoke"] = "no-such-folder"  # the optional suite is skipped
    # 6 clips: hold out a third, so the validation set has videos (2 of the 6 with seed 0) and
    # each simulator has a validation source
    params["validation"]["fraction"] = 0.34
    params["validation"]["source_share"] = 0.5
    return params


def make_tiny_project(proj: Path, params: dict) -> Path:
    """Copies dvc.yaml, .dvcignore and vqa/ (stage deps), writes params, inits git and DVC,
    builds a 6-clip corpus under data/ and `dvc add`s it."""
    from vqa.corpus.demo import build_demo_corpus

    proj.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, proj / name)
    shutil.copytree(ROOT / "vqa", proj / "vqa", ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(proj, "init", "-q")
    git(proj, "config", "user.email", "t@t")
    git(proj, "config", "user.name", "t")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=proj, check=True)
    build_demo_corpus(proj / "data", n_clips=6, seed=0, workers=2, log=print, scale=0.6, max_duration=3.0)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=proj, check=True)
    return proj


def build_prepared(proj: Path) -> Path:
    """A fast 2-round tiny project with its corpus, suite and simulators built (the slow, shared
    part of a run); tests copy it with copy_project."""
    import os

    make_tiny_project(proj, tiny_params(rounds=2, fast=True))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "suite", "simulate"], cwd=proj, env=env, check=True,
                   capture_output=True)
    return proj


def copy_project(src: Path, dest: Path, rounds: int | None = None) -> Path:
    """A copy (git, DVC cache and built outputs included); rounds: keep only the first N."""
    shutil.copytree(src, dest, symlinks=True)
    if rounds is not None:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        params["rounds"] = {f"round{i}": params["rounds"][f"round{i}"] for i in range(1, rounds + 1)}
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest
