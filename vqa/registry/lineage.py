"""Lineage of a round's MLflow run: the DVC hashes of the round's inputs and outputs, the git
commit and state, and the DVC remote that holds those objects; plus `dvc push` for the demo.

Hashes come from dvc.lock (and the corpus's .dvc file): DVC writes a stage's lock entry as soon as
the stage finishes, so when register@roundK runs (under `dvc repro`, `dvc exp run` or the Prefect
flow) the round's earlier stages are already there. Single files are re-hashed anyway (cheap) and
a mismatch, or an entry that is missing (e.g. `vqa register` run by hand), falls back to the md5
DVC itself would compute; each hash records its source.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import yaml

LOCK = "dvc.lock"
OUTPUTS = "artifacts/"  # the stages' outputs (vqa.pipeline.layout.ARTIFACTS)


# --------------------------------------------------------------------------- DVC-style hashes
def file_md5(path: str | Path) -> str:
    """DVC 3 `hash: md5` of a file: md5 of its bytes."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_md5(path: str | Path) -> str:
    """DVC's directory hash: md5 of the JSON list of {md5, relpath} of every file, sorted by
    relpath as a string, plus ".dir" (no .dvcignore patterns are applied here)."""
    root = Path(path)
    entries = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            entries.append({"md5": file_md5(full), "relpath": rel})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def path_md5(path: str | Path) -> str:
    return dir_md5(path) if Path(path).is_dir() else file_md5(path)


def _norm(path: str | Path) -> str:
    return PurePosixPath(Path(path).as_posix()).as_posix().rstrip("/")


def _lock_entries(root: Path) -> dict[tuple[str, str], str]:
    """(stage, path) -> md5 for every out and dep in dvc.lock."""
    lock = root / LOCK
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    out = {}
    for stage, entry in stages.items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []) or []:
                if "md5" in item:
                    out[(stage, _norm(item["path"]))] = item["md5"]
    return out


def _dvc_file_md5(root: Path, path: str) -> str | None:
    """The md5 of `path` in its own .dvc file (e.g. data.dvc for data/), if any."""
    dvc_file = root / f"{path}.dvc"
    if not dvc_file.exists():
        return None
    for out in (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", []):
        if _norm(out.get("path", "")) == PurePosixPath(path).name and "md5" in out:
            return out["md5"]
    return None


def corpus_path(videos: str | Path, root: str | Path = ".") -> str:
    """What versions the corpus folder `videos`: it or the nearest folder above it that has a .dvc
    file or is a dep of the corpus stage (data/ for data/videos); else its parent."""
    root, videos = Path(root), PurePosixPath(_norm(videos))
    lock = _lock_entries(root)
    for cand in [videos, *list(videos.parents)[:-1]]:  # parents end with "."
        if (root / f"{cand}.dvc").exists() or ("corpus", str(cand)) in lock:
            return str(cand)
    return str(videos.parent) if str(videos.parent) != "." else str(videos)


def round_items(round_name: str, corpus_dir: str = "data",
                suite_dir: str = "artifacts/suites/known_order") -> list[tuple[str, str, str]]:
    """(name, stage that writes it, path) of a round's inputs and outputs."""
    r = round_name
    return [
        ("corpus", "corpus", corpus_dir),  # a dep of the corpus stage; its own .dvc file first
        ("manifest", "corpus", "artifacts/corpus/manifest.json"),
        ("simulated", "simulate", "artifacts/simulated"),
        ("suite", "suite", suite_dir),
        ("teacher_scores", f"teach@{r}", f"artifacts/{r}/teacher_scores.json"),
        ("pairs", f"fuse@{r}", f"artifacts/{r}/pairs.csv"),
        ("student", f"train@{r}", f"artifacts/{r}/student.pt"),
        ("metrics", f"evaluate@{r}", f"artifacts/{r}/metrics.json"),
    ]


def dvc_hashes(items: list[tuple[str, str, str]], root: str | Path = ".") -> dict[str, dict]:
    """name -> {path, stage, md5, source}; source is where md5 came from: "<x>.dvc", "dvc.lock",
    "computed (not in dvc.lock)", "computed (dvc.lock is stale)" or "missing"."""
    root = Path(root)
    lock = _lock_entries(root)
    out = {}
    for name, stage, path in items:
        path = _norm(path)
        on_disk = root / path
        recorded, source = _dvc_file_md5(root, path), f"{path}.dvc"
        if recorded is None:
            recorded, source = lock.get((stage, path)), LOCK
        if recorded is None:
            md5, source = (path_md5(on_disk), "computed (not in dvc.lock)") if on_disk.exists() else (None, "missing")
        elif on_disk.is_file() and (actual := file_md5(on_disk)) != recorded:
            md5, source = actual, "computed (dvc.lock is stale)"
        else:  # directories: trusted as recorded (DVC re-hashes them when their stage runs)
            md5 = recorded
        out[name] = {"path": path, "stage": stage, "md5": md5, "source": source}
    return out


# --------------------------------------------------------------------------- git and the remote
def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def git_state(root: str | Path = ".") -> dict:
    """commit (or "unknown"), dirty and the changed paths. dvc.lock and artifacts/ (metrics.json
    is git's) are left out of `dirty`: the pipeline rewrites them as it runs, and they are
    recorded as hashes anyway."""
    root = Path(root)
    commit = (_git(root, "rev-parse", "HEAD") or "").strip() or "unknown"
    status = _git(root, "status", "--porcelain")
    if status is None:
        return {"commit": commit, "dirty": None, "changed": [], "dvc_lock_changed": None}
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    code = [p for p in changed if p != LOCK and not p.startswith(OUTPUTS)]
    return {"commit": commit, "dirty": bool(code), "changed": code, "dvc_lock_changed": LOCK in changed}


def dvc_remote(root: str | Path = ".") -> dict:
    """The default DVC remote: {"name", "url"} (local URLs resolved to absolute paths), or Nones."""
    try:
        from dvc.config import Config

        here = Path(root).resolve()  # a project in a subfolder uses its repository's .dvc
        dvc_dir = next(p / ".dvc" for p in (here, *here.parents) if (p / ".dvc").is_dir())
        config = Config(dvc_dir=str(dvc_dir))
        name = config["core"].get("remote")
        url = config["remote"][name]["url"] if name else None
    except Exception:  # no DVC repo (StopIteration), a broken config: lineage without a remote
        return {"name": None, "url": None}
    return {"name": name, "url": url}


def push(root: str | Path = ".") -> tuple[int, str | None]:
    """`dvc push` to the default remote; returns (files pushed, remote URL). Raises on failure."""
    from vqa.stack.team import apply_dvc_remote

    apply_dvc_remote(root)  # W2S_DVC_REMOTE set: the team's S3 remote is the default
    proc = subprocess.run([sys.executable, "-m", "dvc", "push"], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, DVC_NO_ANALYTICS="1"))
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        reason = ([ln for ln in lines if ln.startswith("ERROR")] or lines or ["(no output)"])[-1]
        raise RuntimeError(f"dvc push failed (exit {proc.returncode}) to {dvc_remote(root)['url']}: {reason}")
    m = re.search(r"(\d+) files? pushed", text)
    return (int(m.group(1)) if m else 0), dvc_remote(root)["url"]


