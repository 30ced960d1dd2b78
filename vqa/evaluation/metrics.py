"""Correlation metrics, robust to ties and constant predictions.

Besides SRCC/PLCC this holds what VQA papers report: Kendall tau-b, PLCC/RMSE after the VQEG
4-parameter logistic mapping, percentile bootstrap CIs (also paired, for "student minus teacher"),
and per-dataset aggregation for suites whose datasets use different MOS scales.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from scipy.stats import kendalltau, pearsonr, spearmanr

__all__ = [
    "ConstantPredictionWarning",
    "LogisticFit",
    "all_metrics",
    "bootstrap_ci",
    "bootstrap_metrics",
    "fit_logistic",
    "grouped_metrics",
    "grouped_paired_diff",
    "krcc",
    "logistic4",
    "paired_bootstrap_diff",
    "plcc",
    "plcc_fitted",
    "rmse_fitted",
    "srcc",
    "weighted_mean",
]


class ConstantPredictionWarning(UserWarning):
    """Every prediction is the same: correlation is undefined and reported as 0."""


def _clean(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and ground truth {t.shape} differ in shape")
    keep = np.isfinite(p) & np.isfinite(t)
    return p[keep], t[keep]


def _corr_clean(fn, p: np.ndarray, t: np.ndarray, stacklevel: int) -> float:
    """Correlation on already-cleaned arrays; `stacklevel` points the warning at the user's call."""
    if len(p) < 2:
        return math.nan
    if np.ptp(p) == 0:
        warnings.warn("constant predictions: correlation set to 0", ConstantPredictionWarning, stacklevel=stacklevel)
        return 0.0
    if np.ptp(t) == 0:
        return math.nan  # no ground-truth order to recover
    return float(fn(p, t)[0])


def _corr(fn, pred, truth) -> float:
    p, t = _clean(pred, truth)
    return _corr_clean(fn, p, t, stacklevel=4)


def srcc(pred, truth) -> float:
    return _corr(spearmanr, pred, truth)


def plcc(pred, truth) -> float:
    return _corr(pearsonr, pred, truth)


def krcc(pred, truth) -> float:
    """Kendall tau-b (tie-corrected); same NaN/constant rules as `srcc`."""
    return _corr(kendalltau, pred, truth)


def weighted_mean(values: list[float], weights: list[float]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights) if not math.isnan(v)]
    if not pairs:
        return math.nan
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


# --------------------------------------------------------------------------------------------
# VQEG 4-parameter logistic mapping


def logistic4(x, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """f(x) = (b1 - b2) / (1 + exp(-(x - b3)/|b4|)) + b2."""
    # expit is the same function without exp overflow; the floor on |b4| keeps the optimiser
    # from dividing by zero when it probes a step function.
    scale = max(abs(float(b4)), 1e-12)
    return (b1 - b2) * expit((np.asarray(x, dtype=np.float64) - b3) / scale) + b2


def _logistic4_jac(x, b1, b2, b3, b4) -> np.ndarray:
    # Analytic: MINPACK's finite-difference step is relative to |b|, so a start value near 0
    # (b3 = mean of z-scored predictions) would get a zero derivative and never move.
    scale = max(abs(float(b4)), 1e-12)
    z = (np.asarray(x, dtype=np.float64) - b3) / scale
    s = expit(z)
    ds = (b1 - b2) * s * (1 - s)
    return np.stack([s, 1 - s, -ds / scale, -ds * z / scale * np.sign(b4 or 1.0)], axis=1)


@dataclass(frozen=True)
class LogisticFit:
    """Fitted prediction -> MOS map; call it on predictions.

    params is (b1, b2, b3, b4) for the logistic, or (slope, intercept) when `fallback` is True
    (then `reason` says why the logistic was not used).
    """

    params: tuple[float, ...]
    fallback: bool = False
    reason: str = ""
    n: int = 0

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.fallback:
            slope, intercept = self.params
            return slope * x + intercept
        return logistic4(x, *self.params)


def _linear_fit(p: np.ndarray, t: np.ndarray, reason: str) -> LogisticFit:
    if len(p) == 0:
        return LogisticFit((0.0, math.nan), True, reason, 0)
    if np.ptp(p) == 0:
        return LogisticFit((0.0, float(t.mean())), True, reason, len(p))
    slope, intercept = np.polyfit(p, t, 1)
    return LogisticFit((float(slope), float(intercept)), True, reason, len(p))


def _fit_clean(p: np.ndarray, t: np.ndarray) -> LogisticFit:
    if len(p) < 2 or np.ptp(p) == 0:
        return _linear_fit(p, t, "fewer than 2 distinct predictions")
    sd = float(p.std())
    p0 = [float(t.max()), float(t.min()), float(p.mean()), sd if sd > 0 else 1.0]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # OptimizeWarning only says the covariance is unknown; we never use it.
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic4, p, t, p0=p0, jac=_logistic4_jac, maxfev=20000)
    except (RuntimeError, TypeError, ValueError) as exc:
        # TypeError: fewer points than parameters; RuntimeError: maxfev reached.
        return _linear_fit(p, t, f"logistic fit failed: {type(exc).__name__}: {exc}")
    if not np.all(np.isfinite(params)):
        return _linear_fit(p, t, "logistic fit gave non-finite parameters")
    fit = LogisticFit(tuple(float(b) for b in params), False, "", len(p))
    lin = _linear_fit(p, t, "logistic fit worse than a straight line (bad local optimum)")
    # A logistic can always approximate a line (large |b4|), so doing worse means the optimiser
    # got stuck; reporting the better map is what the mapping is for.
    if np.sum((lin(p) - t) ** 2) < np.sum((fit(p) - t) ** 2) * (1 - 1e-9):
        return lin
    return fit


