import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from vqa.student.anchors import (
    AnchorSet,
    anchored_scores,
    choose_anchors,
    map_scores,
    preference_matrix,
)
from vqa.student.losses import five_level_log_probs

CUT = np.array([-2.0, -0.5, 0.5, 2.0])
ANCHORS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])


def _objective(q, m):
    # Written out pair by pair, independently of the module's vectorised version.
    total = 0.0
    for i in range(len(q)):
        for j in range(len(q)):
            total += m[i, j] * -np.logaddexp(0.0, -(q[i] - q[j]))
    return total - 0.5 * float(np.dot(q, q))


def _num_grad(q, m, h=1e-6):
    g = np.zeros_like(q)
    for k in range(len(q)):
        e = np.zeros_like(q)
        e[k] = h
        g[k] = (_objective(q + e, m) - _objective(q - e, m)) / (2 * h)
    return g


def test_preference_matrix_properties_and_agreement_with_the_model():
    s = np.array([0.3, -1.2, 2.5, 0.3, 4.0, -0.7])
    m = preference_matrix(s, torch.tensor(CUT, dtype=torch.float32))
    assert m.shape == (6, 6)
    assert np.all(np.diag(m) == 0.5)
    assert np.allclose(m + m.T, 1.0, atol=1e-15, rtol=0)
    assert np.all((m > 0.5) == (s[:, None] > s[None, :]))
    assert abs(m[0, 3] - 0.5) < 1e-15  # equal scores
    # Same numbers as the expectation of the student's own five-level distribution.
    d = torch.tensor(s[:, None] - s[None, :], dtype=torch.float64).reshape(-1)
    probs = five_level_log_probs(d, torch.tensor(CUT, dtype=torch.float64)).exp().numpy()
    expected = (probs @ np.array([0.0, 0.25, 0.5, 0.75, 1.0])).reshape(6, 6)
    assert np.allclose(m, expected, atol=1e-6)


def test_bradley_terry_preference_is_the_sigmoid_and_cutpoints_matter_otherwise():
    s = np.array([0.0, 1.0, -2.0])
    bt = preference_matrix(s, loss="bradley_terry")
    assert np.isclose(bt[1, 0], 1 / (1 + np.exp(-1.0)))
    assert not np.isclose(preference_matrix(s, CUT)[1, 0], bt[1, 0])
    with pytest.raises(ValueError, match="cutpoints"):
        preference_matrix(s)
    with pytest.raises(ValueError, match="unknown loss"):
        preference_matrix(s, CUT, loss="hinge")


def test_map_solution_is_stationary_and_matches_scipy():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, size=9)  # n > 6 works too
    m = preference_matrix(s, CUT)
    q = map_scores(m)
    assert np.linalg.norm(_num_grad(q, m)) < 1e-6
    ref = minimize(lambda x: -_objective(x, m), np.zeros(9), method="BFGS", options={"gtol": 1e-9})
    assert np.allclose(q, ref.x, atol=1e-5)
    assert _objective(q, m) >= _objective(ref.x, m) - 1e-12
    assert abs(q.sum()) < 1e-8  # M + M.T = 1 makes the data term shift-invariant: sum q = 0 at the optimum


def test_map_handles_a_general_matrix_and_extreme_preferences():
    m = np.array([[0.5, 0.9, 1.0], [0.1, 0.5, 0.7], [0.0, 0.3, 0.5]])
    q = map_scores(m)
    assert np.linalg.norm(_num_grad(q, m)) < 1e-6
    q_far = map_scores(preference_matrix([0.0, 1e3, -1e3], CUT))
    assert np.all(np.isfinite(q_far)) and q_far[1] > q_far[0] > q_far[2]
    with pytest.raises(ValueError, match="square"):
        map_scores(np.ones((2, 3)) * 0.5)


def test_ordering_is_preserved():
    rng = np.random.default_rng(1)
    s = rng.normal(0, 1.5, size=12)
    q = map_scores(preference_matrix(s, CUT))
    assert np.array_equal(np.argsort(q), np.argsort(s))


def test_anchored_scores_saturate_at_the_extremes_and_are_monotone():
    out = anchored_scores([50.0, -50.0, 0.0], ANCHORS, CUT)
    assert out[0] == 100.0 and out[1] == 0.0
    assert 0.0 < out[2] < 100.0
    assert abs(out[2] - 50.0) < 1e-9  # symmetric anchors: the middle one is the midpoint
    grid = np.linspace(-3, 3, 25)
    sweep = anchored_scores(grid, ANCHORS, CUT)
    # Ties with an extreme anchor differ from 0/100 by float noise only.
    assert np.all(np.diff(sweep) >= -1e-9) and sweep[0] == 0.0 and sweep[-1] == 100.0
    assert np.allclose(sweep[grid <= -2], 0.0, atol=1e-9) and np.allclose(sweep[grid >= 2], 100.0, atol=1e-9)
    inner = sweep[(grid > -2) & (grid < 2)]
    assert np.all(np.diff(inner) > 0) and np.all((inner > 0) & (inner < 100))


