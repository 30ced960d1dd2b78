"""A training run on seeded synthetic inputs, as its own process, for the resume and DDP tests.

usage: python tests/train_worker.py MODE OUT_DIR
MODE features: head training on cached-feature stand-ins (the CPU setup), checkpointing often.
MODE views: fine-tuning a tiny TorchScript backbone on stored views (the GPU setup, on CPU).
W2S_TEST_DEVICE=cuda runs either on the GPU.
Writes OUT_DIR/final.pt (rank 0: the trained state) and OUT_DIR/result.json; under torchrun each
rank also writes OUT_DIR/rank<r>.pt so a test can check the replicas agree.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vqa.config.params import StudentParams
from vqa.fusion.pairs import Pair
from vqa.student.distributed import init_from_env
from vqa.student.model import StudentConfig, StudentModel
from vqa.student.motion import MOTION_DIM
from vqa.student.train import train_student


def synthetic_pairs(ids: list[str], quality: dict[str, float], n: int, rng) -> list[Pair]:
    pairs = []
    for _ in range(n):
        a, b = rng.choice(ids, 2, replace=False)
        gap = quality[a] - quality[b]
        label = 4 if gap > 2 else 3 if gap > 0.5 else 2 if gap > -0.5 else 1 if gap > -2 else 0
        pairs.append(Pair(str(a), str(b), label, "homogeneous" if rng.random() < 0.7 else "blur"))
    return pairs


def tiny_backbone(path: Path) -> None:
    """A 2-layer conv trunk as TorchScript: a stand-in for a real backbone file."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, stride=2))
    torch.jit.script(net.eval()).save(str(path))


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every run of the test
    torch.manual_seed(0)  # the model's initial weights
    rng = np.random.default_rng(0)
    ctx, device = init_from_env(os.environ.get("W2S_TEST_DEVICE", "cpu"))
    if mode == "features":
        model = StudentModel(StudentConfig(), load_backbone=False)
        dim = model.feature_dim
        direction = rng.standard_normal(dim).astype(np.float32)
        source = {f"v{i}": rng.standard_normal((3, dim)).astype(np.float32) for i in range(60)}
        quality = {v: float(f.mean(0) @ direction) / 8 for v, f in source.items()}
        params = StudentParams(epochs=12, batch_size=16, lr=2e-3, checkpoint_every=10, patience=100)
        pairs = synthetic_pairs(sorted(source), quality, 1600, rng)
    else:
        from vqa.student.data import ViewSource, ViewStore

        if ctx.is_main:
            tiny_backbone(out / "backbone.pt")
        ctx.barrier()
        config = StudentConfig(backbone=f"file:{out / 'backbone.pt'}", input_size=32, fragment_grid=4, hidden=16,
                               freeze_backbone=False)
        model = StudentModel(config)
        store = ViewStore(out / "cache", config)
        quality = {}
        for i in range(16):
            vid = f"v{i}"
            quality[vid] = i / 4
            views = rng.integers(0, 256, size=(2 + i % 3, 2, 3, 32, 32), dtype=np.uint8)
            views = (views * (0.2 + 0.05 * i)).astype(np.uint8)  # quality tied to brightness
            motion = rng.standard_normal((views.shape[0], MOTION_DIM)).astype(np.float32) + i / 8
            if ctx.is_main:
                store.add_views(vid, views, motion)
        ctx.barrier()
        params = StudentParams(epochs=3, batch_size=8, grad_accum_steps=2, lr=1e-3, checkpoint_every=2,
                               loader_workers=int(sys.argv[3]) if len(sys.argv) > 3 else 1,
                               freeze_backbone=False, input_size=32, fragment_grid=4, hidden=16)
        source = ViewSource(store, sorted(quality), workers=params.loader_workers)
        pairs = synthetic_pairs(sorted(quality), quality, 60, rng)
    logs: list[str] = []
    result = train_student(model, pairs, source, params, seed=7, device=device, checkpoint=out / "ckpt.pt",
                           dist=ctx, log=logs.append)
    state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
    if ctx.enabled:
        torch.save(state, out / f"rank{ctx.rank}.pt")
    if ctx.is_main:
        torch.save(state, out / "final.pt")
        (out / "result.json").write_text(json.dumps({
            "steps": result.steps, "resumed_from_step": result.resumed_from_step, "log": logs,
            "history": result.history, "world": ctx.world}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
