"""Absolute 0-100 scores from pairwise preferences against a fixed set of anchor videos.

The paper's recipe (W2S-VQA, "Student"): the test video and 5 anchors form a 6x6 preference
matrix M, M_ij = p(i preferred over j) = sum_k P(label k) * k/4 over the five words
(labels 0..4 = inferior .. superior), M_ij = 1 - M_ji, 0.5 on the diagonal. Latent scores q are
the MAP estimate

    maximise  sum_ij M_ij log F(q_i - q_j) - sum_i q_i^2 / 2,   F = logistic sigmoid

(the paper's code uses the sigmoid; its text says the normal CDF), and q is min-max scaled to
0-100 over that matrix's videos; the test video's scaled value is its score.

Our student gives a scalar score s per video; for d = s_A - s_B its five-level model is
P(label <= k) = sigmoid(c_k - d) (vqa.student.losses.five_level_log_probs), so the expected
preference has the closed form p = sum_k P(label > k) / 4 = mean_k sigmoid(d - c_k). A student
trained with the bradley_terry loss has p = sigmoid(d) instead. Checkpoints do not record the loss,
so every function here takes ``loss`` ("five_level" default; the confidence variant uses the same
five-level model).

Anchors. The paper's anchors have known MOS (39.6 .. 78.0). We have no MOS, so choose_anchors picks
the corpus videos nearest the 10/30/50/70/90 % quantiles of the student's own scores: the anchors
span the corpus's own quality range. Consequences:
  * the paper's min-max scaling over each 6x6 matrix puts every video beyond an extreme anchor at
    exactly 0 or 100 (half of ugc-smoke did, against demo anchors), and the MAP latent itself
    flattens there, as preferences saturate at 0 and 1. So the scale users get
    (:func:`percentile_scores`, ``vqa score --anchored``) places the student's score among the
    anchors at their corpus percentiles instead: 50 = as good as the corpus's median video,
    10 / 90 = the 10th / 90th percentile anchors, and beyond the extreme anchors a tail that
    approaches 0 or 100 without reaching it, so different videos keep different scores;
  * anchor scores depend on the student, so an AnchorSet records the fingerprint of the model it was
    computed with and loading refuses a different one. Anchors must be versioned with the model
    (recompute them whenever the checkpoint changes); checkpoint_fingerprint() gives the fingerprint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import expit, log_expit

from vqa.io import atomic_write_json, read_json, sha256_file

LOSSES = ("five_level", "five_level_confidence", "bradley_terry")
FORMAT = 1


def _cutpoints_array(cutpoints: Any) -> np.ndarray:
    if hasattr(cutpoints, "detach"):  # a torch tensor from model.cutpoints(); no torch import needed
        cutpoints = cutpoints.detach().cpu().double().numpy()
    c = np.asarray(cutpoints, dtype=np.float64).reshape(-1)
    if c.shape != (4,) or not np.all(np.isfinite(c)) or np.any(np.diff(c) < 0):
        raise ValueError(f"cutpoints must be 4 finite ascending values, got {c.tolist()}")
    return c


def preference(d: np.ndarray, cutpoints: Any = None, loss: str = "five_level") -> np.ndarray:
    """p(A over B) for score differences d = s_A - s_B (any shape)."""
    d = np.asarray(d, dtype=np.float64)
    if loss == "bradley_terry":
        return expit(d)
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r} (expected one of {', '.join(LOSSES)})")
    if cutpoints is None:
        raise ValueError(f"loss {loss!r} needs the model's cutpoints")
    c = _cutpoints_array(cutpoints)
    # E[label]/4 = sum_k P(label > k)/4: exact, and free of the log-prob clamp in the torch version.
    return expit(d[..., None] - c).mean(axis=-1)


def preference_matrix(scores: np.ndarray, cutpoints: Any = None, loss: str = "five_level") -> np.ndarray:
    """n scores -> n x n matrix M_ij = p(i over j), exactly 0.5 on the diagonal, M + M.T == 1."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    m = preference(s[:, None] - s[None, :], cutpoints, loss)
    # Build from the upper triangle so the complement holds by construction, not only up to the
    # cutpoints' symmetry.
    upper = np.triu(m, 1)
    m = upper + np.tril(1.0 - upper.T, -1)
    np.fill_diagonal(m, 0.5)
    return m


