"""Paired comparison of two methods over the same random splits: difference, interval, verdict.

Each seed gives both methods the same train/validation/test samples, so the per-seed differences
are paired observations. We report their mean with a Student-t 95% interval and the two-sided
exact Wilcoxon signed-rank p-value. The t quantile and the Wilcoxon distribution are computed here
(exactly, for the small seed counts a comparison has) rather than with SciPy, which would add about
100 MB to the double-click application for two functions; tests check both against SciPy.

A verdict reads the interval only: "helps" when it lies above 0, "hurts" when below, otherwise
"no evidence". With 5 seeds the Wilcoxon test cannot go below p = 0.0625 whatever the data: it
is shown as a second opinion, not used for the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HELPS, HURTS, NO_EVIDENCE = "helps", "hurts", "no evidence"


def student_t_two_sided_probability(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` degrees of freedom (Abramowitz & Stegun 26.7.3-4)."""
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    t = abs(t)
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):  # c, (2/3) c^3, (2*4)/(3*5) c^5, ...
            total += term
            term *= c * c * (2 * k) / (2 * k + 1)
        return (2.0 / math.pi) * (theta + s * total) if df > 1 else 2.0 * theta / math.pi
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):  # 1, (1/2) c^2, (1*3)/(2*4) c^4, ...
        total += term
        term *= c * c * (2 * k - 1) / (2 * k)
    return s * total


def student_t_quantile(confidence: float, df: int) -> float:
    """The t such that P(|T| < t) = ``confidence`` (e.g. 2.776 for 0.95 and df = 4), by bisection."""
    lo, hi = 0.0, 1.0
    while student_t_two_sided_probability(hi, df) < confidence:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_two_sided_probability(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _average_ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0  # ties share the mean of their ranks
        i = j + 1
    return ranks


def wilcoxon_signed_rank_p(differences: list[float]) -> float | None:
    """Two-sided exact p-value of the Wilcoxon signed-rank test (zeros dropped, ties by average rank).

    The null distribution of W+ is enumerated over the 2^n sign patterns by dynamic programming on
    doubled ranks (integers even with ties). None when no difference is non-zero.
    """
    d = [x for x in differences if x != 0]
    n = len(d)
    if n == 0:
        return None
    doubled = [int(round(2 * r)) for r in _average_ranks([abs(x) for x in d])]
    w_plus = sum(r for r, x in zip(doubled, d) if x > 0)
    counts = {0: 1}  # sum of doubled ranks of the positive signs -> number of sign patterns
    for r in doubled:
        nxt = dict(counts)
        for s, c in counts.items():
            nxt[s + r] = nxt.get(s + r, 0) + c
        counts = nxt
    total = 2 ** n
    below = sum(c for s, c in counts.items() if s <= w_plus) / total
    above = sum(c for s, c in counts.items() if s >= w_plus) / total
    return min(1.0, 2.0 * min(below, above))


@dataclass
class PairedDifference:
    """Method minus reference over paired seeds, in the metric's own units (F1 from 0 to 1)."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    wilcoxon_p: float | None
    verdict: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def describe(self, scale: float = 100.0, unit: str = " points") -> str:
        """One line, e.g. '+3.1 points (95% CI +1.2 to +5.0, Wilcoxon p 0.06, 5 seeds): helps'."""
        if self.n < 2:
            return f"{scale * self.mean:+.1f}{unit} (1 seed, no interval): {self.verdict}"
        p = f", Wilcoxon p {self.wilcoxon_p:.3g}" if self.wilcoxon_p is not None else ""
        return (f"{scale * self.mean:+.1f}{unit} (95% CI {scale * self.ci_low:+.1f} to {scale * self.ci_high:+.1f}"
                f"{p}, {self.n} seeds): {self.verdict}")


def paired_difference(method: list[float], reference: list[float], confidence: float = 0.95) -> PairedDifference:
    """Mean of ``method[i] - reference[i]`` with a Student-t interval, Wilcoxon p and verdict."""
    if len(method) != len(reference):
        raise ValueError("paired values need the same number of seeds on both sides")
    diffs = [a - b for a, b in zip(method, reference)]
    n = len(diffs)
    if n == 0:
        raise ValueError("no paired values")
    mean = sum(diffs) / n
    if n < 2:
        return PairedDifference(n, mean, float("-inf"), float("inf"), None, NO_EVIDENCE)
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1))
    half = student_t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = HELPS if low > 0 else HURTS if high < 0 else NO_EVIDENCE
    return PairedDifference(n, mean, low, high, wilcoxon_signed_rank_p(diffs), verdict)
