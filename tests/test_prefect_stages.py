"""The Prefect stage tasks' building blocks, without a Prefect server: which DVC failures are
permanent, the retry condition, the stage fingerprint (DVC's hashes of deps and params) and the
shard cache key."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from flows.w2s import PermanentStageError, StageError, _retryable, is_permanent, run_dvc, stage_state

# What `dvc repro --single-item STAGE` printed for each kind of failure (DVC 3.67).
OUTPUTS = {
    "vqa bad input": "Running stage 'teach@round1':\n> vqa teach --round round1\nvqa: error: params.yaml: x\n"
                     "ERROR: failed to reproduce 'teach@round1': failed to run: vqa teach --round round1, exited with 2",
    "vqa out of memory": "Running stage 'train@round1':\n> vqa train --round round1\n"
                         "vqa: error: OutOfMemoryError: CUDA out of memory. (a runtime failure: retrying may succeed)\n"
                         "ERROR: failed to reproduce 'train@round1': failed to run: vqa train --round round1, exited with 3",
    "crash": "ERROR: failed to reproduce 'crash': failed to run: sh -c \"exit 1\", exited with 1",
    "killed": "ERROR: failed to reproduce 'killed': failed to run: sh -c 'kill -9 $$', exited with -9",
    "missing dep": "ERROR: failed to reproduce 'missing': [Errno 2] No such file or directory: '/tmp/x/nope.txt'",
    "missing param": "ERROR: failed to reproduce 'param': Parameters 'foo.bar' are missing from 'params.yaml'.",
    "no such stage": "ERROR: Stage 'nosuch' not found inside 'dvc.yaml' file",
    "lock": "ERROR: Unable to acquire lock. Most likely another DVC process is running or was terminated abruptly.",
    "silent": "",
}


@pytest.mark.parametrize("case,permanent", [
    ("vqa bad input", True), ("vqa out of memory", False), ("crash", False), ("killed", False), ("missing dep", True),
    ("missing param", True), ("no such stage", True), ("lock", False), ("silent", False)])
def test_permanent_failures_are_told_from_transient_ones(case, permanent):
    assert is_permanent(OUTPUTS[case]) is permanent


def test_retry_condition_skips_permanent_failures():
    from prefect.states import Completed, Failed

    assert _retryable(None, None, Failed(data=StageError("exited with 1"))) is True
    assert _retryable(None, None, Failed(data=OSError("disk"))) is True
    for exc in (PermanentStageError("exited with 2"), ValueError("bad params")):
        assert _retryable(None, None, Failed(data=exc)) is False
    assert _retryable(None, None, Completed(data=1)) is True


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "in.txt").write_text("a\n")
    (tmp_path / "params.yaml").write_text("k: 1\nother: 1\n")
    stages = {
        "copy": {"cmd": "cp in.txt out.txt", "deps": ["in.txt"], "params": ["k"], "outs": ["out.txt"]},
        "bad": {"cmd": "sh -c 'echo nope >&2; exit 2'", "outs": ["b.txt"]},
        "flaky": {"cmd": "sh -c 'exit 1'", "outs": ["f.txt"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return tmp_path


def test_run_dvc_raises_permanent_or_transient(repo):
    with pytest.raises(PermanentStageError, match="exited with 2"):
        run_dvc(repo, ["repro", "--single-item", "bad"])
    with pytest.raises(StageError) as info:
        run_dvc(repo, ["repro", "--single-item", "flaky"])
    assert not isinstance(info.value, PermanentStageError)


def test_stage_fingerprint_follows_deps_and_params_and_status_follows_the_lock(repo):
    t0 = time.perf_counter()
    fp, fresh = stage_state(repo, "copy")
    cost = time.perf_counter() - t0
    print(f"stage_state: {cost:.3f} s")
    assert fp and not fresh  # never run: not up to date
    run_dvc(repo, ["repro", "--single-item", "copy"])
    assert stage_state(repo, "copy") == (fp, True)  # running it changes no input
    (repo / "params.yaml").write_text("k: 1\nother: 2\n")  # a parameter the stage does not use
    assert stage_state(repo, "copy") == (fp, True)
    (repo / "out.txt").unlink()  # output gone: same inputs, but the stage must run again
    assert stage_state(repo, "copy") == (fp, False)
    run_dvc(repo, ["repro", "--single-item", "copy"])
    (repo / "params.yaml").write_text("k: 2\nother: 2\n")
    fp2, fresh = stage_state(repo, "copy")
    assert fp2 != fp and not fresh
    (repo / "params.yaml").write_text("k: 1\nother: 2\n")
    (repo / "in.txt").write_text("b\n")
    fp3, _ = stage_state(repo, "copy")
    assert fp3 not in (fp, fp2)
    (repo / "in.txt").unlink()
    assert stage_state(repo, "copy") == (None, False)  # a missing dependency: no caching


def test_shard_key_is_content_not_location():
    from vqa.pipeline.shards import shard_key

    shard = {"index": 0, "project": "/a", "cache_root": "/a/artifacts/cache", "external": [],
             "items": [["id1", "/a/data/x.mp4"], ["id2", "/a/data/y.mp4"]], "teachers": ["niqe"],
             "teacher_keys": ["niqe@1"], "key_rate": 1.0, "max_key_frames": 8, "features": "fp"}
    moved = dict(shard, project="/b", cache_root="/b/c", items=[["id1", "/b/x.mp4"], ["id2", "/b/y.mp4"]], index=3)
    assert shard_key(moved) == shard_key(shard)
    for change in ({"teacher_keys": ["niqe@2"]}, {"key_rate": 2.0}, {"max_key_frames": 4}, {"features": "fp2"},
                   {"items": [["id1", "/a/data/x.mp4"], ["id3", "/a/data/y.mp4"]]}):
        assert shard_key(dict(shard, **change)) != shard_key(shard)
