"""Rounds k+1 >= 2 of the paper's iterative W2S: the round-k student relabels, picks hard pairs,
and the training set grows.

- Label refinement (`Labeller`): the homogeneous pairs are labelled by the weak teachers' ensemble
  with the student as one more (weighted) member ("fused"), by the student alone from its own
  five-level preference model ("student"), or by the weak teachers only ("off").
- Hard synthetic pairs (`hard_synthetic_pairs`): simulator pairs (known order) the student gets
  wrong: its most likely five-level label differs from the known one. The least likely true
  labels come first; the budget is shared equally by the simulator types.
- gMAD pairs (`gmad_pairs`, after Ma et al.'s group maximum differentiation): bin the corpus by
  one model's scores (it rates a bin's videos alike) and pick, in each bin, the pairs the other
  model rates most differently; once with each weak teacher as the defender against the student,
  once the reverse. They are labelled like every homogeneous pair (by the labeller).
- Cumulative data (`carry_forward`): round k+1 trains on D1..Dk+1; the earlier rounds' teacher
  pairs get the current labels, simulator pairs keep their known ones.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numpy as np
from scipy.special import expit

from vqa.fusion.pairs import HOMOGENEOUS, Pair, _key, known_order_pairs, labelled_pair
from vqa.fusion.rules import Labeller, median_level


def five_level_probs(d: np.ndarray, cutpoints) -> np.ndarray:
    """The student's ordinal model (vqa.student.losses): P(label <= k) = sigmoid(c_k - d)."""
    c = np.asarray(cutpoints, dtype=np.float64).reshape(-1)
    cdf = expit(c[None, :] - np.asarray(d, dtype=np.float64).reshape(-1, 1))
    upper = np.concatenate([cdf, np.ones((cdf.shape[0], 1))], axis=1)
    lower = np.concatenate([np.zeros((cdf.shape[0], 1)), cdf], axis=1)
    return np.clip(upper - lower, 0.0, 1.0)


def make_labeller(
    normalised: dict[str, dict[str, float]],
    weak: dict[str, float],
    student: dict | None,
    *,
    mode: str,
    student_weight: float,
    min_pair_std: float,
    rule: str = "paper",
    raw_student: dict[str, float] | None = None,
) -> Labeller:
    """mode: fused / student / off (params iteration.label_refinement); weak: the weak teachers'
    weights (calibrated); student: its teacher record. In "fused" the student weighs
    `student_weight` times the weak teachers' mean weight."""
    weights = {k: w for k, w in weak.items() if w > 0}
    if student is None or mode == "off":
        return Labeller(normalised, weights, min_pair_std, rule=rule)
    if mode == "fused":
        unit = sum(weights.values()) / len(weights) if weights else 1.0
        return Labeller(normalised, weights | {student["key"]: student_weight * unit}, min_pair_std, rule=rule)
    if mode == "student":
        if student.get("loss") == "bradley_terry" or not student.get("cutpoints"):
            return Labeller(normalised, {student["key"]: 1.0}, min_pair_std, rule=rule)
        return Labeller(normalised, {student["key"]: 1.0}, min_pair_std, rule=rule, mode="student",
                        raw=raw_student, cutpoints=list(student["cutpoints"]))
    raise ValueError(f"iteration.label_refinement: unknown mode {mode!r}")


