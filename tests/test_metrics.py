import math
import warnings

import numpy as np
import pytest

from vqa.evaluation import Suite, SuiteItem, correlate, plcc, srcc
from vqa.evaluation.metrics import ConstantPredictionWarning


def test_perfect_and_inverted():
    x = np.arange(10.0)
    assert srcc(x, x) == pytest.approx(1.0)
    assert srcc(-x, x) == pytest.approx(-1.0)
    assert plcc(2 * x + 1, x) == pytest.approx(1.0)


def test_ties_are_fine():
    assert srcc([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)


def test_constant_predictions_warn_and_give_zero():
    with pytest.warns(ConstantPredictionWarning):
        assert srcc([3, 3, 3], [1, 2, 3]) == 0.0


def test_nan_rows_are_dropped():
    assert srcc([1, np.nan, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert math.isnan(srcc([1], [1]))


def test_correlate_within_groups_then_average(tmp_path):
    items, scores = [], {}
    for g, sign in (("a", 1), ("b", -1)):
        for lvl in range(5):
            p = tmp_path / f"{g}{lvl}.mp4"
            items.append(SuiteItem(p, g, -lvl, {"ood": g == "b", "source": "x"}))
            scores[str(p)] = sign * -lvl
    res = correlate(Suite("ko", items, "known_order"), scores)
    assert res["groups"]["a"]["srcc"] == pytest.approx(1.0)
    assert res["groups"]["b"]["srcc"] == pytest.approx(-1.0)
    assert res["all"]["srcc"] == pytest.approx(0.0)
    assert res["in_domain"]["srcc"] == pytest.approx(1.0) and res["ood"]["srcc"] == pytest.approx(-1.0)


def test_small_groups_are_skipped(tmp_path):
    items = [SuiteItem(tmp_path / f"{i}", "big" if i < 4 else "tiny", float(i)) for i in range(6)]
    scores = {str(it.path): it.target for it in items}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = correlate(Suite("m", items, "mos"), scores, min_group_size=3)
    assert list(res["groups"]) == ["big"] and res["all"]["srcc"] == pytest.approx(1.0)
