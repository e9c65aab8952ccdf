"""``tsipras``: the distribution of Tsipras et al. (2019), on which robustness provably costs accuracy.

y is uniform in {-1, +1} (class labels 0/1); x1 = y with probability p, else -y ("robust but
weakly predictive"); x2..x_{d+1} ~ N(eta·y, 1) ("non-robust but together highly predictive").
An L-inf adversary with eps = 2·eta can flip the mean of the weak features.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import RobbenchError
from ..threat_models import linf
from . import DATASETS, Dataset

_SPLIT_STREAM = {"train": 0, "test": 1}


def sample_tsipras(n: int, d: int, p: float, eta: float, seed: int, stream: int = 0):
    """n samples as (x float32 (n, d+1), y int64 in {0, 1}); deterministic for (seed, stream)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    sign = rng.choice(np.array([-1.0, 1.0]), size=n)
    flip = rng.random(n) >= p
    x1 = np.where(flip, -sign, sign)
    weak = rng.normal(loc=eta * sign[:, None], scale=1.0, size=(n, d))
    x = np.concatenate([x1[:, None], weak], axis=1).astype(np.float32)
    y = (sign > 0).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


@DATASETS.register("tsipras")
def tsipras(
    d: int = 100, p: float = 0.95, eta: float | None = None, n: int = 10_000, seed: int = 0, data_dir: str | None = None
) -> Dataset:
    """Tsipras et al. (2019) synthetic trade-off distribution; unbounded real inputs, 2 classes."""
    eta = 3.0 / math.sqrt(d) if eta is None else float(eta)
    if d < 1 or not 0.5 < p < 1 or eta <= 0 or n < 1:
        raise RobbenchError(f"tsipras needs d >= 1, 0.5 < p < 1, eta > 0, n >= 1; got d={d}, p={p}, eta={eta}, n={n}")
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
