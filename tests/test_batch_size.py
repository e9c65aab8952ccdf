"""``--batch-size auto`` and running out of device memory: a number in the record, a one-line remedy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robbench import evaluate
from robbench.attacks import AttackRules, create_attack
from robbench.config import load_model_spec
from robbench.errors import RobbenchError
from robbench.evaluation import CPU_BATCH_SIZE, auto_batch_size, largest_fitting_batch, run_attacks
from robbench.loader import load_submission
from robbench.threat_models import get_threat_model


@pytest.mark.parametrize("fits_up_to, limit, expected", [(300, 1000, 256), (10**6, 100, 100), (10**6, 20, 20), (31, 1000, 0)])
def test_largest_fitting_batch_doubles_from_32_up_to_the_limit(fits_up_to, limit, expected):
    tried: list[int] = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= fits_up_to

    assert largest_fitting_batch(fits, limit) == expected
    assert tried == sorted(set(tried)) and tried[0] == min(32, limit), "doubling, never the same size twice"


def test_auto_is_a_fixed_number_off_cuda_and_the_record_holds_it(linear_submission, tmp_path):
    assert auto_batch_size(nn.Linear(2, 2), torch.zeros(1, 2), torch.device("cpu"), 10_000) == CPU_BATCH_SIZE == 500
    (record,) = evaluate(linear_submission, threat_models="linf", attacks=[], n_examples=20, device="cpu", results_dir=tmp_path)
    assert record.batch_size == 500


class OutOfMemoryAbove(nn.Module):
    """``model``, except that it runs out of memory on batches larger than ``limit`` (with autograd only, if ``attacks_only``)."""

    def __init__(self, model: nn.Module, limit: int, attacks_only: bool):
        super().__init__()
        self.model, self.limit, self.attacks_only = model, limit, attacks_only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit and (torch.is_grad_enabled() or not self.attacks_only):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


@pytest.mark.parametrize("attacks_only, message", [
    (False, "cpu ran out of memory classifying batches of 16; rerun with --batch-size 8"),
    (True, "cpu ran out of memory in pgd: pgd with batches of 16; rerun with --batch-size 8"),
])
def test_out_of_memory_names_the_batch_size_to_use(linear_submission, attacks_only, message):
    loaded = load_submission(load_model_spec(linear_submission))
    x, y = loaded.dataset.load("test", 40)  # the linear model gets most right: PGD attacks batches of 16
    with pytest.raises(RobbenchError) as error:
        run_attacks(
            OutOfMemoryAbove(loaded.model, 8, attacks_only), x, y,
            rules=AttackRules.for_dataset(loaded.dataset, get_threat_model(loaded.dataset, "linf")),
            attacks=[create_attack("pgd")], batch_size=16,
        )
    assert str(error.value) == message
