"""Team stack timings, measured in one run on this machine:

1. `vqa stack up` from nothing (cold: initdb, migrations) and again after `down` (warm: data kept);
2. one W2S round of the tiny project, embedded (temporary Prefect server, SQLite MLflow, local
   Dask cluster) vs on the team stack (its Prefect server, MLflow server, Dask cluster), each a
   fresh copy of the same prepared project, the flow run in its own process;
3. MLflow against the server vs SQLite: log_model + register of a real student, an alias set and
   read back (the registry round trip), and loading the model back.

Run: .venv/bin/python benchmarks/team_stack.py [--repeats 5]   (prints a JSON object at the end)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_ROUND = """
import sys, time
from flows.w2s import w2s_round
t0 = time.perf_counter()
state = w2s_round(project_dir=sys.argv[1], round_name="round1", return_state=True)
print("ROUND", state.name, time.perf_counter() - t0, flush=True)
"""

_MLFLOW = """
import json, statistics, sys, tempfile, time
import mlflow
from vqa.config.params import MlflowParams
from vqa.registry import configure_tracking, log_and_register_student
repeats, checkpoint = int(sys.argv[1]), sys.argv[2]
params = MlflowParams(tracking_uri=sys.argv[3], experiment="bench", model_name="bench-student")
configure_tracking(params)
client = mlflow.MlflowClient()
log, alias, load = [], [], []
for i in range(repeats):
    with mlflow.start_run():
        t0 = time.perf_counter()
        reg = log_and_register_student(checkpoint, params, aliases=[])
        log.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    client.set_registered_model_alias(params.model_name, "bench", reg.version)
    assert str(client.get_model_version_by_alias(params.model_name, "bench").version) == reg.version
    alias.append(time.perf_counter() - t0)
for i in range(max(1, repeats // 2)):
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mlflow.pyfunc.load_model(f"models:/{params.model_name}@bench", dst_path=tmp)
        load.append(time.perf_counter() - t0)
print("MLFLOW", json.dumps({k: round(statistics.median(v), 3) for k, v in
                            {"log_model_register_s": log, "alias_round_trip_s": alias, "load_model_s": load}.items()}))
"""


def _quiet_env(extra: dict | None = None, drop: tuple = ()) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(extra or {})
    return env


def _line(out: str, tag: str) -> str:
    """What follows `tag` on its line of a child's output."""
    line = next((ln for ln in out.splitlines() if ln.startswith(tag + " ")), None)
    if line is None:
        raise RuntimeError(f"no {tag} line in:\n{out[-3000:]}")
    return line[len(tag) + 1:]


def main() -> None:
    from tests.tiny_project import build_prepared, copy_project
    from vqa.stack.native import Stack
    from vqa.stack.services import CLIENT_ENV

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out: dict = {}

    def note(key, value):  # each figure as soon as it is measured (stderr), all of them at the end
        out[key] = value
        print(f"{key}: {value}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="w2s-bench-") as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "stack", log=lambda m: None)
        try:
            note("stack_up_cold_s", round(stack.up(), 1))
            stack.down()
            note("stack_up_warm_s", round(stack.up(), 1))
            prepared = build_prepared(tmp / "prepared")
            # the temporary server's default 20 s start-up limit is too short on a busy machine
            embedded_env = _quiet_env({"PREFECT_HOME": str(tmp / "prefect-home"),
                                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"},
                                      drop=tuple(CLIENT_ENV))
            embedded_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'embedded.db'}"
            team_env = _quiet_env(stack.client_env())
            for name, env in (("embedded", embedded_env), ("team", team_env)):
                proj = copy_project(prepared, tmp / f"round-{name}", rounds=1)
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", _ROUND, str(proj)], cwd=ROOT, env=env,
                                      capture_output=True, text=True)
                state = _line(proc.stdout + proc.stderr, "ROUND").split()[0]
                note(f"round_{name}_s", round(time.perf_counter() - t0, 1))  # process start included
                note(f"round_{name}_state", state)
            checkpoint = str(tmp / "round-team" / "artifacts/round1/student.pt")
            for name, uri in (("sqlite", f"sqlite:///{tmp / 'bench.db'}"), ("server", team_env["MLFLOW_TRACKING_URI"])):
                proc = subprocess.run([sys.executable, "-c", _MLFLOW, str(args.repeats), checkpoint, uri], cwd=ROOT,
                                      env=_quiet_env(drop=tuple(CLIENT_ENV)), capture_output=True, text=True)
                note(f"mlflow_{name}", json.loads(_line(proc.stdout + proc.stderr, "MLFLOW")))
        finally:
            stack.down(purge=True)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