def test_anchored_score_of_a_video_equal_to_the_middle_anchor_with_skewed_anchors():
    anchors = np.array([-3.0, -0.2, 0.4, 0.5, 4.0])
    out = anchored_scores([0.4], anchors, CUT)[0]
    assert 0.0 < out < 100.0
    q = map_scores(preference_matrix(np.concatenate(([0.4], anchors)), CUT))
    assert np.isclose(out, 100 * (q[3] - q.min()) / (q.max() - q.min()))  # the anchor's own value


def test_choose_anchors_picks_the_quantile_videos_deterministically():
    ids = [f"v{i:03d}" for i in range(100)]
    scores = np.arange(100, dtype=float)
    # np.quantile targets: 9.9, 29.7, 49.5, 69.3, 89.1; 49.5 is a tie between v049 and v050
    assert choose_anchors(ids, scores) == ["v010", "v030", "v049", "v069", "v089"]
    perm = np.random.default_rng(2).permutation(100)
    assert choose_anchors([ids[i] for i in perm], scores[perm]) == ["v010", "v030", "v049", "v069", "v089"]
    assert choose_anchors(ids, scores, n=3, quantiles=(0.0, 0.5, 1.0)) == ["v000", "v049", "v099"]


def test_choose_anchors_breaks_ties_by_id_and_never_repeats_a_video():
    ids = ["e", "d", "c", "b", "a"]
    scores = [1.0, 1.0, 1.0, 1.0, 1.0]
    assert choose_anchors(ids, scores) == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="at least 5"):
        choose_anchors(ids[:3], scores[:3])
    with pytest.raises(ValueError, match="quantiles"):
        choose_anchors(ids, scores, n=5, quantiles=(0.5,))


def test_anchor_set_round_trips_and_refuses_another_model(tmp_path):
    ids = [f"v{i:02d}" for i in range(20)]
    scores = np.linspace(-2, 2, 20)
    anchors = AnchorSet.choose(
        ids, scores, model_fingerprint="sha256:abc", paths=[f"/videos/{v}.mp4" for v in ids], extra={"round": "r1"}
    )
    assert anchors.video_ids == tuple(choose_anchors(ids, scores))
    assert anchors.paths[0] == f"/videos/{anchors.video_ids[0]}.mp4"
    path = tmp_path / "anchors.json"
    anchors.save(path)
    assert json.loads(path.read_text())["model_fingerprint"] == "sha256:abc"
    back = AnchorSet.load(path, expected_fingerprint="sha256:abc")
    assert back == anchors
    assert np.allclose(back.anchored_scores([5.0, -5.0], CUT), [100.0, 0.0])
    with pytest.raises(ValueError) as err:
        AnchorSet.load(path, expected_fingerprint="sha256:def")
    msg = str(err.value)
    assert str(path) in msg and "sha256:abc" in msg and "\n" not in msg
    assert AnchorSet.load(path, expected_fingerprint=None) == anchors


def test_anchor_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(FileNotFoundError, match="none.json"):
        AnchorSet.load(missing, expected_fingerprint="x")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 1, "video_ids": ["a"], "scores": [1.0], "method": "m"}))
    with pytest.raises(ValueError, match="bad.json.*model_fingerprint"):
        AnchorSet.load(bad, expected_fingerprint="x")


def test_percentile_scores_interpolate_the_anchors_and_never_reach_0_or_100():
    from vqa.student.anchors import percentile_scores

    anchors, qs = [-2.0, -1.0, 0.0, 1.0, 2.0], [0.1, 0.3, 0.5, 0.7, 0.9]
    assert percentile_scores(anchors, anchors, qs) == pytest.approx([10, 30, 50, 70, 90])
    assert percentile_scores([-1.5, 0.5], anchors, qs) == pytest.approx([20, 60])
    far = percentile_scores([-1e4, -50.0, -3.0, 3.0, 50.0, 1e4], anchors, qs)
    assert np.all((far > 0) & (far < 100)) and np.all(np.diff(far) > 0)
    # continuous slope at the extreme anchors: one step in, one step out
    eps = 1e-6
    inside, outside = percentile_scores([2 - eps, 2 + eps], anchors, qs) - 90
    assert -inside == pytest.approx(outside, rel=1e-3)
    # anchors out of order or tied still give a strictly increasing mapping
    tied = percentile_scores(np.linspace(-3, 3, 50), [0.0, 0.0, 1.0, 1.0, 2.0], qs)
    assert np.all(np.diff(tied) > 0)
