"""Paired statistics of the comparison, on fixed numbers (checked against SciPy)."""

from __future__ import annotations

import pytest
from scipy import stats

from discomkd.training.significance import (
    HELPS,
    HURTS,
    NO_EVIDENCE,
    paired_difference,
    student_t_quantile,
    wilcoxon_signed_rank_p,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 9, 19, 30])
def test_t_quantile_matches_scipy(df):
    assert student_t_quantile(0.95, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)
    assert student_t_quantile(0.99, df) == pytest.approx(stats.t.ppf(0.995, df), rel=1e-9)


@pytest.mark.parametrize("diffs", [
    [0.031, 0.012, 0.044, 0.027, 0.019],  # all positive: the smallest p five seeds allow
    [0.031, -0.012, 0.044, 0.027, -0.019],
    [0.5, -1.0, 1.5, -2.0, 2.5, 3.0, -3.5],
    [0.01, 0.02, -0.03],
])
def test_wilcoxon_matches_scipy_exact(diffs):
    assert wilcoxon_signed_rank_p(diffs) == pytest.approx(stats.wilcoxon(diffs, method="exact").pvalue, rel=1e-12)


def test_wilcoxon_drops_zeros_and_handles_ties():
    # Ties share their mean rank; zeros are dropped (SciPy's default zero_method="wilcox").
    # [0, 1, 1, 2]: ranks 1.5, 1.5, 3, all positive: only 1 of the 2^3 sign patterns is as extreme.
    assert wilcoxon_signed_rank_p([0.0, 1.0, 1.0, 2.0]) == pytest.approx(0.25)
    assert wilcoxon_signed_rank_p([1.0, 1.0, -2.0]) == pytest.approx(1.0)
    assert wilcoxon_signed_rank_p([0.0, 0.0]) is None


def test_paired_difference_on_fixed_numbers():
    method = [0.62, 0.60, 0.65, 0.58, 0.61]
    student = [0.59, 0.585, 0.61, 0.555, 0.59]
    diff = paired_difference(method, student)
    d = [a - b for a, b in zip(method, student)]
    low, high = stats.t.interval(0.95, len(d) - 1, loc=stats.tmean(d), scale=stats.sem(d))
    assert diff.mean == pytest.approx(0.026)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert diff.wilcoxon_p == pytest.approx(0.0625)
    assert diff.verdict == HELPS
    assert diff.describe().startswith("+2.6 points (95% CI +1.")
    assert diff.describe().endswith("5 seeds): helps")


def test_verdicts_read_the_interval():
    assert paired_difference([0.5, 0.52, 0.49], [0.55, 0.56, 0.54]).verdict == HURTS
    assert paired_difference([0.55, 0.50, 0.60], [0.54, 0.55, 0.55]).verdict == NO_EVIDENCE
    one = paired_difference([0.7], [0.6])
    assert one.verdict == NO_EVIDENCE and one.describe() == "+10.0 points (1 seed, no interval): no evidence"
    with pytest.raises(ValueError):
        paired_difference([0.7, 0.8], [0.6])
