"""Prefect flows for the weak-to-strong rounds.

Each stage task reproduces exactly one DVC stage (`dvc repro --single-item STAGE`), and each stage
runs one `vqa` step, so there is one implementation of every step, DVC versions every output and
skips what is up to date, and Prefect orders, retries, caches and records the work. `dvc repro`
alone runs the same pipeline without Prefect.

- Stage tasks are cached on a fingerprint of the stage's command, dependencies and parameters as
  DVC hashes them, with persisted results: a re-run after a crash shows finished stages as Cached.
  A cached stage whose workspace does not match dvc.lock (outputs missing or changed) runs again.
- Transient failures are retried with exponential back-off and jitter (orchestration.retries,
  retry_delay_seconds); bad input or configuration (a `vqa` exit code 2, a missing dependency or
  parameter) fails at once.
- Teacher inference runs before the `teach` stage, fanned out over corpus shards on Dask
  (a local cluster, or orchestration.dask_address); the stage then finds every score cached.
- Training is its own flow, `w2s-train`, tagged `gpu` (a tag concurrency limit of 1 lets one
  training run at a time); with orchestration.train_deployment set, the round starts it through
  that deployment (the `gpu` work pool) and waits for it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.tasks import exponential_backoff

PREPARE_STAGES = ("corpus", "suite", "simulate")
ROUND_STEPS = ("teach", "fuse", "train", "evaluate", "register")
GPU_TAG = "gpu"  # tag concurrency limit on training (vqa orchestrate setup creates it)
RETRY_JITTER = 0.5  # +-50 % on each back-off delay, so retries of parallel runs spread out


def _env() -> dict:
    env = dict(os.environ)
    # Stage commands call `vqa`; make sure it is the one of this interpreter's environment.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


# DVC's per-stage git hints; the demo prints the lock file status once at the end instead.
_DVC_HINTS = ("To track the changes with git", "git add ", "To enable auto staging", "dvc config core.autostage",
              "Use `dvc push`")


class StageError(RuntimeError):
    """A DVC stage failed in a way that may pass on a retry (a crash, a kill, a held lock)."""


class PermanentStageError(StageError):
    """Bad input or configuration: a retry would fail the same way."""


# `vqa` exits 2 on bad input or configuration (vqa.cli.main; argparse usage errors too) and 3 on
# a runtime failure such as out of memory, which is retried; DVC shows
# it as "failed to run: CMD, exited with 2". DVC's own refusals (a missing dependency, parameter,
# stage or an invalid dvc.yaml) come without "failed to run".
_COMMAND_FAILED = re.compile(r"failed to run: .*, exited with (-?\d+)")
_DVC_TRANSIENT = ("Unable to acquire lock",)


def is_permanent(dvc_output: str) -> bool:
    """Does this failed `dvc repro`'s output say the failure is permanent?"""
    errors = [ln for ln in dvc_output.splitlines() if ln.startswith("ERROR")]
    if not errors:
        return False  # killed or crashed without a word: worth a retry
    ran = _COMMAND_FAILED.search(errors[-1])
    if ran:
        return ran.group(1) == "2"
    return not any(marker in errors[-1] for marker in _DVC_TRANSIENT)