def fit_logistic(pred, truth) -> LogisticFit:
    """Fit the VQEG logistic from predictions to MOS (linear fallback on failure, never raises)."""
    return _fit_clean(*_clean(pred, truth))


def _plcc_fitted_clean(p: np.ndarray, t: np.ndarray, stacklevel: int) -> float:
    if len(p) < 2:
        return math.nan
    if np.ptp(p) == 0:
        return _corr_clean(pearsonr, p, t, stacklevel + 1)
    return _corr_clean(pearsonr, _fit_clean(p, t)(p), t, stacklevel + 1)


def _rmse_fitted_clean(p: np.ndarray, t: np.ndarray) -> float:
    if len(p) < 2:
        return math.nan
    return float(np.sqrt(np.mean((_fit_clean(p, t)(p) - t) ** 2)))


def plcc_fitted(pred, truth) -> float:
    """PLCC after the logistic mapping (the number most VQA papers call PLCC)."""
    p, t = _clean(pred, truth)
    return _plcc_fitted_clean(p, t, stacklevel=3)


def rmse_fitted(pred, truth) -> float:
    """RMSE in MOS units after the logistic mapping."""
    return _rmse_fitted_clean(*_clean(pred, truth))


def all_metrics(pred, truth) -> dict:
    """srcc, krcc, plcc, plcc_fitted, rmse_fitted, n and flags, each computed once."""
    p, t = _clean(pred, truth)
    n = len(p)
    constant = bool(n >= 2 and np.ptp(p) == 0)
    out = {"n": n, "constant": constant, "fit_fallback": True, "fit_reason": ""}
    if n < 2:
        out.update(srcc=math.nan, krcc=math.nan, plcc=math.nan, plcc_fitted=math.nan, rmse_fitted=math.nan)
        return out
    if constant:
        # One warning for the whole table rather than one per metric.
        warnings.warn("constant predictions: correlations set to 0", ConstantPredictionWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        fit = _fit_clean(p, t)
        mapped = fit(p)
        out.update(
            srcc=_corr_clean(spearmanr, p, t, 2),
            krcc=_corr_clean(kendalltau, p, t, 2),
            plcc=_corr_clean(pearsonr, p, t, 2),
            plcc_fitted=_corr_clean(pearsonr, mapped, t, 2),
            rmse_fitted=float(np.sqrt(np.mean((mapped - t) ** 2))),
        )
    out["fit_fallback"], out["fit_reason"] = fit.fallback, fit.reason
    return out


# --------------------------------------------------------------------------------------------
# Bootstrap

_VECTORISED = ("srcc", "plcc")
_LOOPED: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "krcc": lambda p, t: _corr_clean(kendalltau, p, t, 2),
    "plcc_fitted": lambda p, t: _plcc_fitted_clean(p, t, 2),
    "rmse_fitted": _rmse_fitted_clean,
}
METRICS = _VECTORISED + tuple(_LOOPED)
_BATCH_ELEMS = 2_000_000  # resample matrix cells per batch: ~16 MB per float64 work array


def _point(metric: str, p: np.ndarray, t: np.ndarray) -> float:
    if metric == "srcc":
        return _corr_clean(spearmanr, p, t, 2)
    if metric == "plcc":
        return _corr_clean(pearsonr, p, t, 2)
    return _LOOPED[metric](p, t)


