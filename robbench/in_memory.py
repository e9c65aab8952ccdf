"""RobustBench's ``benchmark(model, dataset=..., threat_model=...)``: evaluate an ``nn.Module`` without files.

The model goes through the same pipeline as ``evaluate`` (same attacks, checks, flags and record),
with nothing written to disk. Its record's checkpoint says ``in-memory`` and carries the state
dict's canonical digest (``state_dict_sha256``), so a record of a model that was never saved still
names its weights exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from .evaluation import ProgressFactory
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
    name: str | None = None,
    model_name: str | None = None,
    to_disk: "bool | str | Path" = False,
    dataset_kwargs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    options: "RunOptions | None" = None,
    eps: float | None = None,
    progress: "ProgressFactory | None" = None,
    **option_values: Any,
) -> "EvalRecord":
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
    """
    from pydantic import ValidationError

    from .checkpoints import count_parameters
    from .config import Metadata, ModelSpec, describe_validation_error
    from .errors import RobbenchError
    from .pipeline import evaluate
    from .loader import LoadedModel, dataset_of
    from .results import Checkpoint
    from .run_options import RunOptions

    options = RunOptions.of(options, **option_values)
    if options.results_dir is not None:
        raise RobbenchError("benchmark() takes to_disk=FOLDER (or True, for results/) where evaluate takes results_dir")
    if to_disk:
        options = RunOptions.of(options, results_dir=Path("results") if to_disk is True else Path(to_disk))
    if name is not None and model_name is not None:
        raise RobbenchError("name the record once: name= or model_name=, not both")
    if options.adaptive is not None:
        raise RobbenchError("benchmark() returns one record; call robbench.evaluate for the escalation records of adaptive")
    if isinstance(model, (str, Path)):
        [record] = evaluate(model, options, threat_models=[threat_model], eps=eps, progress=progress)
        return record
    try:
        spec = ModelSpec(
            name=name or model_name or DEFAULT_NAME, dataset=dataset, dataset_kwargs=dataset_kwargs or {}, architecture=type(model).__name__,
            checkpoint=IN_MEMORY, metadata=Metadata(**(metadata or {})),
        )
    except ValidationError as exc:
        raise RobbenchError(describe_validation_error("benchmark()", exc)) from exc
    loaded = LoadedModel(
        spec, model, dataset_of(spec, options.data_dir), Checkpoint(path=IN_MEMORY, sha256=state_dict_sha256(model)),
        count_parameters(model),
    )
    [record] = evaluate(loaded, options, threat_models=[threat_model], eps=eps, progress=progress)
    return record
