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


# ---- extended metrics -----------------------------------------------------------------------

from scipy.stats import kendalltau, pearsonr, spearmanr  # noqa: E402

from vqa.evaluation.metrics import (  # noqa: E402
    LogisticFit,
    _replicates,
    _resample_batches,
    all_metrics,
    bootstrap_ci,
    bootstrap_metrics,
    fit_logistic,
    grouped_metrics,
    krcc,
    logistic4,
    paired_bootstrap_diff,
    plcc_fitted,
    rmse_fitted,
)


def _data(n, noise=1.0, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=n)
    t = p + noise * rng.normal(size=n)
    if decimals is not None:  # rounding makes ties in both arrays
        p, t = np.round(p, decimals), np.round(t, decimals)
    return p, t


def test_correlations_match_scipy_with_ties():
    p, t = _data(200, decimals=1)
    assert len(np.unique(p)) < 100 and len(np.unique(t)) < 100
    assert srcc(p, t) == pytest.approx(spearmanr(p, t)[0], abs=1e-12)
    assert plcc(p, t) == pytest.approx(pearsonr(p, t)[0], abs=1e-12)
    assert krcc(p, t) == pytest.approx(kendalltau(p, t, variant="b")[0], abs=1e-12)
    # tau-b by hand on a tiny tied example: 4 concordant, 0 discordant, one tie in x, one in y
    assert krcc([1, 1, 2, 3], [1, 2, 3, 3]) == pytest.approx(4 / 5, abs=1e-12)


def test_krcc_robustness_rules():
    with pytest.warns(ConstantPredictionWarning):
        assert krcc([2, 2, 2], [1, 2, 3]) == 0.0
    assert math.isnan(krcc([1, 2, 3], [5, 5, 5]))
    assert math.isnan(krcc([1], [1]))
    assert krcc([1, np.inf, 2, 3], [1, 9, 2, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        krcc([1, 2, 3], [1, 2])


def test_logistic_fit_recovers_known_relation():
    x = np.linspace(-3, 3, 80)
    true = (4.5, 1.2, 0.3, 0.7)
    mos = logistic4(x, *true)
    fit = fit_logistic(x, mos)
    assert isinstance(fit, LogisticFit) and not fit.fallback
    np.testing.assert_allclose(fit(x), mos, atol=1e-6)
    assert plcc_fitted(x, mos) == pytest.approx(1.0, abs=1e-9)
    assert rmse_fitted(x, mos) == pytest.approx(0.0, abs=1e-6)
    # The raw PLCC of a saturating relation is clearly below 1; the mapping is what removes that.
    assert plcc(x, mos) < 0.99


def test_logistic_fit_is_deterministic_and_better_than_linear_on_noisy_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 300)
    mos = logistic4(x, 5, 1, 0, 0.5) + 0.1 * rng.normal(size=300)
    a, b = fit_logistic(x, mos), fit_logistic(x, mos)
    assert a.params == b.params and not a.fallback
    lin = np.polyval(np.polyfit(x, mos, 1), x)
    assert rmse_fitted(x, mos) < np.sqrt(np.mean((lin - mos) ** 2))


def test_logistic_fit_failure_falls_back_to_linear():
    fit = fit_logistic([1.0, 2.0, 3.0], [2.0, 4.0, 6.5])  # 3 points < 4 parameters
    assert fit.fallback and "failed" in fit.reason and len(fit.params) == 2
    np.testing.assert_allclose(fit.params, np.polyfit([1, 2, 3], [2, 4, 6.5], 1))
    assert plcc_fitted([1.0, 2.0, 3.0], [2.0, 4.0, 6.5]) == pytest.approx(pearsonr([1, 2, 3], [2, 4, 6.5])[0])
    const = fit_logistic([1, 1, 1, 1, 1], [1, 2, 3, 4, 5])
    assert const.fallback and const.params == (0.0, 3.0)


def test_all_metrics_keys_and_values():
    p, t = _data(150, decimals=1, seed=2)
    res = all_metrics(p, t)
    assert {"srcc", "krcc", "plcc", "plcc_fitted", "rmse_fitted", "n", "constant"} <= set(res)
    assert res["n"] == 150 and res["constant"] is False
    assert res["srcc"] == pytest.approx(spearmanr(p, t)[0])
    assert res["krcc"] == pytest.approx(kendalltau(p, t)[0])
    assert res["plcc"] == pytest.approx(pearsonr(p, t)[0])
    assert res["plcc_fitted"] == pytest.approx(plcc_fitted(p, t))
    assert res["rmse_fitted"] == pytest.approx(rmse_fitted(p, t))
    assert res["plcc_fitted"] >= res["plcc"] - 1e-9  # the fit can only help a linear-ish relation


def test_all_metrics_constant_and_tiny():
    with pytest.warns(ConstantPredictionWarning) as rec:
        res = all_metrics([3, 3, 3, 3], [1, 2, 3, 4])
    assert len(rec) == 1 and res["constant"] is True
    assert res["srcc"] == res["krcc"] == res["plcc"] == res["plcc_fitted"] == 0.0
    assert res["rmse_fitted"] == pytest.approx(np.std([1, 2, 3, 4]))
    tiny = all_metrics([1.0, np.nan], [1.0, 2.0])
    assert tiny["n"] == 1 and all(math.isnan(tiny[k]) for k in ("srcc", "krcc", "plcc", "plcc_fitted", "rmse_fitted"))


def test_vectorised_replicates_equal_scipy_on_the_same_resamples():
    p, t = _data(300, decimals=1, seed=3)
    reps = _replicates([p], t, ("srcc", "plcc", "krcc"), 7, 11)
    (idx,) = list(_resample_batches(300, 7, 11))
    for k, i in enumerate(idx):
        assert reps[(0, "srcc")][k] == pytest.approx(spearmanr(p[i], t[i])[0], abs=1e-12)
        assert reps[(0, "plcc")][k] == pytest.approx(pearsonr(p[i], t[i])[0], abs=1e-12)
        assert reps[(0, "krcc")][k] == pytest.approx(kendalltau(p[i], t[i])[0], abs=1e-12)


def test_bootstrap_ci_contains_point_narrows_with_n_and_is_seeded():
    p, t = _data(2000, seed=4)
    small = bootstrap_ci(p[:100], t[:100], n_boot=300)
    large = bootstrap_ci(p, t, n_boot=300)
    assert small[0] < srcc(p[:100], t[:100]) < small[1]
    assert large[0] < srcc(p, t) < large[1]
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])  # width ~ 1/sqrt(n): ratio ~0.22
    assert bootstrap_ci(p, t, n_boot=300) == large
    assert bootstrap_ci(p, t, n_boot=300, seed=1) != large


