import math

import torch

from vqa.student.losses import ConfidenceSchedule, five_level_log_probs, pair_loss

CUT = torch.tensor([-2.0, -0.5, 0.5, 2.0])


def test_probabilities_sum_to_one_and_follow_d():
    d = torch.tensor([-10.0, -2.0, 0.0, 2.0, 10.0])
    p = five_level_log_probs(d, torch.tensor([-3.0, -1.0, 1.0, 3.0])).exp()
    assert torch.allclose(p.sum(1), torch.ones(5), atol=1e-5)
    assert p.argmax(1).tolist() == [0, 1, 2, 3, 4]


def test_symmetric_cutpoints_make_swapped_pairs_consistent():
    d = torch.tensor([0.7])
    p_ab = five_level_log_probs(d, CUT).exp()[0]
    p_ba = five_level_log_probs(-d, CUT).exp()[0]
    assert torch.allclose(p_ab, p_ba.flip(0), atol=1e-6)


def test_ce_is_lower_for_the_right_direction():
    d = torch.tensor([3.0])
    right, _ = pair_loss("five_level", d, CUT, torch.tensor([4]))
    wrong, _ = pair_loss("five_level", d, CUT, torch.tensor([0]))
    assert right < wrong


def test_confidence_schedule_matches_paper():
    s = ConfidenceSchedule(total_steps=100, warmup_fraction=0.1)
    assert s.warmup_steps == 10
    assert s.temperature(0) == 0.5 and math.isclose(s.temperature(10), 0.1) and math.isclose(s.temperature(50), 0.1)
    assert s.ramp(0) == 0 and s.ramp(5) == 0.5 and s.ramp(99) == 1


def test_confidence_loss_mixes_ce_and_entropy():
    d = torch.tensor([0.3, -0.2, 1.5], requires_grad=True)
    y = torch.tensor([3, 2, 4])
    s = ConfidenceSchedule(total_steps=100)
    loss0, t0 = pair_loss("five_level_confidence", d, CUT, y, step=0, schedule=s)
    assert t0["lambda"] == 0 and math.isclose(loss0.item(), t0["ce"], rel_tol=1e-6)
    loss, t = pair_loss("five_level_confidence", d, CUT, y, step=50, schedule=s)
    a = math.exp(t["entropy"] / 0.1) / (math.exp(t["entropy"] / 0.1) + math.exp(t["ce"] / 0.1))
    assert math.isclose(t["lambda"], a, rel_tol=1e-5)
    assert math.isclose(loss.item(), (1 - a) * t["ce"] + a * t["entropy"], rel_tol=1e-5)
    loss.backward()
    assert d.grad is not None and torch.isfinite(d.grad).all()