def _objective(q: np.ndarray, m: np.ndarray) -> float:
    """sum_ij M_ij log sigmoid(q_i - q_j) - |q|^2 / 2 (the diagonal adds a constant)."""
    q = np.asarray(q, dtype=np.float64)
    return float((m * log_expit(q[:, None] - q[None, :])).sum() - 0.5 * q @ q)


def _check_matrix(m: Any) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"preference matrix must be square, got shape {m.shape}")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ValueError("preference matrix entries must be probabilities in [0, 1]")
    return m


def _gradient(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Gradient of _objective: g_k = sum_j [M_kj - (M_kj + M_jk) sigmoid(q_k - q_j)] - q_k."""
    sig = expit(q[:, None] - q[None, :])
    n_pairs = m + m.T
    np.fill_diagonal(sig, 0.0)  # d/dq of the diagonal term is 0
    mm = m.copy()
    np.fill_diagonal(mm, 0.0)
    return mm.sum(axis=1) - (n_pairs * sig).sum(axis=1) - q


def map_scores(m: np.ndarray, *, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """MAP latent scores q of a preference matrix (damped Newton from q = 0; deterministic).

    The objective is strictly concave (Hessian = -(L + I), L a weighted graph Laplacian), so the
    maximiser is unique; iterates until the gradient norm is <= tol.
    """
    m = _check_matrix(m)
    n = m.shape[0]
    n_pairs = m + m.T
    q = np.zeros(n)
    f = _objective(q, m)
    for _ in range(max_iter):
        g = _gradient(q, m)
        if np.linalg.norm(g) <= tol:
            return q
        sig = expit(q[:, None] - q[None, :])
        w = n_pairs * sig * (1.0 - sig)
        np.fill_diagonal(w, 0.0)
        neg_hess = np.diag(w.sum(axis=1) + 1.0) - w  # positive definite
        step = np.linalg.solve(neg_hess, g)
        ascent = float(g @ step)
        t = 1.0
        while True:  # Armijo backtracking; accept once the change is below float resolution
            q_new = q + t * step
            f_new = _objective(q_new, m)
            if f_new >= f + 1e-4 * t * ascent or t * ascent <= 1e-13 * (1.0 + abs(f)):
                break
            t *= 0.5
        q, f = q_new, f_new
    g_norm = float(np.linalg.norm(_gradient(q, m)))
    if g_norm <= tol:
        return q
    raise RuntimeError(f"MAP scores did not converge in {max_iter} Newton steps (gradient norm {g_norm:.3g})")


def anchored_scores(
    test_scores: np.ndarray, anchor_scores: np.ndarray, cutpoints: Any = None, loss: str = "five_level"
) -> np.ndarray:
    """0-100 score per test video: MAP over its own (1 + n_anchors) matrix, min-max scaled over it.

    If every video of a matrix has the same score (q all equal) the scale is undefined; 50 is returned.
    """
    test = np.asarray(test_scores, dtype=np.float64).reshape(-1)
    anchors = np.asarray(anchor_scores, dtype=np.float64).reshape(-1)
    if anchors.size < 1:
        raise ValueError("anchored_scores needs at least one anchor score")
    out = np.empty(test.size)
    for i, s in enumerate(test):
        q = map_scores(preference_matrix(np.concatenate(([s], anchors)), cutpoints, loss))
        lo, hi = q.min(), q.max()
        # divide first: the extremes then come out exactly 0 and 100
        out[i] = 50.0 if hi - lo <= 1e-12 else 100.0 * ((q[0] - lo) / (hi - lo))
    return out


def percentile_scores(test_scores: Any, anchor_scores: Any, quantiles: Any) -> np.ndarray:
    """0-100 scores that do not saturate: the student's score placed among the anchors, each at
    100 x its corpus quantile (10, 30, 50, 70, 90), linearly between them; beyond an extreme anchor
    a hyperbolic tail, tail(d) = edge * w / (w + d) towards 0 (d: distance past the anchor, w:
    half the adjacent anchor gap, so the slope is continuous), and likewise towards 100. Strictly
    increasing in the student's score: the order of videos is the student's."""
    s = np.asarray(test_scores, dtype=np.float64).reshape(-1)
    a = np.asarray(anchor_scores, dtype=np.float64).reshape(-1)
    q = 100.0 * np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if a.size < 2 or a.size != q.size:
        raise ValueError(f"percentile_scores: need >= 2 anchors with one quantile each, got {a.size} and {q.size}")
    order = np.argsort(a, kind="stable")
    a, q = a[order], np.sort(q)
    spread = a[-1] - a[0]
    # anchors with equal scores: nudge apart so the mapping stays a function
    floor = 1e-9 * max(1.0, spread) if spread > 0 else 1e-3
    a = a[0] + np.concatenate(([0.0], np.cumsum(np.maximum(np.diff(a), floor))))
    out = np.interp(s, a, q)
    lo_w = (a[1] - a[0]) * q[0] / (q[1] - q[0])  # matches the first segment's slope at the anchor
    hi_w = (a[-1] - a[-2]) * (100.0 - q[-1]) / (q[-1] - q[-2])
    below, above = s < a[0], s > a[-1]
    out[below] = q[0] * lo_w / (lo_w + (a[0] - s[below]))
    out[above] = 100.0 - (100.0 - q[-1]) * hi_w / (hi_w + (s[above] - a[-1]))
    return out


def choose_anchors(
    video_ids: Sequence[str], scores: Sequence[float], n: int = 5, quantiles: Sequence[float] | None = None
) -> list[str]:
    """Ids of the n corpus videos nearest the given quantiles of the scores, in quantile order.

    quantiles defaults to the midpoints (k + 0.5) / n, i.e. (0.1, 0.3, 0.5, 0.7, 0.9) for n = 5.
    Quantiles use numpy's linear interpolation; ties in distance go to the smaller id, and a video
    already chosen is skipped (next nearest), so the result is deterministic and has n distinct ids.
    """
    ids = [str(v) for v in video_ids]
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    qs = [(k + 0.5) / n for k in range(n)] if quantiles is None else [float(x) for x in quantiles]
    if len(qs) != n:
        raise ValueError(f"choose_anchors: {len(qs)} quantiles given for n={n} anchors")
    if len(ids) != s.size:
        raise ValueError(f"choose_anchors: {len(ids)} video ids but {s.size} scores")
    if len(set(ids)) != len(ids):
        raise ValueError("choose_anchors: video ids are not unique")
    if s.size < n:
        raise ValueError(f"choose_anchors: need at least {n} videos, got {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError("choose_anchors: scores must be finite")
    if any(not 0.0 <= x <= 1.0 for x in qs):
        raise ValueError(f"choose_anchors: quantiles must lie in [0, 1], got {qs}")
    targets = np.quantile(s, qs)
    chosen: list[str] = []
    for target in targets:
        best = min((abs(s[i] - target), ids[i]) for i in range(len(ids)) if ids[i] not in chosen)
        chosen.append(best[1])
    return chosen


def checkpoint_fingerprint(checkpoint: str | Path) -> str:
    """Fingerprint of a student checkpoint file (content hash): what an AnchorSet is tied to."""
    return "sha256:" + sha256_file(checkpoint)


@dataclass(frozen=True)
class AnchorSet:
    """Anchor videos and their student scores, valid only for the model they were scored with."""

    video_ids: tuple[str, ...]
    scores: tuple[float, ...]  # the student's scores of the anchors (model_fingerprint's model)
    model_fingerprint: str
    method: str  # how the anchors were chosen, e.g. "student-score quantiles"
    quantiles: tuple[float, ...] = ()
    paths: tuple[str, ...] = ()  # optional, one per anchor
    features_path: str | None = None  # optional: where the anchors' backbone features are cached
    extra: dict = field(default_factory=dict)  # free-form provenance (corpus name/size, round, ...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_ids", tuple(str(v) for v in self.video_ids))
        object.__setattr__(self, "scores", tuple(float(x) for x in self.scores))
        object.__setattr__(self, "quantiles", tuple(float(x) for x in self.quantiles))
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        if not self.video_ids or len(self.video_ids) != len(self.scores):
            raise ValueError(f"AnchorSet: {len(self.video_ids)} ids but {len(self.scores)} scores")
        if self.paths and len(self.paths) != len(self.video_ids):
            raise ValueError(f"AnchorSet: {len(self.paths)} paths for {len(self.video_ids)} anchors")
        if not all(math.isfinite(x) for x in self.scores):
            raise ValueError("AnchorSet: anchor scores must be finite")
        if not self.model_fingerprint:
            raise ValueError("AnchorSet: model_fingerprint is empty")

    @classmethod
    def choose(
        cls,
        video_ids: Sequence[str],
        scores: Sequence[float],
        *,
        model_fingerprint: str,
        n: int = 5,
        quantiles: Sequence[float] | None = None,
        paths: Sequence[str] | None = None,
        features_path: str | None = None,
        extra: dict | None = None,
    ) -> "AnchorSet":
        """choose_anchors over a corpus scored by the model with that fingerprint."""
        qs = [(k + 0.5) / n for k in range(n)] if quantiles is None else list(quantiles)
        chosen = choose_anchors(video_ids, scores, n=n, quantiles=qs)
        index = {str(v): i for i, v in enumerate(video_ids)}
        picked = [index[v] for v in chosen]
        return cls(
            video_ids=tuple(chosen),
            scores=tuple(float(scores[i]) for i in picked),
            model_fingerprint=model_fingerprint,
            method=f"nearest to student-score quantiles over {len(index)} corpus videos (no MOS)",
            quantiles=tuple(qs),
            paths=tuple(str(paths[i]) for i in picked) if paths is not None else (),
            features_path=features_path,
            extra=dict(extra or {}),
        )

    def anchored_scores(self, test_scores: np.ndarray, cutpoints: Any = None, loss: str = "five_level") -> np.ndarray:
        """The paper's 0-100 scores of test videos (scored by the same model) against these
        anchors (saturates beyond the extreme anchors; see the module doc)."""
        return anchored_scores(test_scores, np.asarray(self.scores), cutpoints, loss)

    def scores_0_100(self, test_scores: np.ndarray) -> np.ndarray:
        """What users get: :func:`percentile_scores` against these anchors."""
        qs = self.quantiles or tuple((k + 0.5) / len(self.scores) for k in range(len(self.scores)))
        return percentile_scores(test_scores, self.scores, qs)

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: str | Path, *, expected_fingerprint: str | None) -> "AnchorSet":
        """Read an anchor file; refuses one computed with another model (pass None to skip the check)."""
        try:
            blob = read_json(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: anchor file not found") from None
        except ValueError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"{path}: not a w2s-vqa anchor file (format {FORMAT})")
        for key in ("video_ids", "scores", "model_fingerprint", "method"):
            if key not in blob:
                raise ValueError(f"{path}: anchor file lacks key {key!r}")
        found = blob["model_fingerprint"]
        if expected_fingerprint is not None and found != expected_fingerprint:
            raise ValueError(
                f"{path}: anchors belong to model {found}, not {expected_fingerprint}; recompute them for this model"
            )
        known = {k: blob[k] for k in cls.__dataclass_fields__ if k in blob}
        try:
            return cls(**known)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: bad anchor file ({exc})") from None


def weights_fingerprint(model) -> str:
    """Fingerprint of a student's trained weights (what an AnchorSet stored inside its own
    checkpoint is tied to: the file hash cannot be, as the anchors are part of the file)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.trainable_state().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return "weights:" + h.hexdigest()[:16]


def anchors_of(model, where: str = "student") -> "AnchorSet":
    """The AnchorSet stored with a loaded student (checkpoint meta "anchors"), checked against its
    weights. Raises a one-line error naming the checkpoint when there is none or it does not fit."""
    meta = getattr(model, "meta", {}) or {}
    blob = meta.get("anchors")
    if not blob:
        raise ValueError(f"{where}: the student has no anchor set (trained before anchors were stored); "
                         "retrain it to get 0-100 scores")
    known = {k: blob[k] for k in AnchorSet.__dataclass_fields__ if k in blob}
    anchors = AnchorSet(**known)
    if anchors.model_fingerprint != weights_fingerprint(model):
        raise ValueError(f"{where}: its anchor set belongs to other weights; recompute the anchors")
    return anchors


def loss_of(model) -> str:
    """The loss the student was trained with (checkpoint meta), which fixes its preference model."""
    return (getattr(model, "meta", {}) or {}).get("loss", "five_level")

