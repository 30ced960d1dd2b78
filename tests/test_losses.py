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


def test_bradley_terry_is_bce_against_the_soft_preference():
    import torch
    import torch.nn.functional as F

    from vqa.student.losses import pair_loss

    d = torch.tensor([2.0, -1.0, 0.0, 0.5])
    y = torch.tensor([4, 0, 2, 3])
    loss, _ = pair_loss("bradley_terry", d, torch.zeros(4), y)
    want = F.binary_cross_entropy_with_logits(d, torch.tensor([1.0, 0.0, 0.5, 0.75]))
    assert torch.isclose(loss, want)
    # swapping A and B (d -> -d, label -> 4 - label) gives the same loss
    swapped, _ = pair_loss("bradley_terry", -d, torch.zeros(4), 4 - y)
    assert torch.isclose(loss, swapped)
    # "similar" is minimised at d = 0
    d0 = torch.tensor([0.0], requires_grad=True)
    pair_loss("bradley_terry", d0, torch.zeros(4), torch.tensor([2]))[0].backward()
    assert abs(float(d0.grad)) < 1e-7
    # weights: a zero-weight pair does not count
    lw, _ = pair_loss("bradley_terry", d, torch.zeros(4), y, weights=torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert torch.isclose(lw, F.binary_cross_entropy_with_logits(d[:3], torch.tensor([1.0, 0.0, 0.5])))


def test_pair_weights_give_each_kind_its_share_per_split_then_multiply():
    from vqa.fusion.pairs import Pair
    from vqa.student.train import pair_weights

    def p(source, selection="random", split="train"):
        return Pair("a", "b", 3, source, selection=selection, split=split)

    # 6 teacher pairs, 2 blur + 2 h264 simulator pairs, 1 hard pair; and a validation part
    train = [p("homogeneous")] * 6 + [p("blur")] * 2 + [p("h264")] * 2 + [p("blur", "hard")]
    val = [p("homogeneous", split="val")] * 3 + [p("blur", split="val")]
    mix = {"teacher": 0.5, "simulator": 0.5, "gmad": 0.1, "hard": 0.1}
    w = pair_weights(train + val, mix)
    tw, vw = w[:11], w[11:]
    assert abs(sum(tw) / len(tw) - 1) < 1e-12 and abs(sum(vw) / len(vw) - 1) < 1e-12
    # shares renormalised over the kinds present (no gMAD pairs): 0.5 : 0.5 : 0.1 of 1.1
    assert abs(sum(tw[:6]) / sum(tw) - 0.5 / 1.1) < 1e-12 and abs(sum(tw[6:10]) / sum(tw) - 0.5 / 1.1) < 1e-12
    # every simulator pair weighs the same, whatever its type (not equal weight per type)
    assert len(set(tw[6:10])) == 1
    assert abs(sum(vw[:3]) - sum(vw[3:])) < 1e-12  # validation pairs: the same 1:1 between their kinds
    w2 = pair_weights(train + val, mix, multipliers={"blur": 0.5})
    assert w2[:6] == w[:6] and w2[6:8] == [x * 0.5 for x in w[6:8]] and w2[8:10] == w[8:10]
    assert pair_weights(train, mix | {"simulator": 0.0})[6:10] == [0.0] * 4


def test_training_with_bradley_terry_learns_the_order():
    """A head trained with the BT option on synthetic features recovers a hidden quality order."""
    import numpy as np

    from vqa.config.params import StudentParams
    from vqa.fusion.pairs import Pair
    from vqa.student.model import StudentConfig, StudentModel
    from vqa.student.train import train_student

    rng = np.random.default_rng(0)
    model = StudentModel(StudentConfig(), load_backbone=False)
    dim = model.feature_dim
    direction = rng.standard_normal(dim).astype(np.float32)
    feats, quality = {}, {}
    for i in range(40):
        f = rng.standard_normal((3, dim)).astype(np.float32)
        feats[f"v{i}"], quality[f"v{i}"] = f, float(f.mean(0) @ direction)
    ids = sorted(feats)
    held_out = set(ids[:8])  # validation videos: their pairs are validation pairs, never trained on
    pairs = []
    for _ in range(700):
        a, b = rng.choice(ids, 2, replace=False)
        if (a in held_out) != (b in held_out):
            continue
        gap = quality[a] - quality[b]
        label = 4 if gap > 4 else 3 if gap > 0 else 1 if gap > -4 else 0
        pairs.append(Pair(a, b, label, "homogeneous", split="val" if a in held_out else "train"))
    params = StudentParams(loss="bradley_terry", epochs=30, batch_size=32, lr=3e-3)
    result = train_student(model, pairs, feats, params, seed=0, device="cpu", log=lambda m: None)
    from vqa.scoring import scores_from_features

    scores = scores_from_features(result.model, feats)
    from scipy.stats import spearmanr

    assert spearmanr([scores[i] for i in ids], [quality[i] for i in ids])[0] > 0.8
    assert "val_ce" in result.history[-1]
