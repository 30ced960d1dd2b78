"""Label-free teacher calibration and the fusion rules, on synthetic teachers of known reliability."""
from __future__ import annotations

import numpy as np
import pytest

from vqa.fusion import Labeller, level_shares, normalise_scores, random_pairs
from vqa.fusion.calibration import calibrate, greiner_r, known_order_accuracy
from vqa.fusion.rules import ensemble_moments
from vqa.fusion.split import is_validation, pair_split, validation_videos

SIMULATORS = ("blur", "noise", "h264")


def _world(n_teachers: int, seed: int = 0, n_videos: int = 120, n_sources: int = 12, levels: int = 4):
    """Corpus videos with a hidden quality, simulated versions of some of them (quality falls with
    the level), and teachers: good ones with decreasing reliability, one reversed, one random."""
    rng = np.random.default_rng(seed)
    corpus = {f"v{i:03d}": float(q) for i, q in enumerate(rng.normal(size=n_videos))}
    versions, quality = [], dict(corpus)
    for sim in SIMULATORS:
        for src in sorted(corpus)[:n_sources]:
            for level in range(1, levels + 1):
                vid = f"{src}-{sim}-{level}"
                versions.append((vid, src, level, sim))
                quality[vid] = corpus[src] - 0.8 * level
    good = n_teachers - 2
    noise = {f"good{k}": 0.3 + 0.4 * k for k in range(good)}  # good0 is the most reliable
    teachers, scores = [], {}
    for name in [*noise, "reversed", "random"]:
        higher = name != "lowerbetter"
        if name == "random":
            raw = {v: float(rng.normal()) for v in quality}
        elif name == "reversed":  # declared higher-is-better, but it measures badness
            raw = {v: -q + float(rng.normal(scale=0.5)) for v, q in quality.items()}
        else:
            raw = {v: q + float(rng.normal(scale=noise[name])) for v, q in quality.items()}
        teachers.append({"key": f"{name}@v1", "name": name, "higher_is_better": higher})
        scores[f"{name}@v1"] = raw
    corpus_scores = {k: {v: s for v, s in raw.items() if v in corpus} for k, raw in scores.items()}
    sim_scores = {k: {v: s for v, s in raw.items() if v not in corpus} for k, raw in scores.items()}
    return teachers, corpus_scores, sim_scores, versions, corpus


@pytest.mark.parametrize("n_teachers", [5, 11])
def test_calibration_finds_the_reversed_and_the_random_teacher(n_teachers):
    teachers, corpus_scores, sim_scores, versions, _ = _world(n_teachers)
    records = {r.name: r for r in calibrate(teachers, corpus_scores, sim_scores, versions)}
    assert records["reversed"].direction == "reversed" and records["reversed"].action == "flip"
    assert records["reversed"].higher_is_better is False
    assert records["random"].action == "drop" and records["random"].weight == 0
    assert records["random"].direction in ("chance", "contested")
    good = [records[f"good{k}"] for k in range(n_teachers - 2)]
    assert all(r.direction == "as declared" and r.action == "keep" for r in good)
    # reliability orders the weights: the least noisy teacher weighs most
    weights = [r.weight for r in good]
    assert weights[0] == max(weights) and weights[0] > 2 * weights[-1] > 0
    assert records["reversed"].known_order_accuracy < 0.1 and records["good0"].known_order_accuracy > 0.9
    # reversed but dropped, if params say so
    dropped = {r.name: r for r in calibrate(teachers, corpus_scores, sim_scores, versions, reversed_action="drop")}
    assert dropped["reversed"].action == "drop" and dropped["reversed"].weight == 0


def test_a_teacher_right_on_simulators_but_reversed_on_the_corpus_is_contested():
    # The `noise` teacher of the issue: orders the simulated versions right, follows content the
    # wrong way on real video. The corpus agreement catches what the simulators cannot.
    teachers, corpus_scores, sim_scores, versions, corpus = _world(7, seed=1)
    rng = np.random.default_rng(5)
    teachers.append({"key": "texture@v1", "name": "texture", "higher_is_better": True})
    sim_scores["texture@v1"] = {v: -lv + 0.01 * rng.normal() for v, _, lv, _ in versions}  # perfect on simulators
    truth = {v: q for v, q in corpus.items()}
    corpus_scores["texture@v1"] = {v: -q + float(rng.normal(scale=0.3)) for v, q in truth.items()}
    records = {r.name: r for r in calibrate(teachers, corpus_scores, sim_scores, versions)}
    assert records["texture"].known_order_accuracy > 0.95
    assert records["texture"].corpus_agreement < -0.5
    assert records["texture"].direction == "contested" and records["texture"].weight == 0


