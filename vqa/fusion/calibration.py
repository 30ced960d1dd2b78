"""Label-free teacher calibration: which way each weak teacher points, and how much to trust it.

Two signals, neither needing a human label:

1. Known-order accuracy. On the simulators' pairs (two versions of one source, the less distorted
   one better by construction) a teacher orders a pair right or wrong under its declared
   direction. Accuracy is averaged over simulator types, so the type with the most pairs does not
   decide alone. Greiner's relation for a bivariate normal, tau = (2 / pi) asin(r), turns the
   concordance into a correlation with the known order: r_sim = sin(pi / 2 * (2 acc - 1)).
2. Corpus agreement. Simulators only cover their own distortions: a teacher can be right on
   them and still follow content on real video (a noise estimate that follows texture). So each
   teacher's aligned scores on the training corpus are correlated (SRCC) with the mean of the
   others': leave-one-out agreement. The first pass orients every teacher as declared, so this
   signal owes nothing to the simulators; a second pass orients the reference by the first
   pass's decisions (flipped teachers flipped, dropped ones left out) and decides again.

Each signal says "as declared" (+), "reversed" (-) or nothing (within its margin of 0). A teacher
that no signal contradicts and at least one supports is kept; one that both signals reverse is
reversed (flipped or dropped, `fusion.calibration.reversed`); one reversed by one signal while
the other says nothing, one with a signal each way (contested), and one neither signal can place
(chance) are dropped. A kept
teacher's weight is r / (1 - r^2) (capped), r the mean of its oriented correlation estimates:
the weight a one-factor model gives a noisy measure of quality with loading r.

If every teacher would go, all are kept as declared with weight 1 (and the record says so).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import spearmanr

from vqa.fusion.pairs import known_order_pairs, normalise_scores


@dataclass
class TeacherCalibration:
    key: str
    name: str
    declared_higher_is_better: bool
    known_order_accuracy: float | None  # under the declared direction, averaged over simulator types
    known_order_pairs: int
    accuracy_by_simulator: dict[str, float] = field(default_factory=dict)
    corpus_agreement: float | None = None  # leave-one-out SRCC, declared direction
    direction: str = "as declared"  # as declared | reversed | contested | chance | uncalibrated
    action: str = "keep"  # keep | flip | drop
    reliability: float | None = None  # r, the estimated correlation with quality once oriented
    weight: float = 1.0

    @property
    def higher_is_better(self) -> bool:
        """The direction fusion uses."""
        return self.declared_higher_is_better != (self.action == "flip")

    def to_dict(self) -> dict:
        out = asdict(self)
        for k in ("known_order_accuracy", "corpus_agreement", "reliability", "weight"):
            if out[k] is not None:
                out[k] = round(float(out[k]), 4)
        out["accuracy_by_simulator"] = {k: round(v, 4) for k, v in sorted(out["accuracy_by_simulator"].items())}
        return out


def known_order_accuracy(scores: dict[str, float], higher_is_better: bool,
                         versions: list[tuple[str, str, int, str]]) -> tuple[float | None, int, dict[str, float]]:
    """(accuracy averaged over simulator types, pairs used, per type) of one teacher's raw scores.
    A tie counts half."""
    sign = 1.0 if higher_is_better else -1.0
    hits: dict[str, list[float]] = {}
    for simulator, better, worse, _, _ in known_order_pairs([v for v in versions if v[0] in scores]):
        c = sign * (scores[better] - scores[worse])
        hits.setdefault(simulator, []).append(1.0 if c > 0 else 0.5 if c == 0 else 0.0)
    by_type = {k: float(np.mean(v)) for k, v in hits.items()}
    n = sum(len(v) for v in hits.values())
    return (float(np.mean(list(by_type.values()))) if by_type else None), n, by_type


def greiner_r(accuracy: float) -> float:
    """Correlation implied by a pairwise concordance rate (bivariate normal)."""
    return math.sin(math.pi / 2 * (2 * accuracy - 1))


def _sign(value: float | None, margin: float) -> int:
    if value is None or not math.isfinite(value) or abs(value) < margin:
        return 0
    return 1 if value > 0 else -1


def _loo_agreement(aligned: dict[str, dict[str, float]], orient: dict[str, int]) -> dict[str, float | None]:
    """SRCC of each teacher (declared direction) with the mean of the others (each times orient)."""
    out: dict[str, float | None] = {}
    for key, own in aligned.items():
        others = [k for k in aligned if k != key and orient[k] != 0]
        ids = sorted(v for v in own if any(v in aligned[o] for o in others))
        if len(ids) < 3 or not others:
            out[key] = None
            continue
        ref = [float(np.mean([orient[o] * aligned[o][v] for o in others if v in aligned[o]])) for v in ids]
        r = spearmanr([own[v] for v in ids], ref)[0]
        out[key] = float(r) if np.isfinite(r) else None
    return out


def _decide(r: TeacherCalibration, s: int, c: int, reversed_action: str) -> None:
    """Direction and action from the simulators' sign s and the corpus' sign c (+1, 0, -1).
    Flipping needs both signals; one alone only drops the teacher."""
    if s >= 0 and c >= 0 and s + c > 0:
        r.direction, r.action = "as declared", "keep"
    elif s < 0 and c < 0:
        r.direction, r.action = "reversed", "flip" if reversed_action == "flip" else "drop"
    elif s * c < 0:
        r.direction, r.action = "contested", "drop"
    elif s + c < 0:
        r.direction, r.action = "reversed by one signal", "drop"
    else:
        r.direction, r.action = "chance", "drop"


def calibrate(teachers: list[dict], corpus_scores: dict[str, dict[str, float]],
              simulated_scores: dict[str, dict[str, float]], versions: list[tuple[str, str, int, str]], *,
              enabled: bool = True, accuracy_margin: float = 0.05, agreement_margin: float = 0.1,
              reversed_action: str = "flip", weights: str = "reliability", max_weight: float = 5.0,
              alignment: str = "rank_normal") -> list[TeacherCalibration]:
    """teachers: records {key, name, higher_is_better}. corpus_scores / simulated_scores: key ->
    video id -> raw score (the corpus without its validation videos; simulated versions of
    training sources). versions: (simulated id, source id, level, simulator)."""
    records = []
    for t in teachers:
        acc, n, by_type = known_order_accuracy(simulated_scores.get(t["key"], {}), t["higher_is_better"], versions)
        records.append(TeacherCalibration(t["key"], t.get("name", t["key"]), bool(t["higher_is_better"]), acc, n,
                                          by_type))
    aligned = {r.key: normalise_scores(corpus_scores.get(r.key, {}), r.declared_higher_is_better, alignment)
               for r in records}
    sim_sign = {r.key: _sign(None if r.known_order_accuracy is None else r.known_order_accuracy - 0.5,
                             accuracy_margin) for r in records}
    orient = {r.key: 1 for r in records}
    for _ in range(2):  # declared directions, then the reference as the first pass decided
        agreement = _loo_agreement(aligned, orient)
        for r in records:
            r.corpus_agreement = agreement[r.key]
            if enabled:
                _decide(r, sim_sign[r.key], _sign(r.corpus_agreement, agreement_margin), reversed_action)
        if not enabled:
            break
        orient = {r.key: (0 if r.action == "drop" else -1 if r.action == "flip" else 1) for r in records}
        if not any(orient.values()):
            break
    for r in records:
        if not enabled:
            r.direction, r.action, r.weight = "uncalibrated", "keep", 1.0
            continue
        if r.action == "drop":
            r.weight = 0.0
            continue
        o = 1 if r.action == "keep" else -1
        s, c = sim_sign[r.key], _sign(r.corpus_agreement, agreement_margin)
        estimates = []
        if r.known_order_accuracy is not None and s != 0:
            estimates.append(o * greiner_r(r.known_order_accuracy))
        if r.corpus_agreement is not None and c != 0:
            estimates.append(o * r.corpus_agreement)
        rel = float(np.clip(np.mean(estimates), 0.0, 0.999)) if estimates else 0.0
        r.reliability = rel
        r.weight = 1.0 if weights == "equal" else min(max_weight, rel / (1 - rel * rel))
    if enabled and not any(r.weight > 0 for r in records):
        for r in records:  # nothing placeable: fall back to the declared teachers, said so
            r.direction, r.action, r.weight = f"{r.direction} (all teachers kept: none was placeable)", "keep", 1.0
    return records
