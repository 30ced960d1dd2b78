"""The CUDA training path (bf16 autocast, pinned memory, loader workers); skipped without a GPU.

GPU kernels (cuDNN autotuning, atomics in backward) are not bit-reproducible, so these compare
runs within a tolerance; the bit-identical resume guarantee is the CPU one (test_train.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.test_train import WORKER, _env, kill_mid_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_env() -> dict:
    return {**_env(), "W2S_TEST_DEVICE": "cuda"}


def _run(mode, out, *extra):
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(WORKER), mode, str(out), *extra], env=_cuda_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def _close(a, b, atol):
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa.keys() == sb.keys()
    worst = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    assert worst <= atol, f"max weight difference {worst}"
    return worst


def test_fine_tuning_on_the_gpu_in_bf16_is_reproducible_within_tolerance(tmp_path):
    from vqa.student.train import pick_precision

    assert pick_precision("auto", "cuda") == torch.bfloat16
    one = _run("views", tmp_path / "a", "2")
    two = _run("views", tmp_path / "b", "0")
    assert one["steps"] == two["steps"] == 12
    assert all(row["train_loss"] == row["train_loss"] for row in one["history"])  # finite, not NaN
    print("views max diff", _close(tmp_path / "a" / "final.pt", tmp_path / "b" / "final.pt", atol=5e-3))


def test_kill_9_and_resume_on_the_gpu(tmp_path):
    whole = _run("features", tmp_path / "whole")
    out = tmp_path / "killed"
    kill_mid_run(out, _cuda_env())
    resumed = _run("features", out)
    assert 0 < resumed["resumed_from_step"] < whole["steps"] == resumed["steps"]
    print("features max diff", _close(tmp_path / "whole" / "final.pt", out / "final.pt", atol=1e-3))
