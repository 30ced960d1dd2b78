"""Training the student on labelled pairs.

Two setups share this loop (vqa.student.data):
- frozen backbone (CPU demo default): backbone features are cached once per video and only the
  head and the five-level bands learn, in seconds to minutes on 2 cores;
- fine-tuning (freeze_backbone: false, for GPUs): views are read by DataLoader workers into pinned
  memory, the backbone runs channels-last under bf16 autocast, gradients may be accumulated over
  micro-batches, and `torchrun` runs one DistributedDataParallel process per GPU.

Resumable: every `checkpoint_every` optimiser steps (and after each epoch) the whole training
state is written atomically. The pair order of an epoch and the dropout noise of each
micro-batch are functions of (seed, epoch, micro-batch), not of a running random state, so a run
killed at any point and resumed from its last checkpoint replays exactly what the uninterrupted
run does: on CPU the final weights are bit-identical.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vqa.config.params import StudentParams
from vqa.fusion import PAIR_KINDS, Pair
from vqa.io import atomic_write_bytes
from vqa.student.data import FeatureSource, PairSet, ViewSource, epoch_order, micro_batch, split_train_val
from vqa.student.distributed import DistContext, all_mean
from vqa.student.losses import ConfidenceSchedule, five_level_log_probs, pair_loss
from vqa.student.model import StudentModel

CHECKPOINT_FORMAT = 1


def pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("student.device: cuda requested but torch.cuda.is_available() is False")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_precision(requested: str, device: str) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    cuda = device.startswith("cuda")
    if requested == "bf16":
        if not cuda:
            raise ValueError("student.precision: bf16 autocast is for CUDA devices; use fp32 on CPU")
        return torch.bfloat16
    if requested == "auto" and cuda and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _noise_seed(seed: int, epoch: int, micro: int, rank: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{epoch}/{micro}/{rank}".encode()).digest()[:8], "little") >> 1


@dataclass
class TrainResult:
    model: StudentModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    n_train: int = 0
    n_val: int = 0
    skipped_pairs: int = 0
    steps: int = 0
    resumed_from_step: int | None = None
    timing: dict = field(default_factory=dict)  # seconds waiting for data vs computing, samples


def pair_weights(pairs: list[Pair], mix: dict[str, float], multipliers: dict[str, float] | None = None) -> list[float]:
    """Per-pair weights, separately for the training and the validation pairs (so the validation
    loss weighs like the objective): the pairs of each kind (Pair.kind) carry mix[kind] of the
    total weight, kinds absent from the pairs giving their share to the others in proportion,
    and weigh the same inside their kind (mean weight 1); then each source's factor in
    `multipliers` (params student.source_weights) scales its pairs."""
    out = [0.0] * len(pairs)
    mult = multipliers or {}
    for split in {p.split for p in pairs}:
        idx = [i for i, p in enumerate(pairs) if p.split == split]
        counts: dict[str, int] = {}
        for i in idx:
            counts[pairs[i].kind] = counts.get(pairs[i].kind, 0) + 1
        shares = {k: float(mix.get(k, 0.0)) for k in counts}
        total = sum(shares.values())
        for i in idx:
            k = pairs[i].kind
            base = len(idx) * shares[k] / (total * counts[k]) if total > 0 else 1.0
            out[i] = base * mult.get(pairs[i].source, 1.0)
    return out


# --------------------------------------------------------------------------- checkpoints
def _run_key(params: StudentParams, seed: int, data: PairSet, source, world: int, model: StudentModel) -> str:
    """What must match for a checkpoint to be resumed: everything that changes the result.
    (checkpoint_every, loader_workers and device do not; the world size does.)"""
    knobs = params.model_dump(exclude={"checkpoint_every", "loader_workers", "device"})
    blob = json.dumps({"params": knobs, "seed": seed, "data": data.digest(), "source": source.fingerprint(),
                       "world": world, "model": model.config.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path, run_key: str, log) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file (atomic writes make this rare): start again
        log(f"train: {path}: unreadable checkpoint ({exc}); starting from scratch")
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("run_key") != run_key:
        log(f"train: {path}: checkpoint of a different run (inputs or params changed); starting from scratch")
        return None
    return state


def _cpu_state(sd: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


# --------------------------------------------------------------------------- the loop
@torch.no_grad()
def _evaluate(model, source, data: PairSet, idx: torch.Tensor, loss: str, autocast) -> dict:
    """val_ce: the objective's data term on the validation pairs (five-level CE, or the BT
    cross-entropy), with the training pair weights; also per pair kind (val_ce_teacher, ...)."""
    model.eval()
    vids = torch.unique(torch.cat([data.a[idx], data.b[idx]]))
    scores = torch.full((len(data.ids),), math.nan)
    for chunk in source.chunks(vids):  # bounded memory when views are run through the backbone
        with autocast():
            scores[chunk] = model.scores(source.inputs(chunk)).float().cpu()
    d = scores[data.a[idx]] - scores[data.b[idx]]
    y, w, kind = data.y[idx], data.w[idx], data.kind[idx]
    # Weighted like the training objective: with a 1:1 mix a few simulator pairs outweigh many
    # teacher pairs, and an unweighted validation loss would stop training on the wrong goal.
    if loss == "bradley_terry":
        terms = torch.nn.functional.binary_cross_entropy_with_logits(d, y.to(d.dtype) / 4.0, reduction="none")
    else:
        terms = torch.nn.functional.nll_loss(five_level_log_probs(d, model.cutpoints().float().cpu()), y,
                                             reduction="none")
    out = {"val_ce": float((terms * w).sum() / w.sum().clamp_min(1e-12))}
    for k, name in enumerate(PAIR_KINDS):
        sel = kind == k
        if sel.any():
            out[f"val_ce_{name}"] = float((terms[sel] * w[sel]).sum() / w[sel].sum().clamp_min(1e-12))
    decided = y != 2  # "similar" has no direction to get right
    out["val_direction_accuracy"] = (float(((d[decided] > 0) == (y[decided] > 2)).float().mean())
                                     if decided.any() else math.nan)
    return out


def train_student(
    model: StudentModel,
    pairs: list[Pair],
    source: FeatureSource | ViewSource | dict,
    params: StudentParams,
    *,
    seed: int,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    dist: DistContext | None = None,
    max_steps: int | None = None,
    probe: Callable[[int, dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train the student on the pairs whose two videos the source has.

    checkpoint: a file to resume from and to write every `params.checkpoint_every` steps (removed
    when training ends). max_steps: stop after this many optimiser steps; probe(step, timing) is
    called after each (benchmarks)."""
    dist = dist or DistContext()
    if isinstance(source, dict):
        source = FeatureSource(source)
    dev = torch.device(device)
    seed_everything(seed)
    weights = pair_weights(pairs, params.mix.model_dump(), params.source_weights)
    data = PairSet.build(pairs, source, weights)
    source.prepare(data.ids, dev, pairs_per_batch=math.ceil(params.batch_size / dist.world))
    train_idx, val_idx = split_train_val(data)
    n_micro = math.ceil(len(train_idx) / params.batch_size)
    accum = params.grad_accum_steps
    steps_per_epoch = math.ceil(n_micro / accum)
    total = steps_per_epoch * params.epochs
    if max_steps is not None:
        total = min(total, max_steps)

    model.to(dev)
    # cudnn.benchmark stays off: the number of frames per micro-batch varies, and every new shape
    # would be autotuned again (measured on an H200: slower than the default kernel choice).
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))
    schedule = ConfidenceSchedule(total_steps=total, warmup_fraction=params.warmup_fraction)
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp_dtype = pick_precision(params.precision, device)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    ckpt_path = Path(checkpoint) if checkpoint else None
    run_key = _run_key(params, seed, data, source, dist.world, model)
    state = {"epoch": 1, "micro": 0, "step": 0, "history": [], "sums": {}, "best_state": None, "best_epoch": 0,
             "best_val": math.inf, "stale": 0, "done": False}
    resumed_from = None
    if ckpt_path is not None:
        saved = _load_checkpoint(ckpt_path, run_key, log)
        if saved is not None:
            model.load_state_dict(saved["model"], strict=False)
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            state = saved["loop"]
            resumed_from = state["step"]
            log(f"train: resuming {ckpt_path} at step {state['step']} (epoch {state['epoch']})")

    def snapshot() -> None:
        if ckpt_path is None or not dist.is_main:
            return
        _save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "run_key": run_key, "model": _cpu_state(model.trainable_state()),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "loop": state,
        })

    timing = {"data_s": 0.0, "compute_s": 0.0, "pairs": 0, "videos": 0, "frames": 0}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    stop = state["done"] or state["step"] >= total
    while not stop and state["epoch"] <= params.epochs:
        epoch = state["epoch"]
        order = epoch_order(train_idx, seed, epoch)
        batches = [micro_batch(data, dist.shard(order[i : i + params.batch_size]))
                   for i in range(0, len(order), params.batch_size)]
        groups = [list(range(g, min(g + accum, n_micro))) for g in range(0, n_micro, accum)]
        start = state["micro"]
        todo = batches[start:]
        stream = iter(source.loader(todo)) if isinstance(source, ViewSource) else None
        net.train()
        t_mark = time.perf_counter()
        for group in groups:
            if group[0] < start:
                continue
            for j, m in enumerate(group):
                item = next(stream) if stream is not None else batches[m]
                inputs = source.inputs_from(item) if stream is not None else source.inputs(item["vids"])
                sync()
                t_data = time.perf_counter()
                timing["data_s"] += t_data - t_mark
                torch.manual_seed(_noise_seed(seed, epoch, m, dist.rank))  # dropout noise of this micro-batch
                last = j == len(group) - 1
                ctx = net.no_sync() if dist.enabled and not last else nullcontext()
                with ctx:
                    with autocast():
                        scores = net(inputs)
                    scores = scores.float()
                    ia, ib = item["ia"].to(dev), item["ib"].to(dev)
                    loss, terms = pair_loss(params.loss, scores[ia] - scores[ib], model.cutpoints().float(),
                                            item["y"].to(dev), step=state["step"], schedule=schedule,
                                            weights=item["w"].to(dev))
                    (loss / len(group)).backward()
                n = len(item["y"])
                for k, v in {"loss": loss.item(), **terms}.items():
                    state["sums"][k] = state["sums"].get(k, 0.0) + v * n
                state["sums"]["_n"] = state["sums"].get("_n", 0.0) + n
                sync()
                t_mark = time.perf_counter()
                timing["compute_s"] += t_mark - t_data
                timing["pairs"] += n
                timing["videos"] += len(item["vids"])
                timing["frames"] += int(inputs["mask"].sum())
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            sync()
            now = time.perf_counter()
            timing["compute_s"] += now - t_mark
            t_mark = now
            state["step"] += 1
            if probe is not None:
                probe(state["step"], timing)
            state["micro"] = group[-1] + 1
            if state["step"] % params.checkpoint_every == 0:
                snapshot()
            if state["step"] >= total:
                break
        if state["micro"] < n_micro:  # max_steps reached mid-epoch
            stop = True
            break
        sums = state["sums"]
        n = max(sums.pop("_n", 0.0), 1.0)
        row = {"epoch": epoch, **{f"train_{k}": all_mean(v / n, dist, dev) for k, v in sums.items()}}
        if len(val_idx):
            row.update(_evaluate(model, source, data, val_idx, params.loss, autocast))
        state["history"].append(row)
        score = row.get("val_ce", row["train_loss"])
        if score < state["best_val"] - 1e-6:
            state.update(best_val=score, best_epoch=epoch, stale=0, best_state=_cpu_state(model.trainable_state()))
        else:
            state["stale"] += 1
            if len(val_idx) and state["stale"] >= params.patience:
                log(f"train: early stop at epoch {epoch} (best {state['best_epoch']})")
                stop = True
        state.update(epoch=epoch + 1, micro=0, sums={})
        if state["step"] >= total or epoch == params.epochs:
            stop = True
        state["done"] = stop
        snapshot()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"], strict=False)
    model.eval()
    if dist.is_main and ckpt_path is not None and state["done"]:
        ckpt_path.unlink(missing_ok=True)  # finished: the student file is the result
    history = state["history"]
    best = state["best_epoch"] or len(history)
    last = history[best - 1] if history else {}
    log(f"train: {len(train_idx)} pairs ({len(val_idx)} val), {state['step']} steps, best epoch {best}, "
        + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k != "epoch"))
    return TrainResult(model, history, best, len(train_idx), len(val_idx), data.skipped, state["step"],
                       resumed_from, timing)

