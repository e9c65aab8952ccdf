"""RobustBench's ``benchmark(model, dataset=..., threat_model=...)``: evaluate an ``nn.Module`` without files.

The model goes through the same pipeline as ``evaluate`` (same attacks, checks, flags and record),
with nothing written to disk, on the dataset's test split or on the caller's own ``(x, y)``. Its
record's checkpoint says ``in-memory`` and carries the state dict's canonical digest
(``state_dict_sha256``), so a record of a model that was never saved still names its weights exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .evaluation import ProgressFactory
    from .loader import LoadedModel
    from .results import EvalRecord
    from .run_options import RunOptions

IN_MEMORY = "in-memory"  # the record's checkpoint path for a model evaluated by ``benchmark``
DEFAULT_NAME = "in-memory-model"


def state_dict_sha256(model: "nn.Module") -> str:
    """SHA-256 of the state dict saved as safetensors (no metadata): equal weights give equal digests.

    It is the SHA-256 of the file ``safetensors.torch.save_file(model.state_dict(), path)`` writes.
    """
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    return hashlib.sha256(save(tensors)).hexdigest()


def benchmark(
    model: "nn.Module | str",
    *,
    dataset: str,
    threat_model: str,
    x: "torch.Tensor | None" = None,
    y: "torch.Tensor | None" = None,
    return_adversarial: bool = False,
    name: str | None = None,
    model_name: str | None = None,
    to_disk: "bool | str | Path" = False,
    dataset_kwargs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    options: "RunOptions | None" = None,
    eps: float | None = None,
    progress: "ProgressFactory | None" = None,
    **option_values: Any,
) -> "EvalRecord | tuple[EvalRecord, torch.Tensor]":
    """The record ``evaluate`` would give this model under ``threat_model`` of ``dataset``.

    ``model`` takes inputs in the dataset's range ([0, 1] pixels) and returns logits; any
    normalisation is its own. It is moved to the device and put in eval mode. A name (a committed
    submission, a model.yaml, an ``hf://`` reference) evaluates that model, as ``robbench.evaluate``.
    ``options`` (a ``RunOptions``) and ``option_values`` (its fields as keywords: attacks, n_examples,
    batch_size, device, seed, data_dir) are ``evaluate``'s, and so are ``eps`` and ``progress``; ``adaptive``
    is refused (it writes several records: call ``robbench.evaluate``).
    RobustBench's spellings are accepted: ``model_name=`` names the record (``name=``), ``threat_model="Linf"``,
    and ``to_disk=True`` (or a folder) writes the record and its adversarial examples to ``results/`` (or
    that folder); without it nothing is written.

    The record unpacks as RobustBench's pair: ``clean, robust = benchmark(...)``.
    ``x``, ``y``: your own examples (inputs in the dataset's shape and range, integer labels) instead of
    the dataset's test split, which is then never loaded; ``dataset`` still sets the domain (shape, classes,
    value range, standard radius). Such a record says ``examples.split == "user-supplied"`` with the
    tensors' digest (``config.data_sha256``) and stays in memory: ``to_disk`` is refused, the store
    neither writes nor shows it, and ``verify`` cannot check it without the tensors (no board compares
    models on examples others do not have).
    ``return_adversarial=True`` returns ``(record, x_adv)``, ``x_adv`` aligned with the evaluated inputs as
    AutoAttack's ``run_standard_evaluation`` returns it: each broken example's verified adversarial input,
    every other example unchanged.
    """
    from pydantic import ValidationError

    from .checkpoints import count_parameters
    from .config import Metadata, ModelSpec
    from .errors import RobbenchError, describe_validation_error
    from .pipeline import evaluate_runs
    from .loader import LoadedModel, dataset_of, load_submission
    from .results import Checkpoint
    from .run_options import RunOptions
    from .zoo import model_spec

    options = RunOptions.of(options, **option_values)
    if options.results_dir is not None:
        raise RobbenchError("benchmark() takes to_disk=FOLDER (or True, for results/) where evaluate takes results_dir")
    if (x is None) != (y is None):
        raise RobbenchError("pass both x= (the inputs) and y= (their labels), or neither for the dataset's test split")
    if x is not None and to_disk:
        raise RobbenchError("a record of your own x, y stays in memory (no board compares models on examples others do "
                            "not have); drop to_disk, or evaluate the dataset's test split without x, y")
    if to_disk:
        options = RunOptions.of(options, results_dir=Path("results") if to_disk is True else Path(to_disk))
    if name is not None and model_name is not None:
        raise RobbenchError("name the record once: name= or model_name=, not both")
    if options.adaptive is not None:
        raise RobbenchError("benchmark() returns one record; call robbench.evaluate for the escalation records of adaptive")
    if isinstance(model, (str, Path)):
        target = model if x is None else load_submission(model_spec(model), options.data_dir)
    else:
        try:
            spec = ModelSpec(
                name=name or model_name or DEFAULT_NAME, dataset=dataset, dataset_kwargs=dataset_kwargs or {},
                architecture=type(model).__name__, checkpoint=IN_MEMORY, metadata=Metadata(**(metadata or {})),
            )
        except ValidationError as exc:
            raise RobbenchError(describe_validation_error("benchmark()", exc)) from exc
        target = LoadedModel(
            spec, model, dataset_of(spec, options.data_dir), Checkpoint(path=IN_MEMORY, sha256=state_dict_sha256(model)),
            count_parameters(model),
        )
    if x is not None:
        target = with_user_examples(target, x, y)
    [run] = evaluate_runs(target, options, threat_models=[threat_model], eps=eps, progress=progress)
    return (run.record, run.adversarial_inputs()) if return_adversarial else run.record


def with_user_examples(loaded: "LoadedModel", x: "torch.Tensor", y: "torch.Tensor") -> "LoadedModel":
    """``loaded`` evaluated on the caller's ``(x, y)`` instead of its dataset's test split, both checked first."""
    import torch

    from .errors import RobbenchError
    from .results import USER_SUPPLIED

    dataset = loaded.dataset
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise RobbenchError(f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}")
    expected = ", ".join(["N", *map(str, dataset.input_shape)])
    if not x.is_floating_point() or tuple(x.shape[1:]) != dataset.input_shape or x.shape[0] == 0:
        raise RobbenchError(f"x must be a non-empty float tensor of shape ({expected}) for {dataset.name}; "
                            f"got {x.dtype} of shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise RobbenchError(f"y must hold one integer label per row of x ({x.shape[0]}); got {y.dtype} of shape {tuple(y.shape)}")
    x, y = x.detach().to("cpu", torch.float32), y.detach().to("cpu", torch.int64)
    if not torch.isfinite(x).all():
        raise RobbenchError("x holds NaN or infinite values")
    if dataset.value_range is not None:
        low, high = dataset.value_range
        if float(x.min()) < low or float(x.max()) > high:
            raise RobbenchError(f"x lies in [{float(x.min()):g}, {float(x.max()):g}], outside {dataset.name}'s value range "
                                f"[{low:g}, {high:g}]; pass unnormalised inputs (normalisation belongs inside the model)")
    if int(y.min()) < 0 or int(y.max()) >= dataset.num_classes:
        raise RobbenchError(f"y holds labels outside 0..{dataset.num_classes - 1}, the classes of {dataset.name}")
    examples = replace(dataset, loader=lambda split: (x, y), test_size=int(y.shape[0]))
    return replace(loaded, dataset=examples, split=USER_SUPPLIED)
