"""Rounds 2+: label refinement, hard synthetic pairs, gMAD pairs, cumulative data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from vqa.fusion import Pair, homogeneous_pairs, normalise_scores, random_pairs
from vqa.fusion import iteration as it
from vqa.fusion.pairs import _key


def _equal(keys):
    return {k: 1.0 for k in keys}


def _teachers(n_videos=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"v{i:02d}" for i in range(n_videos)]
    truth = rng.normal(size=n_videos)
    raw = {f"t{k}": {v: float(truth[i] + rng.normal(scale=0.5)) for i, v in enumerate(ids)} for k in range(3)}
    return ids, truth, {k: normalise_scores(s, True) for k, s in raw.items()}


def test_equal_weights_reproduce_the_round1_rule_exactly():
    _, _, norm = _teachers()
    lab = it.make_labeller(norm, _equal(norm), None, mode="fused", student_weight=1.0, min_pair_std=0.15)
    for p in homogeneous_pairs(norm, count=30, min_pair_std=0.15, seed=3):
        label, d, s = lab.label(p.a, p.b)
        assert (label, d, s) == (p.label, p.d, p.s)


def test_fused_student_weight_pulls_labels_towards_the_student():
    ids, _, norm = _teachers()
    # A student that reverses the teachers' consensus.
    student = {v: -m.mean for v, m in it.make_labeller(norm, _equal(norm), None, mode="off", student_weight=1,
                                                       min_pair_std=0.15)._moments.items()}
    norm_s = norm | {"student@r": student}
    rec = {"key": "student@r"}
    weak = _equal(norm)
    light = it.make_labeller(norm_s, weak, rec, mode="fused", student_weight=0.01, min_pair_std=0.01)
    heavy = it.make_labeller(norm_s, weak, rec, mode="fused", student_weight=100.0, min_pair_std=0.01)
    off = it.make_labeller(norm_s, weak, rec, mode="off", student_weight=100.0, min_pair_std=0.01)
    hi, lo = max(ids, key=lambda v: student[v]), min(ids, key=lambda v: student[v])
    assert off.label(hi, lo)[1] < 0  # teachers: hi is worse
    assert light.label(hi, lo)[1] < 0
    assert heavy.label(hi, lo)[1] > 0  # the heavy student wins


def test_student_mode_labels_from_its_five_level_model():
    cut = [-2.0, -0.5, 0.5, 2.0]
    raw = {"a": 3.0, "b": 0.0, "c": 0.1}
    rec = {"key": "s", "cutpoints": cut, "loss": "five_level_confidence"}
    lab = it.make_labeller({"s": normalise_scores(raw, True)}, {}, rec, mode="student", student_weight=1,
                           min_pair_std=0.15, raw_student=raw)
    assert lab.label("a", "b")[0] == 4 and lab.label("b", "a")[0] == 0
    assert lab.label("b", "c")[0] == 2 and lab.label("c", "b")[0] == 2
    assert [it.median_level(d, cut) for d in (-3, -1, 0, 1, 3)] == [0, 1, 2, 3, 4]
    probs = it.five_level_probs(np.array([0.0, 10.0]), cut)
    assert np.allclose(probs.sum(axis=1), 1) and probs[1].argmax() == 4


def test_student_mode_of_a_bradley_terry_student_uses_its_aligned_scores():
    raw = {"a": 3.0, "b": 0.0, "c": -3.0}
    rec = {"key": "s", "cutpoints": [0, 0, 0, 0], "loss": "bradley_terry"}
    lab = it.make_labeller({"s": normalise_scores(raw, True)}, {}, rec, mode="student", student_weight=1,
                           min_pair_std=0.15, raw_student=raw)
    assert lab.mode == "ensemble" and lab.label("a", "c")[0] == 4


def _versions():
    # two simulators x two sources x 3 levels
    out = []
    for sim in ("blur", "h264"):
        for src in ("s1", "s2"):
            for level in (0, 1, 2):
                out.append((f"{sim}-{src}-{level}", src, level, sim))
    return out


def test_hard_synthetic_pairs_are_the_misclassified_ones_with_known_labels():
    versions = _versions()
    scores = {vid: -5.0 * level for vid, _, level, _ in versions}  # right order, far apart
    scores["blur-s1-2"] = 10.0  # blur s1's most distorted version now scores best: 2 wrong pairs
    cut = [-2.0, -0.5, 0.5, 2.0]
    pairs = it.hard_synthetic_pairs(versions, scores, cutpoints=cut, loss="five_level", budget=50, seed=1,
                                    round_name="round2")
    assert {frozenset((p.a, p.b)) for p in pairs} == {frozenset(("blur-s1-0", "blur-s1-2")),
                                                      frozenset(("blur-s1-1", "blur-s1-2"))}
    for p in pairs:
        assert p.selection == "hard" and p.round == "round2" and p.source == "blur"
        less, more = (p.a, p.b) if p.a < p.b else (p.b, p.a)  # names sort by level within a source
        expected = 4 if int(more[-1]) - int(less[-1]) > 1 else 3
        assert p.label == (expected if p.a == less else 4 - expected)


def test_hard_synthetic_budget_is_shared_by_the_types_and_hardest_first():
    versions = _versions()
    scores = {vid: 5.0 * level for vid, _, level, _ in versions}  # everything reversed: all hard
    scores["blur-s2-1"] = 0.1  # level 0 vs 1 of blur s2: "similar" (d = -0.1), also the wrong call
    pairs = it.hard_synthetic_pairs(versions, scores, cutpoints=[-2, -0.5, 0.5, 2], loss="five_level",
                                    budget=4, seed=0, round_name="r")
    assert sorted(p.source for p in pairs) == ["blur", "blur", "h264", "h264"]
    # level 0 vs 2 (score gap 10) is harder than 0 vs 1 (gap 5): the former come first
    assert all(abs(p.d) == 2.0 for p in pairs)
    again = it.hard_synthetic_pairs(versions, scores, cutpoints=[-2, -0.5, 0.5, 2], loss="five_level",
                                    budget=4, seed=0, round_name="r")
    assert again == pairs


def test_gmad_pairs_pick_teacher_ties_the_student_splits_and_the_reverse():
    ids = [f"v{i}" for i in range(8)]
    teacher = {v: float(i // 4) for i, v in enumerate(ids)}  # two bins of four equal scores
    student = {v: float(i % 4) for i, v in enumerate(ids)}  # splits each bin; ties across bins
    norm = {"t": teacher, "s": student}
    lab = it.make_labeller(norm, {"t": 1.0}, {"key": "s"}, mode="fused", student_weight=1.0, min_pair_std=0.15)
    pairs = it.gmad_pairs(lab, norm, ["t"], "s", budget=4, bins=2, seed=0, round_name="round2")
    keys = {frozenset((p.a, p.b)) for p in pairs}
    # teacher ties, student extremes: v0-v3 and v4-v7 (student gap 3)
    assert frozenset(("v0", "v3")) in keys and frozenset(("v4", "v7")) in keys
    # the reverse: equal-count bins of the student's scores ({v0,v4,v1,v5}, {v2,v6,v3,v7}), each
    # giving the pair the teacher splits (gap 1)
    reverse = [k for k in keys if k not in (frozenset(("v0", "v3")), frozenset(("v4", "v7")))]
    assert len(reverse) == 2 and all(abs(teacher[a] - teacher[b]) == 1 for a, b in map(sorted, reverse))
    assert len(pairs) == 4 and all(p.selection == "gmad" and p.source == "homogeneous" for p in pairs)
    assert it.gmad_pairs(lab, norm, ["t"], "s", budget=0, bins=2, seed=0, round_name="r") == []


def test_carry_forward_relabels_teacher_pairs_and_keeps_simulator_pairs():
    _, _, norm = _teachers()
    lab = it.make_labeller(norm, _equal(norm), None, mode="off", student_weight=1, min_pair_std=0.15)
    earlier = [Pair("v00", "v01", 2, "homogeneous", 0.0, 1.0, "random", ""),
               Pair("x", "y", 4, "blur", 2.0, math.nan, "hard", "round2"),
               Pair("v00", "gone", 3, "homogeneous", 0.5, 0.2, "gmad", "round2")]
    out = it.carry_forward(earlier, lab, "round1")
    assert out[0].label == lab.label("v00", "v01")[0] and out[0].round == "round1"
    assert out[1] == earlier[1]
    assert out[2].label == 3 and out[2].round == "round2"  # no scores for "gone": label kept


def test_random_pairs_skip_taken_pairs_and_stop_when_none_are_left():
    ids, _, norm = _teachers(n_videos=5)
    lab = it.make_labeller(norm, _equal(norm), None, mode="off", student_weight=1, min_pair_std=0.15)
    taken = {("v00", "v01"), ("v02", "v03")}
    pairs = random_pairs(lab, 100, seed=0, round_name="r", exclude=taken)
    assert len(pairs) == 10 - 2
    assert not {_key(p.a, p.b) for p in pairs} & taken
    assert random_pairs(lab, 3, seed=7, round_name="r") == random_pairs(lab, 3, seed=7, round_name="r")


def test_unknown_refinement_mode_fails_clearly():
    with pytest.raises(ValueError, match="label_refinement"):
        it.make_labeller({}, {}, {"key": "s"}, mode="bogus", student_weight=1, min_pair_std=0.1)
