import math

import numpy as np
import pytest

from vqa.fusion import (
    LEVEL_NAMES,
    homogeneous_pairs,
    normalise_scores,
    preference_level,
    read_pairs,
    simulator_pairs,
    write_pairs,
)


@pytest.mark.parametrize(
    "d,s,name",
    [
        (2.01, 1.0, "superior"),
        (2.0, 1.0, "better"),  # d <= 2s
        (1.01, 1.0, "better"),
        (1.0, 1.0, "similar"),  # d <= s
        (0.0, 1.0, "similar"),
        (-0.99, 1.0, "similar"),
        (-1.0, 1.0, "worse"),  # d <= -s
        (-1.99, 1.0, "worse"),
        (-2.0, 1.0, "inferior"),  # d <= -2s
        (-5.0, 1.0, "inferior"),
    ],
)
def test_teacher_rule_all_five_levels(d, s, name):
    assert LEVEL_NAMES[preference_level(d, s)] == name


def test_normalise_flips_lower_is_better_and_handles_ties():
    z = normalise_scores({"a": 1.0, "b": 2.0, "c": 2.0, "d": 9.0}, higher_is_better=False)
    assert z["a"] > z["b"] == z["c"] > z["d"]
    assert abs(sum(z.values())) < 1e-9  # symmetric quantiles


def test_homogeneous_pairs_follow_the_rule_and_are_seeded():
    teacher1 = {f"v{i}": float(i) for i in range(30)}
    teacher2 = {f"v{i}": float(i) + (5 if i % 3 == 0 else 0) for i in range(30)}
    norm = {"t1": normalise_scores(teacher1, True), "t2": normalise_scores(teacher2, True)}
    pairs = homogeneous_pairs(norm, count=200, min_pair_std=0.1, seed=3)
    assert len(pairs) == 200
    assert len({frozenset((p.a, p.b)) for p in pairs}) == 200
    for p in pairs:
        ma = np.mean([norm["t1"][p.a], norm["t2"][p.a]])
        mb = np.mean([norm["t1"][p.b], norm["t2"][p.b]])
        s = max(math.sqrt(np.var([norm["t1"][p.a], norm["t2"][p.a]]) + np.var([norm["t1"][p.b], norm["t2"][p.b]])), 0.1)
        assert p.label == preference_level(ma - mb, s)
    assert {p.label for p in pairs} == {0, 1, 2, 3, 4}
    assert pairs == homogeneous_pairs(norm, count=200, min_pair_std=0.1, seed=3)
    assert pairs != homogeneous_pairs(norm, count=200, min_pair_std=0.1, seed=4)


def test_single_teacher_uses_the_floor_so_similar_exists():
    norm = {"t": normalise_scores({f"v{i}": float(i) for i in range(50)}, True)}
    labels = {p.label for p in homogeneous_pairs(norm, count=500, min_pair_std=0.3, seed=0)}
    assert 2 in labels and 0 in labels and 4 in labels


def test_simulator_rule_level_gap():
    versions = [("s1_l1", "s1", 1, "h264"), ("s1_l2", "s1", 2, "h264"), ("s1_l3", "s1", 3, "h264"),
                ("s2_l1", "s2", 1, "h264"), ("s2_l4", "s2", 4, "h264")]
    pairs = simulator_pairs(versions, seed=0)
    assert len(pairs) == 3 + 1  # pairs never cross sources
    level = {v[0]: v[2] for v in versions}
    for p in pairs:
        gap = level[p.b] - level[p.a]  # positive: A is the less distorted one
        expected = {1: "better", -1: "worse"}.get(gap, "superior" if gap > 1 else "inferior")
        assert p.level_name == expected
        assert p.level_name != "similar"


def test_pairs_roundtrip(tmp_path):
    norm = {"t": normalise_scores({f"v{i}": float(i) for i in range(10)}, True)}
    pairs = homogeneous_pairs(norm, count=20, min_pair_std=0.2, seed=0) + simulator_pairs(
        [("a", "s", 1, "h264"), ("b", "s", 3, "h264")], seed=0)
    write_pairs(tmp_path / "p.csv", pairs)
    back = read_pairs(tmp_path / "p.csv")
    assert [(p.a, p.b, p.label, p.source) for p in back] == [(p.a, p.b, p.label, p.source) for p in pairs]


def test_bad_pairs_file_names_line(tmp_path):
    (tmp_path / "p.csv").write_text("a,b,label,level_name,source,d,s\nx,y,7,?,homogeneous,,\n")
    with pytest.raises(ValueError, match=r"p\.csv:2"):
        read_pairs(tmp_path / "p.csv")
