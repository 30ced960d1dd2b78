"""The team stack for real (`vqa stack up`: PostgreSQL, SeaweedFS S3, MLflow and Prefect servers on
PostgreSQL, a Dask scheduler with 2 workers, cpu and gpu Prefect workers), then:

- one W2S round deployed to the stack's Prefect server, run by its cpu worker, training on its gpu
  worker, teacher inference on its Dask cluster, the student registered in its MLflow with the
  artifacts in SeaweedFS, `dvc push` to S3 and `dvc pull` into a fresh clone;
- the faults of issue 17, each stating what is lost (nothing) and how the run recovers.

Marked e2e and stack; CI runs them (.ci/run installs PostgreSQL when it is missing).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_prefect_e2e import _RUN_ROUND, _client, _task_states
from tests.tiny_project import ROOT, copy_project, git

# the round fixture runs inside the first test's limit: room for a loaded machine
pytestmark = [pytest.mark.e2e, pytest.mark.stack, pytest.mark.timeout(1800)]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from vqa.stack.native import Stack

    st = Stack(tmp_path_factory.mktemp("stack") / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")  # the workers poll their pools every second
        try:
            seconds = st.up()
            print(f"stack up (first start): {seconds:.1f} s")
            yield st
        finally:
            st.down(purge=True)


def _env(stack, **extra) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.update(stack.client_env())
    env.update(extra)
    return env


def _set_params(proj: Path, **orchestration) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["orchestration"].update(orchestration)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _listening(pids: list[int]) -> set[str]:
    import psutil

    procs = []
    for pid in pids:
        p = psutil.Process(pid)
        procs += [p, *p.children(recursive=True)]
    mine = {p.pid for p in procs}
    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.pid in mine}


def test_up_again_is_safe_and_everything_listens_on_loopback(stack):
    pids = {r["service"]: r["pid"] for r in stack.status()}
    assert all(pids.values()), stack.status()
    t0 = time.monotonic()
    stack.up()  # nothing to start: the same processes stay
    assert time.monotonic() - t0 < 30
    assert {r["service"]: r["pid"] for r in stack.status()} == pids
    assert all(r["state"] == "healthy" for r in stack.status())
    assert _listening(list(pids.values())) == {"127.0.0.1"}


def test_stop_keeps_the_data(stack):
    """Stopping PostgreSQL and starting it again keeps its databases (and their content)."""
    with stack.connect_db("mlflow") as conn:
        before = conn.execute("SELECT count(*) FROM experiments").fetchone()[0]
    stack.stop("postgres")
    assert stack.pid("postgres") is None
    stack.up(only=["postgres"])
    with stack.connect_db("mlflow") as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == before


@pytest.fixture(scope="module")
def team_round(stack, prepared_tiny_project, tmp_path_factory):
    """vqa orchestrate setup, prefect deploy --all, then `w2s-round/cpu` on a tiny project: the
    stack's cpu worker runs it, training goes to its gpu worker through w2s-train/gpu."""
    tmp = tmp_path_factory.mktemp("team")
    proj = copy_project(prepared_tiny_project, tmp / "proj", rounds=1)
    _set_params(proj, train_deployment="w2s-train/gpu")
    env = _env(stack)
    subprocess.run([str(BIN / "vqa"), "orchestrate", "setup"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    t0 = time.monotonic()
    run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "w2s-round/cpu", "-p", f"project_dir={proj}",
                          "-p", "round_name=round1", "--watch", "--watch-timeout", "900"],
                         cwd=tmp, env=env, capture_output=True, text=True, timeout=1000)
    print(f"deployed round on the team stack: {time.monotonic() - t0:.1f} s")
    assert run.returncode == 0 and "Completed" in run.stdout, (run.stdout[-3000:] + run.stderr[-2000:]
                                                               + stack.log_tail("prefect-worker-cpu", 60))
    return proj, env


def test_round_runs_on_the_stack_workers_and_dask(stack, team_round):
    from distributed import Client
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    from vqa.pipeline.shards import plan

    proj, env = team_round
    shards = plan(proj)  # the corpus and the simulated videos
    videos, first = sum(len(s["items"]) for s in shards), len(shards[0]["items"])
    with _client(env), get_client(sync_client=True) as pc:
        runs = {name: pc.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
                for name in ("cpu", "gpu")}
    assert [(r.state.name, r.work_pool_name) for r in runs["gpu"]] == [("Completed", "gpu")]
    assert any(r.state.name == "Completed" and r.work_pool_name == "cpu" for r in runs["cpu"])
    assert f"teacher inference: {len(shards)} shards ({len(shards)} on workers, 0 cached), {videos} videos decoded now" in \
        stack.log_tail("prefect-worker-cpu", 400)
    with Client(env["DASK_SCHEDULER_ADDRESS"], timeout=10) as client:  # the shard ran on the stack's scheduler
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "score_shard" in prefixes
    logs = stack.log_tail("dask-worker-1", 400) + stack.log_tail("dask-worker-2", 400)
    assert f"shard 0: {first} videos, {first} decoded now" in logs


