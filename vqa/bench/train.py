"""`vqa bench train`: end-to-end fine-tuning throughput of the student.

The real training loop (vqa.student.train) fine-tunes the backbone on the views of a folder of
videos: DataLoader workers read views into pinned memory, the backbone runs channels-last under
bf16 autocast on CUDA. Reported: pairs, videos and images per second over the timed steps (after
warm-up steps that let cuDNN pick its kernels), the share of time spent waiting for data vs
computing, and peak GPU memory. On a CPU it runs a short smoke version of the same path.

Pairs are drawn at random among the videos with seeded random labels: labels change what is
learnt, not what a step costs, so this measures speed only, never quality.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np


def _random_pairs(ids: list[str], n: int, seed: int):
    from vqa.fusion.pairs import Pair

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(ids), 2, replace=False)
        out.append(Pair(ids[a], ids[b], int(rng.integers(0, 5)), "homogeneous"))
    return out


def bench_train(
    videos: str | Path,
    *,
    student,  # StudentParams
    key_rate: float = 1.0,
    max_key_frames: int = 8,
    steps: int | None = None,
    warmup: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    cache_root: str | Path = "artifacts/cache",
    decode_workers: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    import torch

    from vqa.bench import video_folder
    from vqa.io import sha256_file
    from vqa.pipeline.analyse import analyse
    from vqa.student.data import ViewSource, ViewStore
    from vqa.student.distributed import init_from_env
    from vqa.student.model import StudentConfig, StudentModel
    from vqa.student.train import pick_device, pick_precision, train_student

    ctx, dev = init_from_env(pick_device(device))
    cuda = dev.startswith("cuda")
    steps = steps if steps is not None else (40 if cuda else 3)
    warmup = warmup if warmup is not None else (5 if cuda else 1)
    batch = batch_size or (student.batch_size if cuda else 4)
    params = student.model_copy(update={"freeze_backbone": False, "batch_size": batch, "epochs": 10_000})
    config = StudentConfig(backbone=params.backbone, input_size=params.input_size, fragment_grid=params.fragment_grid,
                           motion_frames=params.motion_frames, hidden=params.hidden, dropout=params.dropout, freeze_backbone=False, key_rate=key_rate,
                           max_key_frames=max_key_frames)

    paths = video_folder(Path(videos))[:limit]
    if not paths:
        raise FileNotFoundError(f"{videos}: no video files to benchmark on")
    store = ViewStore(cache_root, config)
    items = [(sha256_file(p), str(p)) for p in paths]
    t0 = time.perf_counter()
    if ctx.is_main:
        analyse(items, teacher_names=[], cache_root=cache_root, key_rate=key_rate, max_key_frames=max_key_frames,
                features=store, workers=decode_workers or max(1, min(8, (os.cpu_count() or 2))), log=log)
    ctx.barrier()
    prep_s = time.perf_counter() - t0
    ids = sorted({vid for vid, _ in items if store.path(vid).exists()})
    if len(ids) < 2:
        raise ValueError(f"{videos}: fewer than 2 decodable videos")
    pairs = _random_pairs(ids, n=(steps + warmup + 2) * batch * params.grad_accum_steps * ctx.world, seed=seed)

    torch.manual_seed(seed)
    model = StudentModel(config)
    amp = pick_precision(params.precision, dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    marks: dict[int, tuple[float, dict]] = {}

    started = time.perf_counter()

    def probe(step: int, timing: dict) -> None:
        if step in (warmup, warmup + steps):
            marks[step] = (time.perf_counter(), dict(timing))
        if step % 10 == 0 or step == warmup:
            log(f"bench train: step {step}/{warmup + steps} at {time.perf_counter() - started:.1f} s")

    log(f"bench train: {len(ids)} videos ({prep_s:.1f} s to decode views), backbone {config.backbone} fine-tuned at "
        f"{config.input_size}px, {batch} pairs x {params.grad_accum_steps} per step, {warmup} warm-up + {steps} timed "
        f"steps, {'bf16' if amp else 'fp32'} on {dev}" + (f", {ctx.world} processes" if ctx.enabled else ""))
    train_student(model, pairs, ViewSource(store, ids, workers=params.loader_workers), params, seed=seed,
                  device=dev, dist=ctx, max_steps=warmup + steps, probe=probe, log=lambda m: None)
    (t_a, a), (t_b, b) = marks[warmup], marks[warmup + steps]
    wall = t_b - t_a
    delta = {k: b[k] - a[k] for k in a}
    per_rank_pairs = delta["pairs"]
    result = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "precision": "bf16" if amp else "fp32",
        "world_size": ctx.world,
        "backbone": config.backbone,
        "input_size": config.input_size,
        "batch_pairs": batch,
        "grad_accum_steps": params.grad_accum_steps,
        "loader_workers": params.loader_workers,
        "timed_steps": steps,
        "seconds": round(wall, 3),
        "pairs_per_s": round(per_rank_pairs * ctx.world / wall, 2),
        "videos_per_s": round(delta["videos"] * ctx.world / wall, 2),
        "images_per_s": round(2 * delta["frames"] * ctx.world / wall, 1),  # two views per key frame
        "data_wait_fraction": round(delta["data_s"] / max(wall, 1e-9), 3),
        "compute_fraction": round(delta["compute_s"] / max(wall, 1e-9), 3),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if cuda else None,
        "views_prep_s": round(prep_s, 2),
        "smoke": not cuda,
    }
    log(f"bench train: {result['pairs_per_s']} pairs/s, {result['images_per_s']} images/s; waiting for data "
        f"{100 * result['data_wait_fraction']:.0f}% of the time, computing {100 * result['compute_fraction']:.0f}%"
        + (f"; peak GPU memory {result['peak_gpu_memory_mb']:.0f} MB on {result['device']}" if cuda else " (CPU smoke run)"))
    return result
