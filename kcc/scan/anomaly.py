"""Is one class's statistic an outlier among the others? The order-statistic test of MM-BD.

Given one non-negative statistic per class, large meaning suspicious (`r_1, ..., r_K`), the
classes are tested from the largest down. For the `i`-th largest, a gamma distribution `F`
(location 0) is fitted to the statistics of the classes not yet flagged, without the `i`
largest, and

    p_i = 1 - F(r_(i)) ** (K - i + 1),

the probability that the largest of `K - i + 1` draws from `F` is at least `r_(i)`. A class
whose statistic is less than `min_ratio` times the median of that null gets p = 1: when the
other classes' statistics are tightly clustered the fitted gamma has a thin tail and a class a
few percent above them would otherwise be "significant" without standing out. Testing
stops at the first class that is not flagged at level `alpha`, so a clean model's classes are
all "unflagged" and several targets can be found one after another (step-down).

Reference: Wang, Miller and Kesidis, "MM-BD", IEEE S&P 2024 (the null and p-value, for the
largest statistic; the step-down continuation for several targets is kcc's).
"""

import warnings

import numpy as np
from scipy import stats as scipy_stats

#: Fewest null samples a gamma fit is made from; with fewer the p-value is 1 (no evidence).
MIN_NULL = 3


def gamma_tail(null, value, draws=1):
    """`1 - F(value) ** draws` for a gamma `F` (location 0) fitted to the samples `null`.

    Returns 1.0 (no evidence) when `null` has fewer than `MIN_NULL` finite samples or no spread.
    """
    null = np.asarray(null, np.float64)
    if len(null) < MIN_NULL or not np.all(np.isfinite(null)) or np.ptp(null) <= 0:
        return 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:  # maximum likelihood, as MM-BD
            shape, _, scale = scipy_stats.gamma.fit(np.maximum(null, 1e-12), floc=0)
        except (ValueError, RuntimeError, FloatingPointError):  # e.g. a statistic of exactly 0
            shape, scale = np.mean(null) ** 2 / np.var(null), np.var(null) / np.mean(null)
        tail = float(-np.expm1(draws * scipy_stats.gamma.logcdf(value, shape, 0, scale)))
    return tail if np.isfinite(tail) else 1.0


def p_values(statistics, alpha=0.05, max_targets=None, min_ratio=1.0):
    """Order-statistic p-values of every class, largest statistic first (see the module doc).

    Args:
        statistics: `(K,)`, larger = more suspicious; negative values and NaN count as 0.
        alpha: level at which a class is flagged and the step-down continues.
        max_targets: stop after this many flagged classes (default `K // 2`).
        min_ratio: smallest ratio of a class's statistic to the median of its null for a
            p-value below 1 (1: no floor).

    Returns:
        `(p, flagged)`: float64 `(K,)` p-values and the flagged class indices, most suspicious
        first. A class is never given a smaller p-value than a class with a larger statistic;
        the classes after the one that stopped the step-down are tested against that test's
        null.
    """
    s = np.maximum(np.nan_to_num(np.asarray(statistics, np.float64), nan=0.0), 0.0)
    k = len(s)
    max_targets = k // 2 if max_targets is None else max_targets
    order = np.argsort(-s, kind="stable")
    p = np.ones(k)
    flagged = []
    for i, cls in enumerate(order):
        null = s[order[i + 1:]]
        p[cls] = max(_tail(null, s[cls], k - i, min_ratio), p[order[i - 1]] if i else 0.0)
        if p[cls] >= alpha or len(flagged) >= max_targets:
            for rest in order[i + 1:]:
                p[rest] = max(p[cls], _tail(null, s[rest], k - i, min_ratio))
            break
        flagged.append(int(cls))
    return p, flagged


def _tail(null, value, draws, min_ratio):
    if len(null) and value < min_ratio * np.median(null):
        return 1.0
    return gamma_tail(null, value, draws)
