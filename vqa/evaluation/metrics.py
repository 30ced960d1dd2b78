"""Correlation metrics, robust to ties and constant predictions."""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr


class ConstantPredictionWarning(UserWarning):
    """Every prediction is the same: correlation is undefined and reported as 0."""


def _clean(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and ground truth {t.shape} differ in shape")
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def _corr(fn, pred, truth) -> float:
    p, t = _clean(pred, truth)
    if len(p) < 2:
        return math.nan
    if np.ptp(p) == 0:
        warnings.warn("constant predictions: correlation set to 0", ConstantPredictionWarning, stacklevel=3)
        return 0.0
    if np.ptp(t) == 0:
        return math.nan  # no ground-truth order to recover
    return float(fn(p, t)[0])


def srcc(pred, truth) -> float:
    return _corr(spearmanr, pred, truth)


def plcc(pred, truth) -> float:
    return _corr(pearsonr, pred, truth)


def weighted_mean(values: list[float], weights: list[float]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights) if not math.isnan(v)]
    if not pairs:
        return math.nan
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))
