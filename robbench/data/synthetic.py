"""``tsipras``: the distribution of Tsipras et al. (2019), on which robustness provably costs accuracy.

y is uniform in {-1, +1} (class labels 0/1); x1 = y with probability p, else -y ("robust but
weakly predictive"); x2..x_{d+1} ~ N(eta·y, 1) ("non-robust but together highly predictive").
An L-inf adversary with eps = 2·eta can flip the mean of the weak features.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import RobbenchError, quoted
from ..threat_models import linf
from . import DATASETS, Dataset

_SPLIT_STREAM = {"train": 0, "test": 1}
#: the most numbers one split may hold (400 MB of float32): parameters are data, memory is not theirs to claim
MAX_VALUES = 10**8


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sample_tsipras(n: int, d: int, p: float, eta: float, seed: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples as (x float32 (n, d+1), y int64 in {0, 1}); deterministic for (seed, stream)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    sign = rng.choice(np.array([-1.0, 1.0]), size=n)
    flip = rng.random(n) >= p
    x1 = np.where(flip, -sign, sign)
    weak = rng.normal(loc=eta * sign[:, None], scale=1.0, size=(n, d))
    x = np.concatenate([x1[:, None], weak], axis=1).astype(np.float32)
    y = (sign > 0).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


@DATASETS.register("tsipras", hub_params=("d", "p", "eta", "n", "seed"))
def tsipras(
    d: int = 100, p: float = 0.95, eta: float | None = None, n: int = 10_000, seed: int = 0, data_dir: str | None = None
) -> Dataset:
    """Tsipras et al. (2019) synthetic trade-off distribution; unbounded real inputs, 2 classes."""
    if _is_integer(d) and d >= 1 and eta is None:
        eta = 3.0 / math.sqrt(d)
    integers = all(_is_integer(v) for v in (d, n, seed))
    reals = all(_is_integer(v) or isinstance(v, float) for v in (p, eta))
    if not (
        integers and reals and d >= 1 and n >= 1 and seed >= 0 and n * (d + 1) <= MAX_VALUES
        and 0.5 < p < 1 and math.isfinite(eta) and eta > 0
    ):
        raise RobbenchError(
            f"tsipras needs integers d >= 1, n >= 1 and seed >= 0 with n·(d+1) <= {MAX_VALUES:.0e}, 0.5 < p < 1 and a "
            f"finite eta > 0; got d={quoted(d)}, p={quoted(p)}, eta={quoted(eta)}, n={quoted(n)}, seed={quoted(seed)}"
        )
    eta = float(eta)
    params = {"d": d, "p": p, "eta": eta, "n": n, "seed": seed}
    return Dataset(
        name="tsipras",
        input_shape=(d + 1,),
        num_classes=2,
        value_range=None,
        test_size=n,
        params=params,
        threat_models=(linf(2.0 * eta),),  # the adversary of Theorem 2.1
        loader=lambda split: sample_tsipras(n, d, p, eta, seed, _SPLIT_STREAM[split]),
    )