def test_student_is_in_the_stack_registry_with_artifacts_in_s3(stack, team_round):
    import mlflow

    from vqa.stack.native import s3_client

    proj, env = team_round
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='w2s-vqa'")
    assert [v.version for v in versions] == ["1"]
    assert client.get_model_version_by_alias("w2s-vqa", "teacher").version == "1"
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dvc.remote_url"] == "s3://w2s-dvc/w2s-vqa"
    registered = json.loads((proj / "artifacts/round1/registered.json").read_text())
    assert registered["tracking_uri"] == env["MLFLOW_TRACKING_URI"] and registered["version"] == "1"
    s3 = s3_client(env["W2S_DVC_ENDPOINT_URL"], stack.secrets)  # what the server stored, through the S3 API
    objects = s3.list_objects_v2(Bucket="w2s-mlflow")["Contents"]
    student = [o for o in objects if o["Key"].endswith("/student.pt")]
    assert len(student) == 1, [o["Key"] for o in objects]
    body = s3.get_object(Bucket="w2s-mlflow", Key=student[0]["Key"])["Body"].read()
    assert body == (proj / "artifacts/round1/student.pt").read_bytes()
    assert any(o["Key"].endswith("/round/pairs.csv") for o in objects)


def test_dvc_push_to_s3_then_pull_into_a_fresh_clone(stack, team_round, tmp_path):
    proj, env = team_round
    push = subprocess.run([sys.executable, "-m", "dvc", "push"], cwd=proj, env=env, capture_output=True, text=True)
    assert push.returncode == 0, push.stdout + push.stderr
    assert "pushed" in push.stdout
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "round1")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(proj), str(clone)], check=True)
    assert not (clone / "artifacts/round1/pairs.csv").exists()
    subprocess.run([str(BIN / "vqa"), "stack", "dvc-remote", str(clone)], env=env, check=True, capture_output=True)
    pull = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone, env=env, capture_output=True, text=True)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    for name in ("artifacts/round1/pairs.csv", "artifacts/round1/student.pt", "artifacts/round1/teacher_scores.json"):
        assert (clone / name).read_bytes() == (proj / name).read_bytes(), name


def test_credentials_are_never_logged(stack, team_round):
    """No password or S3 secret key in any service or worker log, the environment we print, or
    the MLflow run; services got them from files."""
    import mlflow

    from vqa.stack.native import s3_keys

    proj, env = team_round
    secrets = [(stack.secrets / "pg_password").read_text().strip(), s3_keys(stack.secrets)[1]]
    texts = {p.name: p.read_text(errors="replace") for p in (stack.root / "logs").iterdir()}
    texts["vqa stack env"] = "\n".join(stack.env_lines())
    texts["environment"] = json.dumps(env)
    for run_dir in (stack.root / "run").iterdir():
        texts[run_dir.name] = run_dir.read_text()  # argv of every service
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(client.search_model_versions("name='w2s-vqa'")[0].run_id)
    texts["mlflow run"] = json.dumps([run.data.params, run.data.tags])
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a credential appears in {name}"
    assert all(oct((stack.secrets / f).stat().st_mode & 0o777) == "0o600" for f in os.listdir(stack.secrets))


# ----------------------------------------------------------------------------- faults
def _fault_project(team_round, dest: Path, **orchestration) -> Path:
    """A copy of the finished team round, training in its own process (no deployment)."""
    proj, _ = team_round
    copy_project(proj, dest)
    _set_params(dest, train_deployment=None, **orchestration)
    return dest


def _start_round(proj: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RUN_ROUND, str(proj)], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> tuple[str, str]:
    proc.wait(timeout)
    text = log.read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("FLOW_RUN_ID")), None)
    assert line, text[-4000:]
    _, run_id, state = line.split()
    return run_id, state


