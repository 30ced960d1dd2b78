"""Training: kill -9 resume gives the same weights, fine-tuning on views, DDP replicas agree."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("train_worker.py")
ROOT = WORKER.parent.parent


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _run(mode: str, out: Path, *extra: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(WORKER), mode, str(out), *extra], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"weights differ in {different[:5]}"


def kill_mid_run(out: Path, env: dict) -> None:
    """Start a features-mode training run and SIGKILL it after its third checkpoint write."""
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(WORKER), "features", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, seen, deadline = out / "ckpt.pt", set(), time.monotonic() + 120
    try:
        while len(seen) < 3 and time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists():
                seen.add(ckpt.stat().st_mtime_ns)  # each rewrite is a later step
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def test_kill_9_mid_training_then_resume_gives_identical_weights(tmp_path):
    whole = _run("features", tmp_path / "whole")
    assert whole["resumed_from_step"] is None and whole["steps"] > 200

    out = tmp_path / "killed"
    kill_mid_run(out, _env())
    ckpt = out / "ckpt.pt"
    assert ckpt.exists() and not (out / "final.pt").exists()

    resumed = _run("features", out)
    assert 0 < resumed["resumed_from_step"] < whole["steps"]
    assert resumed["steps"] == whole["steps"]
    assert any("resuming" in line for line in resumed["log"])
    _same_weights(tmp_path / "whole" / "final.pt", out / "final.pt")
    assert resumed["history"] == whole["history"]
    assert not ckpt.exists(), "a finished run removes its checkpoint"


def test_a_checkpoint_from_other_inputs_is_not_resumed(tmp_path):
    import numpy as np

    from vqa.config.params import StudentParams
    from vqa.fusion.pairs import Pair
    from vqa.student.model import StudentConfig, StudentModel
    from vqa.student.train import train_student

    rng = np.random.default_rng(1)
    feats = {f"v{i}": rng.standard_normal((2, 2571)).astype(np.float32) for i in range(8)}  # 2x1280 + motion 11
    pairs = [Pair(f"v{i}", f"v{(i + 1) % 8}", int(rng.integers(0, 5)), "homogeneous") for i in range(8)]
    ckpt = tmp_path / "ckpt.pt"
    params = StudentParams(epochs=2, batch_size=4, checkpoint_every=1)
    logs: list[str] = []
    model = StudentModel(StudentConfig(), load_backbone=False)
    # A checkpoint written by another run (different labels) must be ignored, not half-applied.
    ckpt.write_bytes(b"not a checkpoint")
    train_student(model, pairs, feats, params, seed=0, checkpoint=ckpt, log=logs.append)
    assert any("unreadable checkpoint" in line for line in logs)
    assert not ckpt.exists()


def test_fine_tuning_on_views_learns_the_backbone_and_does_not_depend_on_loader_workers(tmp_path):
    one = _run("views", tmp_path / "w1", "1")
    zero = _run("views", tmp_path / "w0", "0")
    _same_weights(tmp_path / "w1" / "final.pt", tmp_path / "w0" / "final.pt")
    # 16 videos -> 60 pairs, 6 val; 54 train pairs in micro-batches of 8 = 7, accumulated 2 -> 4 steps/epoch
    assert one["steps"] == 3 * 4
    state = torch.load(tmp_path / "w1" / "final.pt", weights_only=True)
    from vqa.student.model import StudentConfig, StudentModel

    untrained = StudentModel(StudentConfig(backbone=f"file:{tmp_path / 'w1' / 'backbone.pt'}", input_size=32,
                                           fragment_grid=4, hidden=16, freeze_backbone=False)).state_dict()
    changed = [k for k in state if k.startswith("backbone.") and not torch.equal(state[k], untrained[k])]
    assert changed, "fine-tuning left the backbone untouched"
    bn_stats = [k for k in state if k.endswith("running_mean")]
    assert bn_stats and all(torch.equal(state[k], untrained[k]) for k in bn_stats), "BatchNorm statistics moved"


def test_ddp_on_two_cpu_processes_keeps_replicas_identical(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), "views",
           str(out), "0"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower() and "not available" in proc.stderr.lower():
        pytest.skip("this torch build has no gloo backend")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world"] == 2
    _same_weights(out / "rank0.pt", out / "rank1.pt")


def test_padding_frames_to_a_fixed_count_does_not_change_scores(tmp_path):
    """CUDA batches are padded with blank frames to one shape; with BatchNorm frozen the padded
    frames change nothing (checked on CPU, where the arithmetic is the same)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.tiny_backbone(tmp_path / "b.pt")
    from vqa.student.model import StudentConfig, StudentModel

    torch.manual_seed(0)
    model = StudentModel(StudentConfig(backbone=f"file:{tmp_path / 'b.pt'}", input_size=32, fragment_grid=4,
                                       hidden=8, freeze_backbone=False))
    model.train()  # training mode: dropout off below, but BatchNorm must still use its frozen stats
    model.head[1].p = 0.0
    views = torch.randint(0, 256, (3, 4, 2, 3, 32, 32), dtype=torch.uint8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    motion = torch.randn(3, 4, model.feature_dim - model.appearance_dim)
    plain = model({"views": views, "mask": mask, "motion": motion})
    padded = model({"views": views, "mask": mask, "motion": motion, "pad_frames": 24})
    assert torch.allclose(plain, padded, atol=1e-6)


def test_a_missing_or_bad_backbone_file_is_a_one_line_error(tmp_path):
    from vqa.student.backbones import get_backbone

    with pytest.raises(FileNotFoundError, match="nope.pt: cannot read"):
        get_backbone(f"file:{tmp_path / 'nope.pt'}")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        get_backbone(f"file:{tmp_path / 'bad.pt'}")
    with pytest.raises(KeyError, match="did you mean .*efficientnet-lite0"):
        get_backbone("efficientnet-lite")


def test_validation_loss_is_weighted_like_the_training_objective():
    """Early stopping watches the pair-weighted data term: a pair of weight 0 must not count."""
    from contextlib import nullcontext

    from vqa.student.data import FeatureSource, PairSet
    from vqa.student.model import StudentConfig, StudentModel
    from vqa.student.train import _evaluate

    torch.manual_seed(0)
    model = StudentModel(StudentConfig(motion_frames=0), load_backbone=False)
    feats = {f"v{i}": torch.randn(2, model.feature_dim).numpy() for i in range(4)}
    source = FeatureSource(feats)
    ids = sorted(feats)
    source.prepare(ids, torch.device("cpu"))
    a, b = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])

    def val_ce(labels, weights):
        data = PairSet(ids, a, b, torch.tensor(labels), torch.tensor(weights, dtype=torch.float32),
                       kind=torch.tensor([0, 1, 0]), val=torch.ones(3, dtype=torch.bool))
        return _evaluate(model, source, data, torch.arange(3), "five_level", lambda: nullcontext())["val_ce"]

    base = val_ce([4, 0, 2], [1.0, 1.0, 0.0])
    assert val_ce([4, 0, 0], [1.0, 1.0, 0.0]) == pytest.approx(base)  # the weight-0 pair's label is ignored
    assert val_ce([4, 0, 0], [1.0, 1.0, 1.0]) != pytest.approx(base)