def test_bootstrap_metrics_share_resamples_and_handle_constants():
    p, t = _data(400, decimals=1, seed=5)
    res = bootstrap_metrics(p, t, ("srcc", "krcc", "plcc"), n_boot=200)
    for name, fn in (("srcc", srcc), ("krcc", krcc), ("plcc", plcc)):
        point, lo, hi = res[name]
        assert point == pytest.approx(fn(p, t)) and lo < point < hi
        assert bootstrap_ci(p, t, name, n_boot=200) == (lo, hi)  # same indices whatever the metric set
    # Predictions with 2 values on 6 videos: many resamples are constant and must count as 0.
    q = np.array([0, 0, 0, 0, 0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reps = _replicates([q], np.arange(6.0), ("srcc",), 400, 0)[(0, "srcc")]
    assert np.all(np.isfinite(reps)) and np.mean(reps == 0.0) > 0.2
    with pytest.warns(ConstantPredictionWarning):
        const = bootstrap_metrics([1, 1, 1, 1], [1, 2, 3, 4], ("srcc", "plcc"), n_boot=50)
    assert const == {"srcc": (0.0, 0.0, 0.0), "plcc": (0.0, 0.0, 0.0)}


def test_bootstrap_fitted_metrics_run():
    p, t = _data(60, seed=6)
    pt, lo, hi = bootstrap_metrics(p, t, ("plcc_fitted",), n_boot=30)["plcc_fitted"]
    assert lo <= pt <= hi and 0 < lo
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(p, t, "mae")


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(7)
    truth = rng.normal(size=500)
    good = truth + 0.3 * rng.normal(size=500)
    bad = truth + 1.5 * rng.normal(size=500)
    diff, lo, hi = paired_bootstrap_diff(good, bad, truth, n_boot=300)
    assert diff == pytest.approx(srcc(good, truth) - srcc(bad, truth))
    assert 0 < lo < diff < hi
    diff, lo, hi = paired_bootstrap_diff(bad, good, truth, metric="krcc", n_boot=100)
    assert lo < diff < hi < 0
    assert paired_bootstrap_diff(good, good, truth, n_boot=100) == (0.0, 0.0, 0.0)
    # A monotone transform has the same ranks: SRCC differences vanish only if both predictors
    # are scored on the same resamples (independent resamples would give a CI ~0.05 wide).
    assert paired_bootstrap_diff(good, np.exp(good), truth, n_boot=100) == (0.0, 0.0, 0.0)
    diff, lo, hi = paired_bootstrap_diff(good, np.exp(good), truth, metric="plcc", n_boot=200)
    assert lo < diff < hi and diff > 0  # the exp bends the relation, costing PLCC but not SRCC
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap_diff(good, bad[:10], truth)


def test_grouped_metrics_weights_overall_by_group_size():
    rng = np.random.default_rng(8)
    sizes = {"konvid": 300, "live": 60, "tiny": 2}
    pred, truth, groups = [], [], []
    for g, n in sizes.items():
        t = rng.normal(size=n) * (10 if g == "live" else 1)  # different MOS scales
        noise = 0.2 if g == "konvid" else 2.0
        pred.append(t / (10 if g == "live" else 1) + noise * rng.normal(size=n))
        truth.append(t)
        groups += [g] * n
    pred, truth = np.concatenate(pred), np.concatenate(truth)
    res = grouped_metrics(pred, truth, groups, min_group_size=3, n_boot=200)
    assert set(res["groups"]) == {"konvid", "live"} and res["skipped"] == {"tiny": 2}
    k, l = res["groups"]["konvid"], res["groups"]["live"]
    assert k["n"] == 300 and l["n"] == 60
    expected = (300 * k["srcc"][0] + 60 * l["srcc"][0]) / 360
    overall = res["overall"]["srcc"]
    assert overall[0] == pytest.approx(expected) and overall[1] < overall[0] < overall[2]
    assert k["srcc"][0] > l["srcc"][0]  # the weighting matters: unweighted mean would be lower
    assert overall[0] > (k["srcc"][0] + l["srcc"][0]) / 2
    assert res["overall"]["n"] == 360
    assert grouped_metrics(pred, truth, groups, n_boot=200) == res  # seeded
    with pytest.raises(ValueError, match="groups"):
        grouped_metrics(pred, truth, groups[:-1])


def test_logistic_fallbacks_when_optimiser_fails_or_gets_stuck(monkeypatch):
    import vqa.evaluation.metrics as metrics

    x = np.linspace(0, 1, 50)
    mos = 3 * x + 1

    def raises(*a, **k):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(metrics, "curve_fit", raises)
    fit = fit_logistic(x, mos)
    assert fit.fallback and "RuntimeError" in fit.reason
    assert rmse_fitted(x, mos) == pytest.approx(0.0, abs=1e-9)

    # A "converged" flat logistic is worse than a line: report the line instead.
    monkeypatch.setattr(metrics, "curve_fit", lambda *a, **k: (np.array([2.5, 2.5, 0.5, 1.0]), None))
    fit = fit_logistic(x, mos)
    assert fit.fallback and "worse" in fit.reason
    monkeypatch.setattr(metrics, "curve_fit", lambda *a, **k: (np.array([np.nan, 1, 0, 1]), None))
    assert "non-finite" in fit_logistic(x, mos).reason


def test_grouped_paired_diff_is_stratified_and_paired():
    import numpy as np

    from vqa.evaluation.metrics import grouped_paired_diff, srcc

    rng = np.random.default_rng(3)
    truth = np.tile(np.arange(20.0), 3)
    groups = np.repeat(["g1", "g2", "g3"], 20)
    good = truth + rng.normal(0, 2, 60)
    bad = truth + rng.normal(0, 12, 60)
    diff, low, high = grouped_paired_diff(good, bad, truth, groups, n_boot=300, seed=0)
    expected = np.mean([srcc(good[groups == g], truth[groups == g]) - srcc(bad[groups == g], truth[groups == g])
                        for g in ("g1", "g2", "g3")])
    assert diff == pytest.approx(expected) and 0 < low <= diff <= high
    same = grouped_paired_diff(good, good, truth, groups, n_boot=100, seed=0)
    assert same == (0.0, 0.0, 0.0)
    # A group too small for a correlation drops out of both the point and the replicates.
    small = np.array(["g1"] * 58 + ["tiny"] * 2)
    d2, _, _ = grouped_paired_diff(good, bad, truth, small, n_boot=50, seed=0)
    assert d2 == pytest.approx(srcc(good[:58], truth[:58]) - srcc(bad[:58], truth[:58]))
