"""Training the student on labelled pairs.

The backbone is frozen: its features are computed once per video and cached (FeatureStore), and
only the head and the five-level bands are trained, which takes seconds on a CPU. Fine-tuning the
backbone end to end is not implemented yet; the pipeline refuses freeze_backbone: false.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from vqa.config.params import StudentParams
from vqa.fusion import Pair
from vqa.student.losses import ConfidenceSchedule, five_level_log_probs, pair_loss
from vqa.student.model import StudentModel


def pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("student.device: cuda requested but torch.cuda.is_available() is False")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    model: StudentModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    n_train: int = 0
    n_val: int = 0
    skipped_pairs: int = 0


def source_weights(sources: list[str], *, balance: bool = True, multipliers: dict[str, float] | None = None) -> list[float]:
    """Per-pair weights. balance: every source carries the same total weight (mean weight 1);
    multipliers (params student.source_weights): then scale each source's pairs by its factor."""
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    base = [len(sources) / (len(counts) * counts[s]) if balance else 1.0 for s in sources]
    mult = multipliers or {}
    return [w * mult.get(s, 1.0) for w, s in zip(base, sources)]


def _batches(n: int, size: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    return [order[i : i + size] for i in range(0, n, size)]


@torch.no_grad()
def _evaluate(model, feats, mask, a, b, y, loss: str = "five_level") -> dict:
    """val_ce: the objective's data term on held-out pairs (five-level CE, or the BT cross-entropy)."""
    model.eval()
    scores = model.video_scores(feats, mask)
    d = scores[a] - scores[b]
    if loss == "bradley_terry":
        ce = float(torch.nn.functional.binary_cross_entropy_with_logits(d, y.to(d.dtype) / 4.0))
    else:
        ce = float(torch.nn.functional.nll_loss(five_level_log_probs(d, model.cutpoints()), y))
    decided = y != 2  # "similar" has no direction to get right
    acc = float(((d[decided] > 0) == (y[decided] > 2)).float().mean()) if decided.any() else math.nan
    return {"val_ce": ce, "val_direction_accuracy": acc}


def train_student(
    model: StudentModel,
    pairs: list[Pair],
    features: dict[str, np.ndarray],
    params: StudentParams,
    *,
    seed: int,
    device: str = "cpu",
    patience: int = 8,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train model's head (and bands) on pairs whose both videos have features."""
    from vqa.student.features import stack_features

    seed_everything(seed)
    usable = [p for p in pairs if p.a in features and p.b in features]
    skipped = len(pairs) - len(usable)
    if not usable:
        raise ValueError("no training pair has features for both of its videos")
    ids = sorted({p.a for p in usable} | {p.b for p in usable})
    index = {vid: i for i, vid in enumerate(ids)}
    feats, mask = stack_features([features[v] for v in ids])
    feats, mask = feats.to(device), mask.to(device)
    a = torch.tensor([index[p.a] for p in usable], device=device)
    b = torch.tensor([index[p.b] for p in usable], device=device)
    y = torch.tensor([p.label for p in usable], device=device)
    w = torch.tensor(source_weights([p.source for p in usable], balance=params.balance_sources,
                                    multipliers=params.source_weights), device=device)

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(usable), generator=gen)
    n_val = int(len(usable) * params.val_fraction) if len(usable) >= 20 else 0
    val_idx, train_idx = perm[:n_val].to(device), perm[n_val:].to(device)

    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / params.batch_size)
    total = steps_per_epoch * params.epochs
    schedule = ConfidenceSchedule(total_steps=total, warmup_fraction=params.warmup_fraction)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total))

    history: list[dict] = []
    best_state, best_epoch, best_val, stale, step = None, 0, math.inf, 0, 0
    for epoch in range(1, params.epochs + 1):
        model.train()
        terms_sum: dict[str, float] = {}
        for batch in _batches(len(train_idx), params.batch_size, gen):
            sel = train_idx[batch.to(device)]
            # Score only the videos this batch touches.
            vids, inverse = torch.unique(torch.cat([a[sel], b[sel]]), return_inverse=True)
            scores = model.video_scores(feats[vids], mask[vids])
            sa, sb = scores[inverse[: len(sel)]], scores[inverse[len(sel) :]]
            loss, terms = pair_loss(params.loss, sa - sb, model.cutpoints(), y[sel], step=step, schedule=schedule,
                                    weights=w[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": loss.item(), **terms}.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v * len(sel)
        row = {"epoch": epoch, **{f"train_{k}": v / len(train_idx) for k, v in terms_sum.items()}}
        if n_val:
            row.update(_evaluate(model, feats, mask, a[val_idx], b[val_idx], y[val_idx], params.loss))
        history.append(row)
        score = row.get("val_ce", row["train_loss"])
        if score < best_val - 1e-6:
            best_val, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if n_val and stale >= patience:
                log(f"train: early stop at epoch {epoch} (best {best_epoch})")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    last = history[best_epoch - 1] if best_epoch else history[-1]
    log(
        "train: {} pairs ({} val), best epoch {}, ".format(len(train_idx), n_val, best_epoch or len(history))
        + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k != "epoch")
    )
    return TrainResult(model, history, best_epoch or len(history), len(train_idx), n_val, skipped)