def test_calibration_off_keeps_every_teacher_as_declared_but_still_measures():
    teachers, corpus_scores, sim_scores, versions, _ = _world(5)
    records = calibrate(teachers, corpus_scores, sim_scores, versions, enabled=False)
    assert all(r.action == "keep" and r.weight == 1.0 and r.direction == "uncalibrated" for r in records)
    assert all(r.known_order_accuracy is not None and r.corpus_agreement is not None for r in records)


def test_nothing_placeable_keeps_all_teachers_and_says_so():
    teachers = [{"key": "only@v1", "name": "only", "higher_is_better": True}]
    records = calibrate(teachers, {"only@v1": {"a": 1.0, "b": 2.0}}, {}, [])
    assert records[0].action == "keep" and records[0].weight == 1.0 and "none was placeable" in records[0].direction


def test_known_order_accuracy_is_averaged_over_simulator_types_and_counts_ties_half():
    versions = [(f"{s}{lv}", "src", lv, sim) for sim, s in (("blur", "b"), ("h264", "h")) for lv in (1, 2, 3)]
    scores = {"b1": 3.0, "b2": 2.0, "b3": 1.0,  # blur: all 3 pairs right
              "h1": 1.0, "h2": 1.0, "h3": 2.0}  # h264: one tie, two wrong
    acc, n, by_type = known_order_accuracy(scores, True, versions)
    assert n == 6 and by_type == {"blur": 1.0, "h264": pytest.approx(0.5 / 3)}
    assert acc == pytest.approx((1.0 + 0.5 / 3) / 2)
    assert greiner_r(0.5) == pytest.approx(0.0) and greiner_r(1.0) == pytest.approx(1.0)


def _eleven_weak(seed=0, n=200):
    """Eleven teachers that each see a common quality through heavy noise: they barely agree."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n)
    ids = [f"v{i:03d}" for i in range(n)]
    return {f"t{k}": normalise_scores({v: float(q[i] + rng.normal(scale=2.0)) for i, v in enumerate(ids)}, True)
            for k in range(11)}


def test_paper_rule_collapses_to_similar_with_many_weak_teachers_and_mean_se_does_not():
    aligned = _eleven_weak()
    weights = {k: 1.0 for k in aligned}
    paper = random_pairs(Labeller(aligned, weights, 0.15, rule="paper"), 1500, seed=0)
    mean_se = random_pairs(Labeller(aligned, weights, 0.15, rule="mean_se"), 1500, seed=0)
    assert level_shares([p.label for p in paper])["similar"] > 0.8
    assert level_shares([p.label for p in mean_se])["similar"] < 0.6
    # the same pairs, the same d: only the spread differs, by sqrt(11) with equal weights
    for a, b in zip(paper, mean_se):
        assert (a.a, a.b, a.d) == (b.a, b.b, b.d)
        assert b.s == pytest.approx(max(a.s / np.sqrt(11), 0.15))


def test_weighted_moments_and_effective_number():
    aligned = {"a": {"v": 1.0}, "b": {"v": -1.0}, "c": {"v": 0.0}}
    eq = ensemble_moments(aligned)["v"]
    assert (eq.mean, eq.var, eq.n_eff) == (0.0, pytest.approx(2 / 3), 3.0)
    w = ensemble_moments(aligned, {"a": 3.0, "b": 1.0, "c": 0.0})["v"]  # weight 0 leaves c out
    assert w.mean == pytest.approx(0.5) and w.n_eff == pytest.approx(16 / 10)
    assert w.var == pytest.approx(0.75 * 0.25 + 0.25 * 2.25)


def test_validation_split_is_by_video_and_stable():
    ids = [f"{i:064x}" for i in range(400)]
    held = validation_videos(ids, 0.2, seed=0)
    assert 50 < len(held) < 110
    assert held == validation_videos(list(reversed(ids)) + ["new"], 0.2, seed=0) - {"new"}  # order, growth
    assert held != validation_videos(ids, 0.2, seed=1)
    assert all(is_validation(v, 0.2, 0) == (v in held) for v in ids)
    a, b = sorted(held)[:2]
    c, d = sorted(set(ids) - held)[:2]
    assert pair_split(a, b, held) == "val" and pair_split(c, d, held) == "train" and pair_split(a, c, held) is None