class _Groups:
    """Tie groups of one array, so resampled (average) ranks come from counts, not sorts."""

    def __init__(self, x: np.ndarray):
        self.order = np.argsort(x, kind="stable")
        xs = x[self.order]
        new = np.r_[True, xs[1:] != xs[:-1]]
        self.starts = np.flatnonzero(new)
        self.gid = np.empty(len(x), dtype=np.intp)
        self.gid[self.order] = np.cumsum(new) - 1

    def counts(self, w: np.ndarray) -> np.ndarray:
        """(B, groups) multiplicity of each distinct value in each resample."""
        return np.add.reduceat(w[:, self.order], self.starts, axis=1)

    def ranks(self, m: np.ndarray) -> np.ndarray:
        """(B, n) average rank of every original item within each resample."""
        csum = np.cumsum(m, axis=1)
        return (csum - (m - 1) / 2.0)[:, self.gid]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    tot = w.sum(axis=1, keepdims=True)
    dx = x - (w * x).sum(axis=1, keepdims=True) / tot
    dy = y - (w * y).sum(axis=1, keepdims=True) / tot
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=1) / np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def _resample_batches(n: int, n_boot: int, seed: int):
    """Yield (B, n) index batches; the stream depends only on (n, n_boot, seed)."""
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_boot, _BATCH_ELEMS // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(batch, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _replicates(preds: Sequence[np.ndarray], t: np.ndarray, metrics: Sequence[str], n_boot: int, seed: int) -> dict:
    """{(pred_index, metric): (n_boot,) replicate values}, all on the same resamples."""
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {METRICS}")
    n = len(t)
    out = {(k, m): np.empty(n_boot) for k in range(len(preds)) for m in metrics}
    if n < 2:
        for v in out.values():
            v.fill(math.nan)
        return out
    tg = _Groups(t)
    pgs = [_Groups(p) for p in preds]
    offsets = None
    done = 0
    for idx in _resample_batches(n, n_boot, seed):
        b = len(idx)
        sl = slice(done, done + b)
        done += b
        # Counts per original item: a resample is a weighting of the original videos, which keeps
        # every array (B, n) and lets ties and duplicates be handled by group counts.
        if offsets is None or len(offsets) != b:
            offsets = (np.arange(b) * n)[:, None]
        w = np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        mt = tg.counts(w)
        t_const = (mt > 0).sum(axis=1) <= 1
        t_ranks = tg.ranks(mt) if "srcc" in metrics else None
        for k, (p, pg) in enumerate(zip(preds, pgs)):
            mp = pg.counts(w)
            p_const = (mp > 0).sum(axis=1) <= 1
            for m in metrics:
                if m == "srcc":
                    r = _weighted_pearson(pg.ranks(mp), t_ranks, w)
                elif m == "plcc":
                    r = _weighted_pearson(np.broadcast_to(p, w.shape), np.broadcast_to(t, w.shape), w)
                else:
                    f = _LOOPED[m]
                    r = np.array([f(p[i], t[i]) for i in idx])
                if m != "rmse_fitted":
                    # Same rules as the point estimate: constant prediction -> 0, constant truth -> NaN.
                    r = np.where(p_const, 0.0, np.where(t_const, math.nan, r))
                out[(k, m)][sl] = r
    return out


