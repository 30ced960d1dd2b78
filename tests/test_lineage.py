"""vqa.registry.lineage: DVC-compatible hashes, dvc.lock look-ups and their fallbacks, git state,
the remote, and the MLflow run and model-version tags."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vqa.registry import lineage as lin

ROOT = Path(__file__).resolve().parents[1]


def _run(cwd, *args):
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True)


def _dvc(cwd, *args):
    _run(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git + DVC repo with this project's .dvc/config, a tracked folder and one stage."""
    proj = tmp_path_factory.mktemp("lineage")
    _run(proj, "git", "init", "-q")
    _run(proj, "git", "config", "user.email", "t@t")
    _run(proj, "git", "config", "user.name", "t")
    _dvc(proj, "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", proj / ".dvc" / "config")
    # "a-b/x" sorts before "a/b" as a string but after it by path components: DVC uses the string
    for rel, data in {"videos/a/b.mp4": b"\x00\x01", "videos/a-b/x.mp4": b"xyz", "videos/z.mp4": b"z" * 3000,
                      "videos/a/c/d.mp4": b""}.items():
        (proj / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / "data" / rel).write_bytes(data)
    _dvc(proj, "add", "-q", "data")
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"fuse": {
        "cmd": f"{sys.executable} -c \"import os; os.makedirs('out', exist_ok=True); "
               "open('out/pairs.csv', 'w').write('a,b,label\\n1,2,better\\n')\"",
        "deps": ["data"], "outs": ["out/pairs.csv"]}}}))
    _dvc(proj, "repro", "-q")
    _run(proj, "git", "add", "-A")
    _run(proj, "git", "commit", "-qm", "base")
    return proj


def test_hashes_match_what_dvc_records(repo):
    data_md5 = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert lin.dir_md5(repo / "data") == data_md5
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["fuse"]
    assert lin.file_md5(repo / "out/pairs.csv") == lock["outs"][0]["md5"]
    assert lin.path_md5(repo / "data") == lock["deps"][0]["md5"]


def test_dvc_hashes_prefer_the_dvc_file_and_the_lock(repo):
    items = [("corpus", "corpus", "data"), ("pairs", "fuse", "out/pairs.csv")]
    got = lin.dvc_hashes(items, repo)
    assert got["corpus"]["source"] == "data.dvc" and got["corpus"]["md5"].endswith(".dir")
    assert got["pairs"] == {"path": "out/pairs.csv", "stage": "fuse", "source": "dvc.lock",
                            "md5": lin.file_md5(repo / "out/pairs.csv")}


def test_dvc_hashes_fall_back_to_computing(tmp_path):
    (tmp_path / "a.txt").write_text("new\n")
    (tmp_path / "b.txt").write_text("b\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("f")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "s": {"outs": [{"path": "a.txt", "hash": "md5", "md5": "0" * 32},  # stale: the file changed since
                       {"path": "d", "hash": "md5", "md5": "abc.dir"}]}}}))
    items = [("a", "s", "a.txt"), ("b", "s", "b.txt"), ("d", "s", "d"), ("gone", "s", "nothing.txt"),
             ("d2", "t", "d")]
    got = lin.dvc_hashes(items, tmp_path)
    assert got["a"]["source"] == "computed (dvc.lock is stale)" and got["a"]["md5"] == lin.file_md5(tmp_path / "a.txt")
    assert got["b"]["source"] == "computed (not in dvc.lock)" and got["b"]["md5"] == lin.file_md5(tmp_path / "b.txt")
    assert got["d"] == {"path": "d", "stage": "s", "md5": "abc.dir", "source": "dvc.lock"}  # folders: as recorded
    assert got["d2"]["md5"] == lin.dir_md5(tmp_path / "d")  # another stage's entry is not used
    assert got["gone"] == {"path": "nothing.txt", "stage": "s", "md5": None, "source": "missing"}
    tags = lin.run_tags({"round": "r", "dvc": got, "git": {"commit": "c", "dirty": False},
                         "remote": {"name": None, "url": None}})
    assert tags["dvc.hashes_from"] == "dvc.lock; computed: a,b,d2; missing: gone"
    assert tags["dvc.a.md5"] == got["a"]["md5"] and tags["dvc.gone.md5"] == "None"


