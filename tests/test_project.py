"""Projects in subfolders (runs/ugc): the same pipeline file, their own params and corpus."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny_project import ROOT


def test_committed_projects_carry_the_root_pipeline_unchanged():
    projects = [p.parent for p in (ROOT / "runs").glob("*/params.yaml")]
    assert projects, "runs/ugc is committed"
    for proj in projects:
        assert (proj / "dvc.yaml").read_bytes() == (ROOT / "dvc.yaml").read_bytes(), (
            f"{proj / 'dvc.yaml'} differs from dvc.yaml: run `vqa project init {proj.relative_to(ROOT)} --corpus ...`")
        from vqa.config import load_params

        params = load_params(proj / "params.yaml")
        assert (proj / params.code_root / "vqa" / "__init__.py").resolve() == ROOT / "vqa" / "__init__.py"
        data = yaml.safe_load((proj / "data.dvc").read_text())
        assert not Path(data["deps"][0]["path"]).is_absolute()  # nothing machine-specific


def test_init_makes_a_runnable_project_for_a_folder_of_videos(tmp_path, prepared_tiny_project):
    from flows.w2s import run_dvc
    from tests.tiny_project import copy_project
    from vqa.pipeline.project import init_project

    repo = copy_project(prepared_tiny_project, tmp_path / "repo")
    corpus = tmp_path / "my videos"
    corpus.mkdir()
    for clip in sorted((repo / "data" / "videos").iterdir())[:3]:
        (corpus / clip.name).write_bytes(clip.read_bytes())
    proj = init_project(repo / "runs" / "mine", corpus, root=repo, log=lambda m: None, run_dvc=run_dvc)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    assert params["code_root"] == "../.." and params["corpus"]["videos"] == "data"
    assert params["mlflow"]["model_name"] == "w2s-vqa-mine"
    assert params["mlflow"]["tracking_uri"] == "sqlite:///../../mlflow.db"
    assert (proj / "dvc.yaml").read_bytes() == (repo / "dvc.yaml").read_bytes()
    assert sorted(p.name for p in (proj / "data").iterdir()) == sorted(p.name for p in corpus.iterdir())
    data = yaml.safe_load((proj / "data.dvc").read_text())
    assert data["deps"][0]["path"] == "../../../my videos"
    # the project's stages run from its folder, with the repository's code as dependencies
    dry = subprocess.run([sys.executable, "-m", "dvc", "repro", "--dry", "corpus"], cwd=proj, capture_output=True,
                         text=True, check=True).stdout
    assert "vqa corpus ingest data" in dry
    (proj / "dvc.yaml").write_text("stale\n")
    init_project(proj, corpus, root=repo, log=lambda m: None, run_dvc=run_dvc)  # again: refreshes the pipeline
    assert (proj / "dvc.yaml").read_bytes() == (repo / "dvc.yaml").read_bytes()


def test_the_run_lock_of_a_subfolder_project_stays_in_the_repository_dvc_folder(tmp_path):
    """A runs/<name>/.dvc folder would make DVC take the project for a repository of its own
    (own cache, no remote: `dvc push` fails), so the lock lives in the repository's .dvc/tmp."""
    from vqa.pipeline.runlock import lock_path, project_lock

    (tmp_path / ".dvc").mkdir()
    ugc, mine = tmp_path / "runs" / "ugc", tmp_path / "runs" / "mine"
    ugc.mkdir(parents=True)
    mine.mkdir()
    with project_lock(ugc, "test"):
        assert lock_path(ugc).exists() and lock_path(ugc).parent == tmp_path / ".dvc" / "tmp"
    assert not (ugc / ".dvc").exists()
    assert lock_path(ugc) != lock_path(mine)
    assert lock_path(tmp_path) == tmp_path / ".dvc" / "tmp" / "w2s-run.lock"