def _ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]  # constant-truth resamples carry no information
    if len(values) == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def _check_boot(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_metrics(
    pred, truth, metrics: Sequence[str] = ("srcc", "krcc", "plcc"), n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """name -> (point, low, high): percentile bootstrap over videos, one set of resamples for all metrics.

    srcc/plcc are vectorised; krcc runs scipy per resample (~1.7 ms each at n=7000);
    plcc_fitted/rmse_fitted refit the logistic per resample (slow: use small n_boot).
    """
    _check_boot(n_boot, alpha)
    p, t = _clean(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        reps = _replicates([p], t, metrics, n_boot, seed)
        points = {m: _point(m, p, t) for m in metrics}
    if len(p) >= 2 and np.ptp(p) == 0:
        warnings.warn("constant predictions: correlations set to 0", ConstantPredictionWarning, stacklevel=2)
    return {m: (points[m], *_ci(reps[(0, m)], alpha)) for m in metrics}


def bootstrap_ci(pred, truth, metric: str = "srcc", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile bootstrap CI of one metric."""
    _, lo, hi = bootstrap_metrics(pred, truth, (metric,), n_boot, alpha, seed)[metric]
    return (lo, hi)


def paired_bootstrap_diff(
    pred_a, pred_b, truth, metric: str = "srcc", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(metric(a) - metric(b), low, high) with both predictors scored on the same resamples."""
    _check_boot(n_boot, alpha)
    a = np.asarray(pred_a, dtype=np.float64)
    b = np.asarray(pred_b, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if not a.shape == b.shape == t.shape:
        raise ValueError(f"pred_a {a.shape}, pred_b {b.shape} and ground truth {t.shape} differ in shape")
    # Both predictors must be judged on the same videos, so drop a row if either is missing.
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(t)
    a, b, t = a[keep], b[keep], t[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        reps = _replicates([a, b], t, (metric,), n_boot, seed)
        diff = _point(metric, a, t) - _point(metric, b, t)
    return (float(diff), *_ci(reps[(0, metric)] - reps[(1, metric)], alpha))


def grouped_metrics(
    pred,
    truth,
    groups: Sequence[Hashable],
    min_group_size: int = 3,
    metrics: Sequence[str] = ("srcc", "krcc", "plcc"),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Per-group metrics with CIs, plus "overall": the group-size-weighted mean.

    Returns {"groups": {g: {"n": n, metric: (point, low, high)}}, "overall": {...}, "skipped": {g: n}}.
    The overall CI is a stratified bootstrap: replicate b of every group is averaged with the same
    weights, since MOS scales differ between datasets and must not be pooled.
    """
    _check_boot(n_boot, alpha)
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    g = np.asarray(groups, dtype=object)
    if not p.shape == t.shape == g.shape:
        raise ValueError(f"predictions {p.shape}, ground truth {t.shape} and groups {g.shape} differ in shape")
    keep = np.isfinite(p) & np.isfinite(t)
    p, t, g = p[keep], t[keep], g[keep]
    names = list(dict.fromkeys(g.tolist()))  # first-appearance order, so seeds are reproducible
    seeds = np.random.SeedSequence(seed).generate_state(max(len(names), 1))
    result: dict = {"groups": {}, "overall": {}, "skipped": {}}
    reps_by_group, sizes = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        for name, s in zip(names, seeds):
            sel = np.array([x == name for x in g.tolist()], dtype=bool)
            n = int(sel.sum())
            if n < min_group_size:
                result["skipped"][name] = n
                continue
            pg, tg = p[sel], t[sel]
            reps = _replicates([pg], tg, metrics, n_boot, int(s))
            result["groups"][name] = {"n": n, **{m: (_point(m, pg, tg), *_ci(reps[(0, m)], alpha)) for m in metrics}}
            reps_by_group[name], sizes[name] = reps, n
    kept = list(result["groups"])
    result["overall"]["n"] = sum(sizes.values())
    w = np.array([sizes[k] for k in kept], dtype=np.float64)
    for m in metrics:
        point = weighted_mean([result["groups"][k][m][0] for k in kept], list(w))
        if kept:
            r = np.stack([reps_by_group[k][(0, m)] for k in kept])  # (groups, n_boot)
            ok = np.isfinite(r)
            with np.errstate(invalid="ignore", divide="ignore"):
                # Same NaN rule as weighted_mean: a group with no value drops out of that replicate.
                rep = (np.where(ok, r, 0.0) * w[:, None]).sum(0) / (ok * w[:, None]).sum(0)
            lo, hi = _ci(rep, alpha)
        else:
            lo = hi = math.nan
        result["overall"][m] = (point, lo, hi)
    return result


def grouped_paired_diff(
    pred_a,
    pred_b,
    truth,
    groups: Sequence[Hashable],
    *,
    metric: str = "srcc",
    weighted: bool = True,
    min_group_size: int = 3,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean over groups of metric(a) - metric(b), low, high): a stratified paired bootstrap, both
    predictors on the same within-group resamples; groups weighted by size (or equally)."""
    _check_boot(n_boot, alpha)
    a, b, t = (np.asarray(x, dtype=np.float64) for x in (pred_a, pred_b, truth))
    g = np.asarray(groups, dtype=object)
    if not a.shape == b.shape == t.shape == g.shape:
        raise ValueError(f"pred_a {a.shape}, pred_b {b.shape}, ground truth {t.shape} and groups {g.shape} differ in shape")
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(t)
    a, b, t, g = a[keep], b[keep], t[keep], g[keep]
    names = list(dict.fromkeys(g.tolist()))
    seeds = np.random.SeedSequence(seed).generate_state(max(len(names), 1))
    points, reps, weights = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantPredictionWarning)
        for name, s in zip(names, seeds):
            sel = g == name
            if sel.sum() < min_group_size:
                continue
            r = _replicates([a[sel], b[sel]], t[sel], (metric,), n_boot, int(s))
            points.append(_point(metric, a[sel], t[sel]) - _point(metric, b[sel], t[sel]))
            reps.append(r[(0, metric)] - r[(1, metric)])
            weights.append(float(sel.sum()) if weighted else 1.0)
    if not points:
        return math.nan, math.nan, math.nan
    w = np.array(weights)
    r = np.stack(reps)
    ok = np.isfinite(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        rep = (np.where(ok, r, 0.0) * w[:, None]).sum(0) / (ok * w[:, None]).sum(0)
    return (weighted_mean(points, list(w)), *_ci(rep, alpha))