def _extreme_pairs(ids: list[str], by: dict[str, float], n: int) -> list[tuple[float, str, str]]:
    """Within one bin: the n nested extreme pairs by `by` (lowest with highest, then the next two)."""
    order = sorted(ids, key=lambda v: (by[v], v))
    out = []
    for k in range(min(n, len(order) // 2)):
        lo, hi = order[k], order[-1 - k]
        out.append((by[hi] - by[lo], hi, lo))
    return out


def gmad_pairs(
    labeller: Labeller,
    normalised: dict[str, dict[str, float]],
    weak: list[str],
    student_key: str,
    *,
    budget: int,
    bins: int,
    seed: int,
    round_name: str,
    exclude: set[tuple[str, str]] = frozenset(),
) -> list[Pair]:
    """For each weak teacher T: bins of equal T score (equal-count) -> the pairs the student rates
    most differently; and bins of equal student score -> the pairs T rates most differently. Of
    all candidates, the `budget` with the largest gap (in aligned units) are kept, labelled by
    `labeller`; A/B order is seeded-random."""
    student = normalised.get(student_key, {})
    if budget <= 0 or not student:
        return []
    per_unit = max(1, math.ceil(budget / max(1, len(weak) * bins * 2)))
    candidates: dict[tuple[str, str], tuple[float, str, str]] = {}
    for t in weak:
        teacher = normalised.get(t, {})
        common = sorted(set(teacher) & set(student))
        for defender, attacker in ((teacher, student), (student, teacher)):
            ranked = sorted(common, key=lambda v: (defender[v], v))
            for chunk in np.array_split(np.array(ranked, dtype=object), min(bins, max(1, len(ranked) // 2))):
                for gap, hi, lo in _extreme_pairs(list(chunk), attacker, per_unit):
                    key = _key(hi, lo)
                    if key in exclude:
                        continue
                    if key not in candidates or gap > candidates[key][0]:
                        candidates[key] = (gap, hi, lo)
    ranked_pairs = sorted(candidates.values(), key=lambda c: (-c[0], c[1], c[2]))[:budget]
    rng = np.random.default_rng([seed, zlib.crc32(b"gmad")])
    out = []
    for _, hi, lo in ranked_pairs:
        a, b = (hi, lo) if rng.random() < 0.5 else (lo, hi)
        p = labelled_pair(labeller, a, b, "gmad", round_name)
        if p is not None:
            out.append(p)
    return out


def hard_synthetic_pairs(
    versions: list[tuple[str, str, int, str]],
    student_scores: dict[str, float],
    *,
    cutpoints,
    loss: str,
    budget: int,
    seed: int,
    round_name: str,
) -> list[Pair]:
    """Simulator pairs the student misclassifies. versions: (video id, source id, level, simulator).

    Every pair of versions of one source with known order is a candidate; it is hard when the
    student does not prefer the less distorted one: its median five-level label is "similar" or
    the wrong way (a Bradley-Terry student: when it orders the two wrongly). "better" against
    "superior" is not counted: the simulators' own split of the two (adjacent levels or not) is
    too crude to hold a student to. Per type the hardest come first (lowest probability of the
    right direction, or largest wrong margin); the budget is dealt to the types in turn."""
    per_type: dict[str, list[tuple[float, str, str, int, float]]] = {}
    for simulator, vi, vj, label, gap in known_order_pairs([v for v in versions if v[0] in student_scores]):
        d = student_scores[vi] - student_scores[vj]  # vi is the less distorted
        if loss == "bradley_terry" or cutpoints is None:
            hard, hardness = d <= 0, -d
        else:
            probs = five_level_probs(np.array([d]), cutpoints)[0]
            hard, hardness = median_level(d, cutpoints) <= 2, -float(probs[3:].sum())
        if hard:
            per_type.setdefault(simulator, []).append((hardness, vi, vj, label, float(gap)))
    for rows in per_type.values():
        rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    chosen: list[tuple[str, tuple]] = []
    queues = {k: list(v) for k, v in sorted(per_type.items())}
    while len(chosen) < budget and any(queues.values()):
        for simulator, rows in queues.items():
            if rows and len(chosen) < budget:
                chosen.append((simulator, rows.pop(0)))
    rng = np.random.default_rng([seed, zlib.crc32(b"hard")])
    out = []
    for simulator, (_, vi, vj, label, gap) in chosen:
        if rng.random() < 0.5:
            out.append(Pair(vi, vj, label, simulator, gap, math.nan, "hard", round_name))
        else:
            out.append(Pair(vj, vi, 4 - label, simulator, -gap, math.nan, "hard", round_name))
    return out


def carry_forward(earlier: list[Pair], labeller: Labeller, previous_round: str) -> list[Pair]:
    """D1..Dk for round k+1: teacher pairs relabelled by this round's labeller (a pair whose
    videos it cannot score keeps its label), simulator pairs as they were. Pairs written before
    rounds were recorded are attributed to the previous round."""
    out = []
    for p in earlier:
        origin = p.round or previous_round
        if p.source == HOMOGENEOUS:
            fresh = labelled_pair(labeller, p.a, p.b, p.selection, origin, p.split)
            out.append(fresh if fresh is not None else replace(p, round=origin))
        else:
            out.append(replace(p, round=origin))
    return out


def pair_keys(pairs: list[Pair], source: str = HOMOGENEOUS) -> set[tuple[str, str]]:
    return {_key(p.a, p.b) for p in pairs if p.source == source}
