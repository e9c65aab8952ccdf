"""The statistics the boards show: how precise an accuracy is, and whether two models really differ.

- ``wilson_interval``: the 95 % Wilson score interval of a binomial proportion (good coverage even
  near 0 % and 100 %, where the normal approximation collapses to a point).
- ``mcnemar_p``: the exact two-sided McNemar test on paired per-example outcomes of two models on
  the same examples: under the null hypothesis the discordant examples (robust for one model
  only) split as Binomial(b + c, 1/2). Exact, because boards often have few discordant examples.
- ``same_rate_p``: Fisher's exact test that two counts of successes come from one rate (``robbench
  verify`` on a randomized model's re-verification rate).

The McNemar p-value comes from scipy (``binomtest``), cached per (discordant, total) pair. The
Wilson interval is its closed form with scipy's normal quantile: ``binomtest(...).proportion_ci``
gives the same bounds but first computes a p-value by a binary search (14 ms a call), which made it
most of a board render's time (``benchmarks/boards.py``).
"""

from __future__ import annotations

from functools import lru_cache
from math import sqrt

import numpy as np
from scipy.stats import binomtest, fisher_exact, norm

CONFIDENCE = 0.95
ALPHA = 0.05


@lru_cache(maxsize=None)
def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) as fractions: the Wilson score interval without continuity correction (Wilson 1927)."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding never leaves p outside


def mcnemar_p(first: np.ndarray, second: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of two boolean outcome vectors over the same examples."""
    if first.shape != second.shape:
        raise ValueError("McNemar's test needs outcomes on the same examples")
    only_first = int((first & ~second).sum())
    only_second = int((second & ~first).sum())
    if only_first + only_second == 0:
        return 1.0
    return _sign_test_p(only_first, only_first + only_second)


@lru_cache(maxsize=None)
def _sign_test_p(successes: int, n: int) -> float:
    return float(binomtest(successes, n, 0.5).pvalue)


def below_reported_p(successes: int, n: int, reported: float) -> float:
    """Exact one-sided p-value of H0 "true accuracy = ``reported``" against "less", given ``successes`` of ``n``."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    return float(binomtest(successes, n, reported, alternative="less").pvalue)


def same_rate_p(successes: int, n: int, other_successes: int, other_n: int) -> float:
    """Two-sided p-value of Fisher's exact test that ``successes`` of ``n`` and ``other_successes`` of ``other_n``
    share one success rate.

    Where the trials are not alike (a randomized model's breaks, each with its own chance to re-verify) but
    both samples try every one of them equally often, the spread of the difference is at most the binomial
    one, so the test errs on the side of agreement.
    """
    for wins, total in ((successes, n), (other_successes, other_n)):
        if not 0 <= wins <= total or total < 1:
            raise ValueError(f"need 0 <= successes <= n and n >= 1, got {wins} of {total}")
    table = [[successes, n - successes], [other_successes, other_n - other_successes]]
    return float(fisher_exact(table).pvalue)