def run_dvc(project_dir: str | Path, args: list[str]) -> str:
    """Run a dvc command in the project; its output goes to our stdout; raise on failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project_dir, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    shown = [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.strip().startswith(_DVC_HINTS)]
    if shown:
        print("\n".join(shown), flush=True)
    if proc.returncode != 0:
        tail = [line for line in proc.stdout.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        error = PermanentStageError if is_permanent(proc.stdout) else StageError
        raise error(f"dvc {' '.join(args)} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def stage_state(project_dir: str | Path, stage: str) -> tuple[str | None, bool]:
    """(fingerprint, up_to_date) of one DVC stage, through DVC's Python API: the fingerprint hashes
    the stage's command and every dependency and parameter as DVC hashes them now (DVC's state
    database makes unchanged files cheap); up_to_date is `dvc status` for the stage: dependencies,
    parameters and outputs match dvc.lock. A missing dependency gives no fingerprint."""
    from dvc.repo import Repo

    from vqa.io import working_directory

    root = Path(project_dir).resolve()
    with working_directory(root), Repo(str(root)) as repo, repo.lock:  # DVC resolves outputs from the cwd
        (st,) = repo.stage.collect(stage)
        deps = []
        try:
            for dep in st.deps:
                h = dep.get_hash()
                deps.append([dep.def_path, h.name, h.value])
        except Exception as exc:  # a missing file or parameter: DVC says what when the stage runs
            print(f"{stage}: no fingerprint ({type(exc).__name__}: {exc}); the stage is not cached", flush=True)
            return None, False
        fingerprint = hashlib.sha256(json.dumps({"stage": stage, "cmd": st.cmd, "deps": deps}, sort_keys=True,
                                                default=str).encode()).hexdigest()
        return fingerprint, not st.changed()


def _retryable(task, task_run, state) -> bool:
    """retry_condition_fn: retry everything but bad input or configuration."""
    try:
        state.result()
    except (PermanentStageError, ValueError, LookupError, TypeError, NotImplementedError):
        return False
    except Exception:
        return True
    return True


def _retry_options(orch) -> dict:
    return {"retries": orch.retries, "retry_delay_seconds": exponential_backoff(orch.retry_delay_seconds)(orch.retries),
            "retry_jitter_factor": RETRY_JITTER, "retry_condition_fn": _retryable}


def _stage_key(ctx, params: dict) -> str | None:
    if not params.get("fingerprint"):
        return None  # not computable (a missing input): no caching
    what = f"{Path(params['project_dir']).resolve()}\n{params['stage']}\n{params['fingerprint']}"
    return "w2s-stage-" + hashlib.sha256(what.encode()).hexdigest()


@task(task_run_name="{stage}", persist_result=True, cache_key_fn=_stage_key, retries=2,
      retry_delay_seconds=exponential_backoff(10)(2), retry_jitter_factor=RETRY_JITTER, retry_condition_fn=_retryable)
def reproduce_stage(project_dir: str, stage: str, fingerprint: str | None = None) -> str:
    """One DVC stage. Returns "unchanged" when DVC found it up to date, else "ran". `fingerprint`
    (stage_state) is the cache key: same inputs, same outputs."""
    out = run_dvc(project_dir, ["repro", "--single-item", stage])
    status = "unchanged" if "didn't change" in out or "is cached" in out else "ran"
    get_run_logger().info("stage %s: %s", stage, status)
    return status


def run_stage(project_dir: str | Path, stage: str, orch, *, state: tuple | None = None, tags: tuple = ()) -> str:
    """reproduce_stage with the project's retry settings; a stage whose workspace does not match
    dvc.lock bypasses a cached result (refresh_cache) and runs."""
    fingerprint, fresh = state or stage_state(project_dir, stage)
    options = _retry_options(orch) | {"refresh_cache": not fresh}
    if tags:
        options["tags"] = set(tags)
    return reproduce_stage.with_options(**options)(str(project_dir), stage, fingerprint)


def _load_params(project_dir: str | Path):
    from vqa.config import load_params

    return load_params(Path(project_dir) / "params.yaml")


# --------------------------------------------------------------------------- teacher inference on Dask
def _shard_key(ctx, params: dict) -> str:
    from vqa.pipeline.shards import shard_key

    return shard_key(params["shard"])


@task(task_run_name="teacher-shard-{shard[index]}", persist_result=True, cache_key_fn=_shard_key,
      retry_condition_fn=_retryable)
def score_shard(shard: dict) -> dict:
    """One corpus shard x every homogeneous teacher (+ the student's features), into the project's
    caches. Cached on the shard's content hashes, teacher versions and sampling."""
    from vqa.pipeline.shards import score_shard as run

    logger = get_run_logger()
    result = run(shard, log=logger.info)
    logger.info("shard %s: %d videos, %d decoded now", shard["index"], result["videos"], result["decoded"])
    return result


def dask_task_runner(orch):
    """orchestration.dask_address, else a local cluster of dask_workers processes, one thread each
    (the teachers are numpy-heavy: threads would share one GIL). Started on the first submit."""
    from prefect.client.orchestration import get_client
    from prefect_dask import DaskTaskRunner

    from vqa.stack.team import dask_address

    if dask_address(orch.dask_address):  # a team stack's scheduler (DASK_SCHEDULER_ADDRESS) or params
        # A deployment loads this file as a module named after it ("w2s"), which workers started
        # elsewhere cannot import: send this module's functions by value.
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        return DaskTaskRunner(address=dask_address(orch.dask_address))
    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    # The workers report to this flow's API: without it, each would start its own temporary
    # server (~10 s) when the flow runs on one (vqa demo).
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": orch.dask_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None,
                                          "env": {"PREFECT_API_URL": api}})


