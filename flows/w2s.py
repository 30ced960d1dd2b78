"""Prefect flows for the weak-to-strong rounds.

Each task reproduces exactly one DVC stage (`dvc repro --single-item STAGE`), and each stage runs
one `vqa` step, so there is one implementation of every step, DVC versions every output and skips
what is up to date (a re-run after a crash resumes), and Prefect orders, retries and records the
work. `dvc repro` alone runs the same pipeline without Prefect.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

PREPARE_STAGES = ("corpus", "suite", "simulate")
ROUND_STEPS = ("teach", "fuse", "train", "evaluate", "register")


def _env() -> dict:
    env = dict(os.environ)
    # Stage commands call `vqa`; make sure it is the one of this interpreter's environment.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


# DVC's per-stage git hints; the demo prints the lock file status once at the end instead.
_DVC_HINTS = ("To track the changes with git", "git add ", "To enable auto staging", "dvc config core.autostage",
              "Use `dvc push`")


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
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


@task(task_run_name="{stage}", retries=1, retry_delay_seconds=5)
def reproduce_stage(project_dir: str, stage: str) -> str:
    """One DVC stage. Returns "unchanged" when DVC found it up to date, else "ran"."""
    out = run_dvc(project_dir, ["repro", "--single-item", stage])
    status = "unchanged" if "didn't change" in out or "is cached" in out else "ran"
    get_run_logger().info("stage %s: %s", stage, status)
    return status


@flow(name="w2s-round", flow_run_name="{round_name}")
def w2s_round(project_dir: str = ".", round_name: str = "round1") -> dict:
    """teacher inference -> fusion -> student training -> evaluation -> registration."""
    return {step: reproduce_stage(project_dir, f"{step}@{round_name}") for step in ROUND_STEPS}


@flow(name="w2s-rounds")
def w2s_rounds(project_dir: str = ".", rounds: int | None = None) -> str:
    """Corpus, suites and simulators, then K rounds; returns the results table."""
    from vqa.config import load_params
    from vqa.pipeline.report import collect, format_gains, format_table

    root = Path(project_dir)
    params = load_params(root / "params.yaml")
    for stage in PREPARE_STAGES:
        reproduce_stage(str(root), stage)
    names = params.round_names()[: rounds or None]
    for name in names:
        w2s_round(str(root), name)
    cwd = os.getcwd()
    try:
        os.chdir(root)  # metrics paths are relative to the project root
        gains = format_gains(params)
        return format_table(collect(params)) + ("\n\n" + gains if gains else "")
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    print(w2s_rounds())