# --------------------------------------------------------------------------- into MLflow
def collect(round_name: str, *, corpus_videos: str = "data/videos", suite_dir: str = "artifacts/suites/known_order",
            root: str | Path = ".") -> dict:
    """The lineage.json of a round."""
    items = round_items(round_name, corpus_path(corpus_videos, root), suite_dir)
    return {"round": round_name, "dvc": dvc_hashes(items, root),
            "git": git_state(root), "remote": dvc_remote(root)}


def run_tags(lineage: dict) -> dict[str, str]:
    tags = {f"dvc.{name}.md5": str(h["md5"]) for name, h in lineage["dvc"].items()}
    # where the hashes came from: "dvc.lock", or with the exceptions named
    notes = {}
    for name, h in lineage["dvc"].items():
        if not h["source"].endswith((".dvc", LOCK)):
            notes.setdefault(h["source"].split(" ")[0], []).append(name)
    tags["dvc.hashes_from"] = "; ".join([LOCK] + [f"{k}: {','.join(v)}" for k, v in sorted(notes.items())])
    tags["dvc.remote"] = str(lineage["remote"]["name"])
    tags["dvc.remote_url"] = str(lineage["remote"]["url"])
    tags["git.commit"] = lineage["git"]["commit"]
    tags["git.dirty"] = str(lineage["git"]["dirty"])
    return tags


def version_tags(lineage: dict, run_id: str) -> dict[str, str]:
    """Tags of the registered model version: back to its run and to its data."""
    return {"w2s.run_id": run_id, "w2s.round": lineage["round"],
            "dvc.pairs.md5": str(lineage["dvc"]["pairs"]["md5"]),
            "dvc.corpus.md5": str(lineage["dvc"]["corpus"]["md5"]),
            "git.commit": lineage["git"]["commit"]}


def log_to_run(lineage: dict) -> None:
    """Inside an active run: the lineage tags and lineage.json."""
    import mlflow

    mlflow.set_tags(run_tags(lineage))
    mlflow.log_dict(lineage, "lineage.json")


def tag_model_version(model_name: str, version: str, lineage: dict, run_id: str, client=None) -> None:
    import mlflow

    client = client or mlflow.MlflowClient()
    for key, value in version_tags(lineage, run_id).items():
        client.set_model_version_tag(model_name, version, key, value)
