"""Learn-to-rank objectives over pairs of video scores.

five_level: the five preference levels (inferior .. superior, 0..4, preference of A over B) as an
ordinal (cumulative-logit) model of d = score_A - score_B: P(label <= k) = sigmoid(c_k - d), with
symmetric cutpoints c learned with the model; loss = cross-entropy.

five_level_confidence: the paper's adaptive confidence term on top:
L = (1 - lam) * CE + lam * H, H = mean entropy of the predicted 5-way distribution,
lam = a * min(1, t / T_warmup), a = exp(H/T) / (exp(H/T) + exp(CE/T)) (no gradient through a),
T decreasing linearly from 0.5 to 0.1 during warm-up (and 0.1 after).

bradley_terry: the plain RankNet / Bradley-Terry model P(A preferred) = sigmoid(d), trained with
binary cross-entropy against the soft target label / 4 (0, .25, .5, .75, 1: the paper's own
mapping of the five words to a preference), so "similar" pulls d towards 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def five_level_log_probs(d: torch.Tensor, cutpoints: torch.Tensor) -> torch.Tensor:
    """d [B], cutpoints [4] ascending -> log-probabilities [B,5] over labels 0..4."""
    cdf = torch.sigmoid(cutpoints.unsqueeze(0) - d.unsqueeze(1))  # P(label <= k), k = 0..3
    ones = torch.ones_like(d).unsqueeze(1)
    zeros = torch.zeros_like(d).unsqueeze(1)
    upper = torch.cat([cdf, ones], dim=1)
    lower = torch.cat([zeros, cdf], dim=1)
    return torch.log((upper - lower).clamp_min(1e-7))


def entropy(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(dim=1).mean()


@dataclass
class ConfidenceSchedule:
    total_steps: int
    warmup_fraction: float = 0.1
    t_start: float = 0.5
    t_end: float = 0.1

    @property
    def warmup_steps(self) -> int:
        return max(1, int(math.ceil(self.total_steps * self.warmup_fraction)))

    def ramp(self, step: int) -> float:
        return min(1.0, step / self.warmup_steps)

    def temperature(self, step: int) -> float:
        return self.t_start + (self.t_end - self.t_start) * self.ramp(step)


def pair_loss(
    kind: str,
    d: torch.Tensor,
    cutpoints: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int = 0,
    schedule: ConfidenceSchedule | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Returns (loss, logged terms)."""
    w = torch.ones_like(d) if weights is None else weights
    if kind == "bradley_terry":
        bce = F.binary_cross_entropy_with_logits(d, labels.to(d.dtype) / 4.0, reduction="none")
        loss = (bce * w).sum() / w.sum().clamp_min(1e-12)
        return loss, {"ce": loss.item()}
    logp = five_level_log_probs(d, cutpoints)
    nll = F.nll_loss(logp, labels, reduction="none")
    ce = (nll * w).sum() / w.sum().clamp_min(1e-12)
    if kind == "five_level":
        return ce, {"ce": ce.item()}
    if kind != "five_level_confidence":
        raise ValueError(f"unknown loss {kind!r}")
    if schedule is None:
        raise ValueError("five_level_confidence needs a ConfidenceSchedule")
    h = entropy(logp)
    temp = schedule.temperature(step)
    with torch.no_grad():
        a = torch.sigmoid((h - ce) / temp)  # == exp(H/T) / (exp(H/T) + exp(CE/T)), overflow-free
    lam = a * schedule.ramp(step)
    loss = (1 - lam) * ce + lam * h
    return loss, {"ce": ce.item(), "entropy": h.item(), "lambda": float(lam)}
