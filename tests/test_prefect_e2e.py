"""The Prefect set-up for real: a Prefect server on loopback, `vqa orchestrate setup`, the
deployments of prefect.yaml, a process worker that runs a round; then a round killed with
SIGKILL after its teacher step and re-run, which must not repeat that step and must end with the
outputs of the uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_project import ROOT, copy_project

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Its whole process group: a worker's flow runs and their Dask workers too."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`prefect server start` on a free loopback port, its home (DB, results) in a temp folder."""
    import httpx

    tmp = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp / "home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", MLFLOW_DISABLE_TELEMETRY="true",
               DVC_NO_ANALYTICS="1", PREFECT_WORKER_QUERY_SECONDS="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("prefect server did not become healthy in 90 s")
        print(f"prefect server healthy in {time.monotonic() - t0:.1f} s")
        yield env
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def prepared(prepared_tiny_project, tmp_path_factory):
    """A tiny one-round project with corpus, suite and simulators already built (shared by the
    projects below, which copy it)."""
    return copy_project(prepared_tiny_project, tmp_path_factory.mktemp("base") / "proj", rounds=1)


def _copy(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest, symlinks=True)
    return dest


def _client(env):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]})


def _task_states(env, flow_run_id) -> dict[str, list[str]]:
    """Task run name -> state names, over the flow run and its subflow runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    with _client(env), get_client(sync_client=True) as client:
        ids, frontier = [flow_run_id], [flow_run_id]
        while frontier:
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)))
            frontier = [c.id for c in children]
            ids += frontier
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    out: dict[str, list[str]] = {}
    for r in runs:
        out.setdefault(r.name, []).append(r.state.name)
    return out


@pytest.fixture(scope="module")
def deployed_round(server, prepared, tmp_path_factory):
    """vqa orchestrate setup (twice: idempotent), prefect deploy --all, a process worker on the
    cpu pool, then `prefect deployment run 'w2s-round/cpu'` on a copy of the project."""
    tmp = tmp_path_factory.mktemp("deployed")
    proj = _copy(prepared, tmp / "proj")
    params = (proj / "params.yaml").read_text()  # train on the gpu pool, through run_deployment
    (proj / "params.yaml").write_text(params.replace("train_deployment: null", "train_deployment: w2s-train/gpu"))
    assert "train_deployment: w2s-train/gpu" in (proj / "params.yaml").read_text()
    db = f"sqlite:///{tmp / 'mlflow.db'}"
    env = dict(server, MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db)
    for _ in range(2):
        out = subprocess.run([str(BIN / "vqa"), "orchestrate", "setup"], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
    t0 = time.monotonic()
    subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, check=True,
                   capture_output=True, text=True)
    print(f"prefect deploy --all: {time.monotonic() - t0:.1f} s")
    log = open(tmp / "worker.log", "w")
    workers = [subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                                cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
               for pool in ("cpu", "gpu")]
    try:
        t0 = time.monotonic()
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "w2s-round/cpu", "-p", f"project_dir={proj}",
                              "-p", "round_name=round1", "--watch", "--watch-timeout", "600"],
                             cwd=tmp, env=env, capture_output=True, text=True, timeout=700)
        print(f"deployment run w2s-round/cpu: {time.monotonic() - t0:.1f} s")
    finally:
        for worker in workers:
            _stop(worker)
        log.close()
    yield proj, env, out, run, (tmp / "worker.log").read_text()


def test_setup_creates_pools_and_limits_idempotently(deployed_round):
    from prefect.client.orchestration import get_client

    _, env, out, _, _ = deployed_round
    assert "work pool 'gpu' (process), concurrency limit 1" in out and "tag concurrency limit 'gpu': 1" in out
    with _client(env), get_client(sync_client=True) as client:
        pools = {p.name: p for p in client.read_work_pools()}
        assert pools["cpu"].type == "process" and pools["gpu"].type == "process"
        assert pools["gpu"].concurrency_limit == 1 and pools["cpu"].concurrency_limit is None
        assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 1
        names = {f"{client.read_flow(d.flow_id).name}/{d.name}": d.work_pool_name for d in client.read_deployments()}
    assert names == {"w2s-rounds/cpu": "cpu", "w2s-round/cpu": "cpu", "w2s-train/gpu": "gpu"}


def test_deployed_round_runs_on_the_worker_and_registers_the_student(deployed_round):
    import mlflow

    from vqa.pipeline.shards import plan

    proj, env, _, run, worker_log = deployed_round
    assert run.returncode == 0 and "Completed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]
    shards = plan(proj)  # the corpus and the simulated videos
    videos, first = sum(len(s["items"]) for s in shards), len(shards[0]["items"])
    assert f"teacher inference: {len(shards)} shards ({len(shards)} on workers, 0 cached), {videos} videos decoded now" in worker_log
    tracking = env["MLFLOW_TRACKING_URI"]
    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    assert [str(v.version) for v in client.search_model_versions("name='w2s-vqa'")] == ["1"]
    for alias in ("teacher", "champion"):
        assert str(client.get_model_version_by_alias("w2s-vqa", alias).version) == "1"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client(env), get_client(sync_client=True) as pc:  # training ran on the gpu pool's worker
        runs = pc.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["gpu"])))
    assert [(r.name, r.state.name, r.work_pool_name) for r in runs] == [("round1-train", "Completed", "gpu")]
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=proj, capture_output=True, text=True,
                            env=dict(env), check=True).stdout
    assert "up to date" in status, status


_RUN_ROUND = """
import sys
from flows.w2s import w2s_round
state = w2s_round(project_dir=sys.argv[1], round_name="round1", return_state=True)
print("FLOW_RUN_ID", state.state_details.flow_run_id, state.name, flush=True)
"""


def _completed_teach_after(env, t0: float) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with _client(env), get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["teach@round1"])))
    return any(r.state and r.state.is_completed() and r.start_time and r.start_time.timestamp() > t0 for r in runs)


def test_round_killed_after_teacher_step_resumes_without_repeating_it(deployed_round, prepared, tmp_path):
    reference, server_env, _, run, _ = deployed_round
    assert run.returncode == 0
    proj = _copy(prepared, tmp_path / "proj")
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(server_env, MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db)
    cmd = [sys.executable, "-c", _RUN_ROUND, str(proj)]
    t0 = time.time()
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(tmp_path / "first.log", "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _completed_teach_after(env, t0):  # the teacher step is recorded as done ...
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "teach@round1 did not complete in 300 s"
            time.sleep(0.3)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # ... then the flow run, its Dask workers and DVC die at once
        first.wait(30)
    assert (proj / "artifacts/round1/teacher_scores.json").exists()
    assert not (proj / "artifacts/round1/registered.json").exists(), "killed too late: the round had finished"

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    line = next(ln for ln in again.stdout.splitlines() if ln.startswith("FLOW_RUN_ID"))
    _, run_id, state = line.split()
    assert state == "Completed"
    states = _task_states(env, run_id)
    assert states["teach@round1"] == ["Cached"], states  # the teacher step was not repeated
    assert not any(name.startswith("teacher-shard") and s != ["Cached"] for name, s in states.items()), states
    assert states["register@round1"] == ["Completed"]

    # Same results as the uninterrupted run (student.pt itself also records its project's paths).
    import torch

    for name in ("teacher_scores.json", "pairs.csv", "train_history.json"):
        assert (proj / "artifacts/round1" / name).read_bytes() == (reference / "artifacts/round1" / name).read_bytes()
    weights = [torch.load(p / "artifacts/round1/student.pt", map_location="cpu", weights_only=False)
               for p in (proj, reference)]
    assert _state_dicts_equal(weights[0], weights[1])
    assert str(json.loads((proj / "artifacts/round1/registered.json").read_text())["version"]) == "1"


def _state_dicts_equal(a, b) -> bool:
    """Every tensor of the two checkpoints is identical."""
    import torch

    def tensors(obj, prefix=""):
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from tensors(v, f"{prefix}.{k}")
    ta, tb = dict(tensors(a)), dict(tensors(b))
    return bool(ta) and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
