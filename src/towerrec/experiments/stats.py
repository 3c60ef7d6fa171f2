"""Paired significance of per-user metric differences (EVALUATION.md, "Significance").

Two models evaluated on the same users give two per-user vectors; their difference is what we
test. The paired t-test answers "is the mean difference zero?" and gives the 95% CI reported next
to it; the Wilcoxon signed-rank test does not assume normal differences (per-user NDCG is far from
normal: many users score exactly 0). Comparing several models with one reference is a family of
tests, so p-values get Holm's step-down correction, which controls the family-wise error rate
without assuming independence and is uniformly more powerful than Bonferroni.

A comparison is marked significant only when *both* Holm-adjusted p-values are below alpha: the
two tests then agree, which is the claim a reader can rely on.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order (NaN stays NaN and does not count in m).

    Sorted ascending p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True)
class PairedTest:
    """`model - reference` on `n_users` paired per-user values."""

    n_users: int
    mean_model: float
    mean_reference: float
    diff: float
    ci_low: float
    ci_high: float
    p_ttest: float
    p_wilcoxon: float


def paired_test(model: np.ndarray, reference: np.ndarray, confidence: float = 0.95) -> PairedTest:
    """Paired t-test (with the CI of the mean difference) and Wilcoxon signed-rank test.

    Wilcoxon uses scipy's default `zero_method="wilcox"`: users with no difference carry no
    information about its sign and are dropped. Identical vectors give p = 1 and a zero-width CI.
    """
    a, b = np.asarray(model, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    d = a - b
    if n < 2:
        nan = float("nan")
        return PairedTest(n, float(a.mean()) if n else nan, float(b.mean()) if n else nan,
                          float(d.mean()) if n else nan, nan, nan, nan, nan)
    if not np.any(d):
        return PairedTest(n, float(a.mean()), float(b.mean()), 0.0, 0.0, 0.0, 1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant non-zero differences: t is infinite
        t = stats.ttest_rel(a, b)
        ci = t.confidence_interval(confidence)
        w = stats.wilcoxon(a, b)
    return PairedTest(n, float(a.mean()), float(b.mean()), float(d.mean()), float(ci.low), float(ci.high),
                      float(t.pvalue), float(w.pvalue))


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t CI of a mean, [lo, hi] (for the bars of the report)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def compare_with_reference(per_user: pd.DataFrame, reference: str, *, alpha: float = 0.05,
                           confidence: float = 0.95) -> pd.DataFrame:
    """Each column of `per_user` (users x models, one metric) against the `reference` column.

    Pairs are the users where both values exist. Holm runs separately over the t-test and the
    Wilcoxon p-values of the family (every model but the reference). One row per compared model.
    """
    if reference not in per_user.columns:
        raise KeyError(f"reference {reference!r} is not a column of the per-user table")
    rows = []
    for label in per_user.columns:
        if label == reference:
            continue
        pair = per_user[[label, reference]].dropna()
        test = paired_test(pair[label].to_numpy(), pair[reference].to_numpy(), confidence)
        rows.append({"model": label, "reference": reference, **asdict(test)})
    columns = ["model", "reference", *PairedTest.__dataclass_fields__, "p_ttest_holm", "p_wilcoxon_holm",
               "significant"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    frame["p_ttest_holm"] = holm(frame["p_ttest"].to_numpy())
    frame["p_wilcoxon_holm"] = holm(frame["p_wilcoxon"].to_numpy())
    frame["significant"] = (frame["p_ttest_holm"] < alpha) & (frame["p_wilcoxon_holm"] < alpha)
    return frame[columns]
