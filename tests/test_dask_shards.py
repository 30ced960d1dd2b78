"""Teacher inference in corpus shards on a local 2-worker Dask cluster (through the Prefect flow,
on a temporary Prefect server as `vqa demo` runs it) gives exactly the scores and student features
of one in-process `analyse`; run again, every shard is Cached and no cluster starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_project import ROOT, make_tiny_project, tiny_params

pytestmark = pytest.mark.e2e

_RUN = """
import json, sys, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from flows.w2s import _on_dask, teacher_inference
from vqa.config import load_params

orch = load_params(sys.argv[1] + "/params.yaml").orchestration
out = []
for _ in range(2):
    t0 = time.monotonic()
    summary = _on_dask(teacher_inference, orch, sys.argv[1], "round1")
    out.append(dict(summary, seconds=time.monotonic() - t0))
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(flow_run_filter=None)
    last = max((r for r in runs if r.flow_id and r.name == "round1-teachers"), key=lambda r: r.start_time)
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[last.id])))
    out.append(sorted((t.name, t.state.name) for t in tasks))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    params = tiny_params(rounds=1, fast=True)
    params["orchestration"]["shard_videos"] = 2  # 6 videos -> 3 shards on 2 workers
    params["orchestration"]["dask_workers"] = 2
    proj = make_tiny_project(tmp_path_factory.mktemp("dask") / "proj", params)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "corpus"], cwd=proj, env=env, check=True,
                   capture_output=True)
    return proj


def test_shards_on_dask_equal_in_process_analyse(project, tmp_path):
    from vqa.config import load_params
    from vqa.pipeline.analyse import analyse
    from vqa.pipeline.shards import plan
    from vqa.pipeline.steps import corpus_feature_store
    from vqa.teachers.cache import ScoreCache

    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)  # a temporary server, as `vqa demo` has
    run = subprocess.run([sys.executable, "-c", _RUN, str(project)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, second, tasks = json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    print(f"teacher inference on Dask: {first['seconds']:.1f} s; again, all cached: {second['seconds']:.1f} s")
    assert first == dict(first, shards=3, submitted=3, cached=0, decoded=6)
    assert second == dict(second, shards=3, submitted=0, cached=3, decoded=0)  # no cluster: nothing to do
    assert tasks == [[f"teacher-shard-{i}", "Cached"] for i in range(3)]

    shards = plan(project)
    items = [tuple(it) for s in shards for it in s["items"]]
    params = load_params(project / "params.yaml")
    store = corpus_feature_store(params, tmp_path / "cache")
    ref = analyse(items, teacher_names=shards[0]["teachers"], cache_root=tmp_path / "cache", key_rate=params.video.key_rate,
                  max_key_frames=params.video.max_key_frames, features=store, workers=2, log=print)
    assert ref.decoded == 6
    cache = Path(shards[0]["cache_root"])
    for key in shards[0]["teacher_keys"]:
        dask_cache = ScoreCache(cache / "scores", key)
        assert {vid: dask_cache.get(vid).get("score") for vid, _ in items if "score" in dask_cache.get(vid)} \
            == ref.scores[key], key
        assert sorted(vid for vid, _ in items if "error" in dask_cache.get(vid)) == sorted(ref.failures[key]), key
    features = cache / "features" / shards[0]["features"]
    for vid, feats in ref.features.items():
        assert np.array_equal(np.load(features / f"{vid}.npy"), feats), vid
