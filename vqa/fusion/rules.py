"""The teacher-pair labelling rule, in one place: round 1, label refinement in later rounds and
the report all call `ensemble_moments` and `label_pair`.

Per video, the aligned scores z_t of the teachers that scored it, with weights w_t, give the
weighted mean m, the weighted variance v and the effective number of teachers n = (sum w)^2 /
sum w^2 (n = the count when the weights are equal). For a pair, d = m_A - m_B and a spread s:

- paper: s = sqrt(v_A + v_B), the spread of single teachers. The paper's five strong teachers
  agree closely, so s is small; with many weak teachers that barely agree, s approaches the
  spread of d itself and nearly every pair becomes "similar".
- mean_se: s = sqrt(v_A / n_A + v_B / n_B), the standard error of d: the teachers' mean is what
  labels the pair, so its own uncertainty, not one teacher's, decides whether the difference is
  real. With n equally weighted teachers it is the paper's s / sqrt(n).

s is floored at `floor` (one teacher has v = 0). Levels: superior d > 2s; better s < d <= 2s;
similar -s < d <= s; worse -2s < d <= -s; inferior d <= -2s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RULES = ("paper", "mean_se")
LEVEL_NAMES = ("inferior", "worse", "similar", "better", "superior")


@dataclass(frozen=True)
class Moments:
    mean: float
    var: float
    n_eff: float


def preference_level(d: float, s: float) -> int:
    """0 inferior .. 4 superior: the preference of A over B for d = m_A - m_B and spread s."""
    if d > 2 * s:
        return 4
    if d > s:
        return 3
    if d > -s:
        return 2
    if d > -2 * s:
        return 1
    return 0


def ensemble_moments(aligned: dict[str, dict[str, float]], weights: dict[str, float] | None = None) -> dict[str, Moments]:
    """Per video, the weighted moments over the teachers (keys of `aligned`) that scored it.
    `weights`: teacher key -> weight (absent: 1; 0 leaves the teacher out)."""
    per_video: dict[str, tuple[list[float], list[float]]] = {}
    for key, table in aligned.items():
        w = 1.0 if weights is None else float(weights.get(key, 1.0))
        if w <= 0:
            continue
        for vid, z in table.items():
            zs, ws = per_video.setdefault(vid, ([], []))
            zs.append(z)
            ws.append(w)
    out = {}
    for vid, (zs, ws) in per_video.items():
        x, w = np.asarray(zs, dtype=np.float64), np.asarray(ws, dtype=np.float64)
        if np.all(w == w[0]):  # equal weights: the plain mean and variance, bit for bit
            out[vid] = Moments(float(np.mean(x)), float(np.var(x)), float(len(x)))
        else:
            m = float(np.average(x, weights=w))
            out[vid] = Moments(m, float(np.average((x - m) ** 2, weights=w)), float(w.sum() ** 2 / (w ** 2).sum()))
    return out


def pair_spread(a: Moments, b: Moments, rule: str, floor: float) -> float:
    if rule == "paper":
        s = math.sqrt(a.var + b.var)
    elif rule == "mean_se":
        s = math.sqrt(a.var / a.n_eff + b.var / b.n_eff)
    else:
        raise ValueError(f"fusion.rule: unknown rule {rule!r}; expected one of {RULES}")
    return max(s, floor)


def label_pair(a: Moments, b: Moments, rule: str, floor: float) -> tuple[int, float, float]:
    """(level 0..4, d, s) of video A over video B."""
    d = a.mean - b.mean
    s = pair_spread(a, b, rule, floor)
    return preference_level(d, s), d, s


def level_shares(labels: list[int]) -> dict[str, float]:
    """Share of each of the five levels (rounded to 4 decimals: stable in tracked files)."""
    n = len(labels)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=5) if n else np.zeros(5)
    return {name: (round(float(c) / n, 4) if n else 0.0) for name, c in zip(LEVEL_NAMES, counts)}


def median_level(d: float, cutpoints) -> int:
    """The median of a student's five-level distribution for a score difference d: the number
    of cutpoints below d (P(label <= k) >= 1/2 iff c_k >= d). The argmax would not do: with
    narrow middle cutpoints "similar" is never the most likely level, even at d = 0."""
    return int(np.sum(np.asarray(cutpoints, dtype=np.float64) < d))


@dataclass
class Labeller:
    """Labels a pair of corpus videos from aligned scores (teacher key -> video id -> z).

    ensemble: the rule (`rule`, floor `min_pair_std`) over the members, each with a weight (the
    calibrated weak teachers; in later rounds the student too); equal weights give the plain
    mean and variance. student: the median level of the student's five-level distribution for
    its raw score difference (`raw`, `cutpoints`); a Bradley-Terry student has no levels, so its
    aligned scores go through the rule alone."""

    normalised: dict[str, dict[str, float]]
    weights: dict[str, float]
    min_pair_std: float
    rule: str = "paper"
    mode: str = "ensemble"  # or "student"
    raw: dict[str, float] | None = None  # student mode: its raw scores
    cutpoints: list[float] | None = None
    _moments: dict[str, Moments] = field(init=False, repr=False)

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"fusion.rule: unknown rule {self.rule!r}; expected one of {RULES}")
        members = {k: v for k, v in self.normalised.items() if self.weights.get(k, 0) > 0}
        self._moments = ensemble_moments(members, self.weights)

    def videos(self) -> list[str]:
        if self.mode == "student" and self.raw is not None:
            return sorted(self.raw)
        return sorted(self._moments)

    def moments(self, vid: str) -> Moments | None:
        return self._moments.get(vid)

    def label(self, a: str, b: str) -> tuple[int, float, float] | None:
        """(label, d, s), or None when a video lacks the scores needed."""
        if self.mode == "student" and self.raw is not None and self.cutpoints is not None:
            if a not in self.raw or b not in self.raw:
                return None
            d = self.raw[a] - self.raw[b]
            return median_level(d, self.cutpoints), d, math.nan
        if a not in self._moments or b not in self._moments:
            return None
        return label_pair(self._moments[a], self._moments[b], self.rule, self.min_pair_std)
