"""An ablation as a DVC experiment: on a committed baseline of a tiny 2-round project,
`dvc exp run -S iteration.hard_synthetic.enabled=false` re-runs only what the switch reaches, and
`dvc exp show` lists the experiment with its param value and metrics next to the baseline's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_project import ROOT, copy_project, git

pytestmark = pytest.mark.e2e

SWITCH = "iteration.hard_synthetic.enabled"
METRIC = "artifacts/round2/metrics.json"


def _dvc(proj: Path, env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=proj, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _row(entry: dict) -> tuple[dict, dict]:
    """(params.yaml params, round2 metrics) of one `dvc exp show --json` revision."""
    data = entry["data"]
    return data["params"]["params.yaml"]["data"], data["metrics"][METRIC]["data"]


def _get(d: dict, dotted: str):
    for key in dotted.split("."):
        d = d[key]
    return d


def test_exp_run_ablation_shows_next_to_the_baseline(prepared_tiny_project, tmp_path):
    start = time.monotonic()
    proj = copy_project(prepared_tiny_project, tmp_path / "proj")
    shutil.copy(ROOT / ".gitignore", proj / ".gitignore")  # the repo's rules: metrics.json is git's
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=db, MLFLOW_REGISTRY_URI=db,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    _dvc(proj, env, "repro")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "baseline")
    baseline_done = time.monotonic()

    out = _dvc(proj, env, "exp", "run", "-S", f"{SWITCH}=false")
    # the switch changes round 2's pairs; round 1's student and everything before it are reused
    assert "Running stage 'fuse@round2'" in out and "Running stage 'train@round2'" in out
    for stage in ("simulate", "suite", "train@round1", "register@round1"):
        assert f"'{stage}' didn't change, skipping" in out, stage
    exp_done = time.monotonic()

    shown = json.loads(_dvc(proj, env, "exp", "show", "--json"))
    head = git_head(proj)
    base = next(e for e in shown if e["rev"] == head)
    exps = [rev for group in base["experiments"] or [] for rev in group["revs"]]
    assert len(exps) == 1, exps
    base_params, base_metrics = _row(base)
    exp_params, exp_metrics = _row(exps[0])
    assert _get(base_params, SWITCH) is True and _get(exp_params, SWITCH) is False
    for metrics in (base_metrics, exp_metrics):
        srcc = metrics["models"]["student_round2"]["known_order"]["srcc"]
        assert isinstance(srcc, float) and -1 <= srcc <= 1
    # round 2's pairs differ (no hard synthetic pairs), so its lock entry does too
    base_outs, exp_outs = base["data"]["outs"], exps[0]["data"]["outs"]
    assert base_outs["artifacts/round2/pairs.csv"]["hash"] != exp_outs["artifacts/round2/pairs.csv"]["hash"]
    assert base_outs["artifacts/round1/student.pt"]["hash"] == exp_outs["artifacts/round1/student.pt"]["hash"]
    # lineage under `dvc repro` / `dvc exp run`: register found its round's stages already in dvc.lock
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("w2s-vqa").experiment_id],
                              "tags.`w2s.round` = 'round2'", order_by=["attributes.start_time ASC"])
    assert [r.data.tags["dvc.pairs.md5"] for r in runs] == [base_outs["artifacts/round2/pairs.csv"]["hash"],
                                                             exp_outs["artifacts/round2/pairs.csv"]["hash"]]
    assert {r.data.tags["dvc.hashes_from"] for r in runs} == {"dvc.lock"}
    print(f"\ntimings: baseline {baseline_done - start:.0f} s, exp run {exp_done - baseline_done:.0f} s, "
          f"total {time.monotonic() - start:.0f} s")


def git_head(proj: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=proj, capture_output=True, text=True,
                          check=True).stdout.strip()