def test_mlflow_killed_during_register_the_round_retries_into_one_run_and_one_version(stack, team_round, tmp_path):
    """Lost: nothing. The register stage fails while the server is down, Prefect retries it, and
    the retry resumes the MLflow run the first attempt opened (found by its registration key)
    and reuses any version it registered: one new run, one new version."""
    import mlflow

    from vqa.registry.mlflow_registry import REGISTER_KEY

    # a new params fingerprint (orchestration only: no stage reads it) makes a new registration
    proj = _fault_project(team_round, tmp_path / "proj", retries=4, retry_delay_seconds=3)
    (proj / "artifacts/round1/registered.json").unlink()  # register is the one stage to run
    env = _env(stack, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("w2s-vqa")
    runs_before = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    versions_before = {v.version for v in client.search_model_versions("name='w2s-vqa'")}
    proc = _start_round(proj, env, tmp_path / "round.log")
    try:
        deadline = time.monotonic() + 300
        while True:  # wait for register's run to exist, then kill the server under it
            new = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_id not in runs_before]
            if new:
                break
            assert proc.poll() is None, (tmp_path / "round.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "register did not start in 300 s"
            time.sleep(0.1)
        os.killpg(stack.pid("mlflow"), signal.SIGKILL)
        time.sleep(2)
        stack.up(only=["mlflow"])  # same port, same database and bucket
        run_id, state = _finish(proc, tmp_path / "round.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert state == "Completed", (tmp_path / "round.log").read_text()[-4000:]
    with _client(env):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

        with get_client(sync_client=True) as pc:
            register = pc.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["register@round1"])))
    mine = [t for t in register if str(t.flow_run_id) == run_id]
    assert mine and mine[0].run_count >= 2, "the fault came too late: register had already finished"
    new_runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_id not in runs_before]
    new_versions = [v for v in client.search_model_versions("name='w2s-vqa'") if v.version not in versions_before]
    assert len(new_runs) == 1 and new_runs[0].info.status == "FINISHED", [r.info for r in new_runs]
    assert len(new_versions) == 1 and new_versions[0].run_id == new_runs[0].info.run_id
    assert REGISTER_KEY in new_runs[0].data.tags
    registered = json.loads((proj / "artifacts/round1/registered.json").read_text())
    assert registered["version"] == new_versions[0].version and registered["run_id"] == new_runs[0].info.run_id


def test_seaweedfs_down_during_dvc_push_is_a_clear_error_and_a_later_push_completes(stack, team_round, tmp_path):
    """Lost: nothing (the outputs are in the local DVC cache). The push fails with the remote
    named, and pushes everything once the store is back."""
    from vqa.registry.lineage import push
    from vqa.stack.native import s3_client

    proj = _fault_project(team_round, tmp_path / "proj")
    prefix = "fault-push"
    with pytest.MonkeyPatch.context() as mp:
        # AWS_MAX_ATTEMPTS: botocore's retries would make the failing push take about a minute
        for k, v in _env(stack, W2S_DVC_REMOTE=f"s3://w2s-dvc/{prefix}", AWS_MAX_ATTEMPTS="1").items():
            mp.setenv(k, v)
        stack.stop("seaweedfs")
        try:
            t0 = time.monotonic()
            with pytest.raises(RuntimeError) as err:
                push(proj)
            print(f"failed push: {time.monotonic() - t0:.1f} s: {err.value}")
        finally:
            stack.up(only=["seaweedfs"])
        message = str(err.value)
        assert "dvc push failed" in message and f"s3://w2s-dvc/{prefix}" in message
        assert "Traceback" not in message
        files, url = push(proj)
    assert url == f"s3://w2s-dvc/{prefix}" and files > 0
    s3 = s3_client(stack.client_env()["W2S_DVC_ENDPOINT_URL"], stack.secrets)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="w2s-dvc", Prefix=f"{prefix}/")["Contents"]]
    assert len(keys) >= files


def test_postgres_restart_under_prefect_the_flow_finishes_or_resumes_from_cache(stack, team_round, tmp_path):
    """Lost: at most the stage that was running. PostgreSQL restarts while evaluate runs; the
    flow run either completes, or a re-run completes with the finished stages Cached."""
    proj = _fault_project(team_round, tmp_path / "proj", retries=3, retry_delay_seconds=2)
    (proj / "artifacts/round1/evaluation.json").unlink()  # evaluate has work to do
    env = _env(stack)
    t0 = time.time()
    proc = _start_round(proj, env, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 300
        while not _task_running(env, "evaluate@round1", t0):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        stack.stop("postgres")
        stack.up(only=["postgres"])
        run_id, state = _finish(proc, tmp_path / "first.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"flow run across the PostgreSQL restart: {state}")
    assert stack.healthy(stack_service("prefect-server"))
    if state != "Completed":  # resume: the stages before evaluate come from Prefect's cache
        proc = _start_round(proj, env, tmp_path / "again.log")
        run_id, state = _finish(proc, tmp_path / "again.log")
        assert state == "Completed", (tmp_path / "again.log").read_text()[-4000:]
        states = _task_states(env, run_id)
        assert states["teach@round1"] == ["Cached"] and states["fuse@round1"] == ["Cached"], states
    assert json.loads((proj / "artifacts/round1/registered.json").read_text())["version"]
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=proj, capture_output=True, text=True,
                            env=env, check=True).stdout
    assert "up to date" in status, status


def _task_running(env, name: str, t0: float) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with _client(env), get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])))
    return any(r.state and r.state.is_running() and r.start_time and r.start_time.timestamp() > t0 for r in runs)