def test_round_items_name_the_round_stages():
    items = {name: (stage, path) for name, stage, path in lin.round_items("round2", "data", "suites/k")}
    assert items["pairs"] == ("fuse@round2", "artifacts/round2/pairs.csv")
    assert items["student"] == ("train@round2", "artifacts/round2/student.pt")
    assert items["teacher_scores"] == ("teach@round2", "artifacts/round2/teacher_scores.json")
    assert items["metrics"] == ("evaluate@round2", "artifacts/round2/metrics.json")
    assert items["corpus"] == ("corpus", "data") and items["suite"] == ("suite", "suites/k")
    assert {"manifest", "simulated"} <= set(items)


def test_corpus_path_finds_the_versioned_folder(repo, tmp_path):
    assert lin.corpus_path("data/videos", repo) == "data"
    assert lin.corpus_path("data/videos/", tmp_path) == "data"  # nothing versioned: the parent
    assert lin.corpus_path("clips", tmp_path) == "clips"


def test_git_state_ignores_the_lock_file(repo):
    assert lin.git_state(repo)["dirty"] is False
    lock = repo / "dvc.lock"
    before = lock.read_text()
    try:
        lock.write_text(before + "\n")
        (repo / "artifacts").mkdir()
        (repo / "artifacts" / "metrics.json").write_text("{}")
        state = lin.git_state(repo)
        assert state["dirty"] is False and state["dvc_lock_changed"] is True
        (repo / "new.py").write_text("x = 1\n")
        state = lin.git_state(repo)
        assert state["dirty"] is True and state["changed"] == ["new.py"]
        assert len(state["commit"]) == 40
    finally:
        lock.write_text(before)
        (repo / "new.py").unlink(missing_ok=True)
        shutil.rmtree(repo / "artifacts", ignore_errors=True)


def test_git_state_outside_git(tmp_path):
    assert lin.git_state(tmp_path) == {"commit": "unknown", "dirty": None, "changed": [], "dvc_lock_changed": None}


def test_default_remote_is_the_project_folder(repo, tmp_path):
    remote = lin.dvc_remote(repo)
    assert remote["name"] == "local"
    assert Path(remote["url"]).resolve() == (repo / "dvc-remote").resolve()
    assert lin.dvc_remote(tmp_path) == {"name": None, "url": None}


def test_run_and_model_version_carry_the_lineage(repo, temp_mlflow, tmp_path):
    import mlflow

    uri = temp_mlflow
    mlflow.set_experiment("lineage-test")
    lineage = {"round": "round1", "git": lin.git_state(repo), "remote": lin.dvc_remote(repo),
               "dvc": lin.dvc_hashes([("corpus", "corpus", "data"), ("pairs", "fuse", "out/pairs.csv")], repo)}
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    with mlflow.start_run() as run:
        lin.log_to_run(lineage)
    client.create_registered_model("m")
    mv = client.create_model_version("m", source=f"{run.info.artifact_uri}/x", run_id=run.info.run_id)
    lin.tag_model_version("m", mv.version, lineage, run_id=run.info.run_id, client=client)

    tags = client.get_run(run.info.run_id).data.tags
    assert tags["dvc.pairs.md5"] == lin.file_md5(repo / "out/pairs.csv")
    assert tags["dvc.corpus.md5"] == yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert tags["dvc.hashes_from"] == "dvc.lock" and tags["git.dirty"] == "False"
    assert tags["git.commit"] == lineage["git"]["commit"] and tags["dvc.remote"] == "local"
    assert Path(tags["dvc.remote_url"]).resolve() == (repo / "dvc-remote").resolve()
    vtags = client.get_model_version("m", mv.version).tags
    assert vtags == {"w2s.run_id": run.info.run_id, "w2s.round": "round1", "dvc.pairs.md5": tags["dvc.pairs.md5"],
                     "dvc.corpus.md5": tags["dvc.corpus.md5"], "git.commit": lineage["git"]["commit"]}
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="lineage.json",
                                                 dst_path=str(tmp_path / "dl"))
    assert json.loads(Path(logged).read_text()) == lineage
