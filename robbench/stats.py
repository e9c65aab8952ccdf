"""The statistics the boards show: how precise an accuracy is, and whether two models really differ.

- ``wilson_interval``: the 95 % Wilson score interval of a binomial proportion (good coverage even
  near 0 % and 100 %, where the normal approximation collapses to a point).
- ``mcnemar_p``: the exact two-sided McNemar test on paired per-example outcomes of two models on
  the same examples: under the null hypothesis the discordant examples (robust for one model
  only) split as Binomial(b + c, 1/2). Exact, because boards often have few discordant examples.

Both come from scipy rather than being written here.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
ALPHA = 0.05


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) as fractions."""
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_p(first: np.ndarray, second: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of two boolean outcome vectors over the same examples."""
    if first.shape != second.shape:
        raise ValueError("McNemar's test needs outcomes on the same examples")
    only_first = int((first & ~second).sum())
    only_second = int((second & ~first).sum())
    if only_first + only_second == 0:
        return 1.0
    return float(binomtest(only_first, only_first + only_second, 0.5).pvalue)


def below_reported_p(successes: int, n: int, reported: float) -> float:
    """Exact one-sided p-value of H0 "true accuracy = ``reported``" against "less", given ``successes`` of ``n``."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    return float(binomtest(successes, n, reported, alternative="less").pvalue)
