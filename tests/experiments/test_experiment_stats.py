"""Significance: Holm by hand, paired tests against scipy and against the textbook formulas."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from towerrec.experiments.stats import compare_with_reference, holm, mean_ci, paired_test


def test_holm_matches_a_hand_computed_case():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_ignores_nan():
    out = holm([0.4, np.nan, 0.3])  # m = 2: 0.3*2 = 0.6, 0.4*1 -> max(0.6, 0.4) = 0.6
    assert out[0] == pytest.approx(0.6) and np.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]).shape == (0,)


def test_paired_test_agrees_with_scipy_and_the_t_formula():
    rng = np.random.default_rng(0)
    ref = rng.random(200)
    model = np.clip(ref + rng.normal(0.03, 0.1, 200), 0, 1)
    result = paired_test(model, ref)
    d = model - ref
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert result.n_users == 200
    assert result.diff == pytest.approx(d.mean())
    assert (result.ci_low, result.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert result.p_ttest == pytest.approx(stats.ttest_rel(model, ref).pvalue)
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(model, ref).pvalue)
    assert result.p_ttest < 0.05 and result.ci_low > 0


def test_identical_vectors_are_not_different():
    x = np.array([0.1, 0.5, 0.0, 0.3])
    result = paired_test(x, x.copy())
    assert (result.diff, result.ci_low, result.ci_high, result.p_ttest, result.p_wilcoxon) == (0, 0, 0, 1, 1)


def test_mean_ci_matches_the_formula():
    x = np.array([0.0, 1.0, 0.5, 0.25, np.nan])
    lo, hi = mean_ci(x)
    v = x[:4]
    half = stats.t.ppf(0.975, 3) * v.std(ddof=1) / 2
    assert (lo, hi) == pytest.approx((v.mean() - half, v.mean() + half))


def test_compare_with_reference_pairs_users_and_corrects_the_family():
    rng = np.random.default_rng(1)
    n = 300
    ref = rng.random(n)
    table = pd.DataFrame({
        "ref": ref,
        "better": np.clip(ref + 0.1 + rng.normal(0, 0.05, n), 0, 1),
        "same": np.clip(ref + rng.normal(0, 0.05, n), 0, 1),
    }, index=[f"u{i}" for i in range(n)])
    table.loc["u0", "same"] = np.nan  # a user missing for one model drops out of that pair only
    out = compare_with_reference(table, "ref").set_index("model")
    assert list(out.index) == ["better", "same"]
    assert out.loc["better", "n_users"] == n and out.loc["same", "n_users"] == n - 1
    assert bool(out.loc["better", "significant"]) and not bool(out.loc["same", "significant"])
    assert out["p_ttest_holm"].to_numpy() == pytest.approx(holm(out["p_ttest"].to_numpy()))
    assert out["p_wilcoxon_holm"].to_numpy() == pytest.approx(holm(out["p_wilcoxon"].to_numpy()))
    pair = table[["same", "ref"]].dropna()
    assert out.loc["same", "p_ttest"] == pytest.approx(stats.ttest_rel(pair["same"], pair["ref"]).pvalue)


def test_significance_needs_both_tests():
    # 29 users slightly better, one much worse: the signs (Wilcoxon) say "better", the mean (t) does not
    diffs = np.array([0.01] * 29 + [-0.5])
    ref = np.full(30, 0.5)
    out = compare_with_reference(pd.DataFrame({"ref": ref, "m": ref + diffs}), "ref").iloc[0]
    assert out["p_wilcoxon_holm"] < 0.05 and out["p_ttest_holm"] >= 0.05
    assert not out["significant"]