def _on_dask(subflow, orch, *args):
    """Run a subflow on the Dask task runner. A local cluster sets OMP_NUM_THREADS=1 (and more,
    distributed.nanny.pre-spawn-environ) in this process's environment for its workers; restore
    it, or every later stage (training) would run single-threaded."""
    saved = dict(os.environ)
    try:
        return subflow.with_options(task_runner=dask_task_runner(orch))(*args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@flow(name="w2s-teacher-inference", flow_run_name="{round_name}-teachers")
def teacher_inference(project_dir: str = ".", round_name: str = "round1") -> dict:
    """The corpus in shards x the homogeneous teachers. Shards with work go to the flow's task
    runner (Dask); shards already in the project's caches run here (Cached, or a cache read), so
    a cluster starts only when there is work for it."""
    from vqa.pipeline.shards import is_cached, plan

    logger = get_run_logger()
    orch = _load_params(project_dir).orchestration
    shards = plan(project_dir)
    retry = _retry_options(orch)
    t0 = time.monotonic()
    pending, states = [], []
    for shard in shards:
        if is_cached(shard):
            states.append(score_shard.with_options(**retry)(shard, return_state=True))
        else:  # refresh_cache: a cached result elsewhere does not fill this project's caches
            pending.append(score_shard.with_options(**retry, refresh_cache=True).submit(shard))
    for future in pending:
        future.wait()
        states.append(future.state)
    results = [st.result() for st in states]  # raises if a shard failed
    cached = sum(st.name == "Cached" for st in states)
    decoded = sum(r["decoded"] for r, st in zip(results, states) if st.name != "Cached")
    logger.info("teacher inference: %d shards (%d on workers, %d cached), %d videos decoded now, %.1f s",
                len(shards), len(pending), cached, decoded, time.monotonic() - t0)
    return {"shards": len(shards), "submitted": len(pending), "cached": cached, "decoded": decoded}


# --------------------------------------------------------------------------- training and rounds
@flow(name="w2s-train", flow_run_name="{round_name}-train")
def w2s_train(project_dir: str = ".", round_name: str = "round1") -> str:
    """One round's DVC train stage; its task carries the `gpu` tag (one at a time when the tag
    concurrency limit exists). Deployed on the `gpu` work pool (prefect.yaml)."""
    root = Path(project_dir).resolve()
    return run_stage(root, f"train@{round_name}", _load_params(root).orchestration, tags=(GPU_TAG,))


def _train(root: Path, round_name: str, orch) -> str:
    if not orch.train_deployment:
        return w2s_train(str(root), round_name)
    from prefect.deployments import run_deployment

    run = run_deployment(orch.train_deployment, parameters={"project_dir": str(root), "round_name": round_name},
                         timeout=None, poll_interval=2)
    get_run_logger().info("train@%s ran as %s (flow run %s): %s", round_name, orch.train_deployment, run.id,
                          run.state.name)
    if not run.state.is_completed():
        raise StageError(f"train@{round_name} on deployment {orch.train_deployment}: {run.state.name}")
    return run.state.name


@flow(name="w2s-round", flow_run_name="{round_name}")
def w2s_round(project_dir: str = ".", round_name: str = "round1") -> dict:
    """teacher inference -> fusion -> student training -> evaluation -> registration."""
    root = Path(project_dir).resolve()
    with _claim(root, round_name):
        return _round(root, round_name)


@contextlib.contextmanager
def _claim(root: Path, what: str):
    """The project's run lock (vqa/pipeline/runlock.py), then the team DVC remote if one is set."""
    from vqa.pipeline.runlock import project_lock
    from vqa.stack.team import apply_dvc_remote

    with project_lock(root, what):
        apply_dvc_remote(root)
        yield


def _round(root: Path, round_name: str) -> dict:
    orch = _load_params(root).orchestration
    out = {}
    for step in ROUND_STEPS:
        stage = f"{step}@{round_name}"
        if step == "train":
            out[step] = _train(root, round_name, orch)
            continue
        state = stage_state(root, stage)
        if step == "teach" and not state[1]:  # DVC will run teach: score the corpus on Dask first
            out["teacher_inference"] = _on_dask(teacher_inference, orch, str(root), round_name)
        out[step] = run_stage(root, stage, orch, state=state)
    return out


@flow(name="w2s-rounds")
def w2s_rounds(project_dir: str = ".", rounds: int | None = None) -> str:
    """Corpus, suites and simulators, then K rounds; returns the results table."""
    from vqa.pipeline.report import collect, format_gains, format_table

    root = Path(project_dir).resolve()
    params = _load_params(root)
    with _claim(root, "w2s-rounds"):
        for stage in PREPARE_STAGES:
            run_stage(root, stage, params.orchestration)
        names = params.round_names()[: rounds or None]
        for name in names:
            w2s_round(str(root), name)
    from vqa.io import working_directory

    with working_directory(root):  # metrics paths are relative to the project root
        gains = format_gains(params)
        return format_table(collect(params)) + ("\n\n" + gains if gains else "")


if __name__ == "__main__":
    print(w2s_rounds())
