"""Projects in subfolders: the same pipeline on another corpus (runs/ugc: the real-corpus run).

A project is a folder with its own params.yaml, dvc.lock, data.dvc and artifacts/. Its dvc.yaml is
an exact copy of the repository's: every code dependency there is written ${code_root}/vqa/...,
and params.yaml's code_root says where the package is from the project. A copy, not a symlink:
DVC reads dvc.yaml from git revisions (experiments, `dvc metrics diff`), where a symlink is only
its target's name. `init` writes the copy again whenever it runs; a test keeps the committed
copies equal to the root's.

The corpus is tracked with `dvc import-url` (data.dvc records the source path and its md5), so
the project's results name the exact videos they came from, and `dvc update` re-imports a
changed source.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

PIPELINE = "dvc.yaml"


def repo_root() -> Path:
    """The repository holding this package (the folder with the root dvc.yaml)."""
    return Path(__file__).resolve().parents[2]


def sync_pipeline(project: Path, root: Path | None = None) -> bool:
    """Copy the root dvc.yaml into the project; True when it changed."""
    src = (root or repo_root()) / PIPELINE
    dst = project / PIPELINE
    if dst.exists() and dst.read_bytes() == src.read_bytes():
        return False
    shutil.copyfile(src, dst)
    return True


def init_project(project: str | Path, corpus: str | Path, *, model_name: str | None = None,
                 log: Callable[[str], None] = print, run_dvc=None, root: Path | None = None) -> Path:
    """Create (or refresh) a project folder for a corpus of real videos: params.yaml from the
    repository's (code_root, corpus, benchmark paths and the MLflow names adjusted; an existing
    one is kept), dvc.yaml copied, and the corpus imported with `dvc import-url` into data/."""
    from flows.w2s import run_dvc as default_run_dvc

    run_dvc = run_dvc or default_run_dvc
    root = (root or repo_root()).resolve()
    proj = Path(project).resolve()
    if proj == root:
        raise ValueError(f"{project}: the repository root is the demo project; give a subfolder, e.g. runs/mine")
    if not str(proj).startswith(str(root) + os.sep):
        raise ValueError(f"{project}: must be inside the repository {root}")
    rel_root = Path(os.path.relpath(root, proj))
    source = Path(corpus).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"{corpus}: not a folder of videos")
    proj.mkdir(parents=True, exist_ok=True)
    if sync_pipeline(proj, root):
        log(f"project: wrote {proj / PIPELINE} (the repository's pipeline)")
    params_path = proj / "params.yaml"
    if not params_path.exists():
        params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
        name = model_name or f"w2s-vqa-{proj.name}"
        params["code_root"] = rel_root.as_posix()
        params["corpus"]["videos"] = "data"
        for entry in (params["evaluation"].get("benchmarks") or {}).values():
            for key in ("labels", "videos"):
                if entry.get(key) and not Path(entry[key]).is_absolute():
                    entry[key] = (rel_root / entry[key]).as_posix()
        if params["evaluation"].get("ugc_smoke"):
            params["evaluation"]["ugc_smoke"] = (rel_root / params["evaluation"]["ugc_smoke"]).as_posix()
        params["mlflow"].update(tracking_uri=f"sqlite:///{(rel_root / 'mlflow.db').as_posix()}",
                                experiment=name, model_name=name)
        from vqa.config.params import Params

        Params.model_validate(params)  # the derived file is valid before it is written
        params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        log(f"project: wrote {params_path} (MLflow model {name!r}; edit it to tune the run)")
    if not (proj / "data.dvc").exists():
        rel_source = Path(os.path.relpath(source, proj)).as_posix()
        log(f"project: dvc import-url {rel_source} data")
        run_dvc(proj, ["import-url", rel_source, "data"])
    return proj


def ensure_corpus(project: str | Path, run_dvc=None) -> None:
    """The imported corpus in the workspace: from the DVC cache, else imported again from its
    source (a fresh clone has neither the files nor the cache)."""
    from flows.w2s import StageError
    from flows.w2s import run_dvc as default_run_dvc

    run_dvc = run_dvc or default_run_dvc
    proj = Path(project)
    if not (proj / "data.dvc").exists():
        raise FileNotFoundError(f"{proj / 'data.dvc'}: no corpus; create the project with `vqa project init`")
    if (proj / "data").is_dir():
        return
    try:
        run_dvc(proj, ["checkout", "data.dvc"])
    except StageError:
        run_dvc(proj, ["update", "data.dvc"])