def stack_service(name):
    from vqa.stack.services import by_name

    return by_name()[name]


def test_dask_worker_killed_mid_shard_the_shard_is_rescheduled_with_equal_scores(stack, team_round,
                                                                                 prepared_tiny_project, tmp_path):
    """Lost: the killed worker's partial shard. Dask reschedules it; the scores equal the
    undisturbed run's (the team round's caches), and the worker's nanny restarts it."""
    from distributed import Client

    from vqa.pipeline.shards import plan
    from vqa.teachers.cache import ScoreCache

    reference, _ = team_round
    proj = copy_project(prepared_tiny_project, tmp_path / "proj", rounds=1)
    videos = sum(len(s["items"]) for s in plan(proj))
    _set_params(proj, shard_videos=-(-videos // 2), retries=0)  # two shards: one to kill, one not
    env = _env(stack)
    code = ("import sys; from flows.w2s import _load_params, dask_task_runner, teacher_inference; "
            "runner = dask_task_runner(_load_params(sys.argv[1]).orchestration); "
            "s = teacher_inference.with_options(task_runner=runner)(project_dir=sys.argv[1], return_state=True); "
            "print('STATE', s.name, s.result())")
    proc = subprocess.Popen([sys.executable, "-c", code, str(proj)], cwd=ROOT, env=env, stdout=open(tmp_path / "ti.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed = None
    try:
        with Client(env["DASK_SCHEDULER_ADDRESS"], timeout=10) as client:
            deadline = time.monotonic() + 300
            while killed is None:
                busy = {w: keys for w, keys in client.processing().items() if any("score_shard" in str(k) for k in keys)}
                if busy:
                    time.sleep(1.0)  # let it get well into the shard
                    worker = next(iter(busy))
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed = worker
                assert proc.poll() is None, (tmp_path / "ti.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no shard reached a worker in 300 s"
                time.sleep(0.05)
            proc.wait(600)
            deadline = time.monotonic() + 60
            while len(client.scheduler_info(n_workers=-1)["workers"]) < 2:  # the nanny restarted it
                assert time.monotonic() < deadline, "the killed worker did not come back"
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = (tmp_path / "ti.log").read_text()
    assert "STATE Completed" in out, out[-4000:]
    assert "'shards': 2, 'submitted': 2" in out, out[-2000:]
    shards = plan(proj)
    for key in shards[0]["teacher_keys"]:
        ours, ref = (ScoreCache(p / "artifacts/cache/scores", key) for p in (proj, reference))
        for vid, _ in (it for s in shards for it in s["items"]):
            a, b = ours.get(vid), ref.get(vid)
            assert a is not None and b is not None, (key, vid)
            if "score" in a:
                assert a["score"] == pytest.approx(b["score"], rel=1e-9, abs=1e-12), (key, vid)


def test_two_rounds_at_once_on_one_project_the_second_refuses_clearly(stack, team_round, tmp_path):
    """Lost: nothing. The second run stops before touching the project and names the first; the
    first completes."""
    from vqa.pipeline.runlock import lock_path

    proj = _fault_project(team_round, tmp_path / "proj")
    (proj / "artifacts/round1/evaluation.json").unlink()
    env = _env(stack)
    first = _start_round(proj, env, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while not (lock_path(proj).exists() and lock_path(proj).read_text()):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = _start_round(proj, env, tmp_path / "second.log")
        _, second_state = _finish(second, tmp_path / "second.log", timeout=300)
        assert first.poll() is None, "the first run ended before the second one tried"
        _, state = _finish(first, tmp_path / "first.log")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    out = (tmp_path / "second.log").read_text()
    assert second_state == "Failed", out[-3000:]
    assert f"{proj} is busy: round1 is running there (pid {first.pid}" in out, out[-3000:]
    assert "stops without changing anything" in out
    assert state == "Completed"
