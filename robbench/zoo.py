"""Where a model comes from: a model.yaml, a committed submission's name, or a hub reference.

``load_model`` is RobustBench's call of the same name: a ready model, in eval mode, weights
verified, normalisation inside. A NAME is looked up in the ``name:`` of every
``<submissions_dir>/*/*/model.yaml``; ``submissions_dir`` defaults to ``ROBBENCH_SUBMISSIONS``,
else ``./submissions`` (the repository's folder when run from a checkout). An installed robbench
without the repository finds no names: pass a model.yaml path or an ``hf://`` reference instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RobbenchError
from .hub_ref import is_hub_ref

if TYPE_CHECKING:
    from torch import nn

    from .config import ModelSpec

SUBMISSIONS_ENV = "ROBBENCH_SUBMISSIONS"
#: how an API caller names a model when a NAME is not found
_API_FIX = f"pass submissions_dir= (or set {SUBMISSIONS_ENV}), a model.yaml path, or an hf:// reference"


def default_submissions_dir() -> Path:
    return Path(os.environ.get(SUBMISSIONS_ENV) or "submissions")


def model_spec(source: "str | Path | ModelSpec", *, dataset: str | None = None,
               submissions_dir: "str | Path | None" = None) -> "ModelSpec":
    """The ModelSpec ``source`` names: a ModelSpec, a model.yaml path, an ``hf://`` reference, or a NAME.

    ``dataset`` picks among submissions of one NAME on several datasets, and is checked otherwise.
    """
    from .config import ModelSpec, load_model_spec

    if isinstance(source, ModelSpec):
        spec = source
    elif isinstance(source, str) and is_hub_ref(source):
        from .hub import hub_spec  # huggingface_hub is imported only for hub models

        spec = hub_spec(source)
    elif Path(source).suffix in (".yaml", ".yml") or Path(source).is_file():
        spec = load_model_spec(source)
    else:
        spec = submission_named(str(source), Path(submissions_dir) if submissions_dir else default_submissions_dir(), dataset)
    if dataset is not None and spec.dataset != dataset:
        raise RobbenchError(f"{spec.name} is a {spec.dataset} model, not a {dataset} one; drop dataset= or pick another model")
    return spec


def submission_named(name: str, submissions_dir: Path, dataset: str | None = None, *, fix: str = _API_FIX) -> "ModelSpec":
    """The one ``<submissions_dir>/*/*/model.yaml`` named ``name`` (on ``dataset``, when given), loaded.

    ``fix`` ends the error when the name is not found: how the caller's user names a model instead
    (``load_model``'s arguments by default; ``robbench verify`` passes its ``--model``).
    """
    from .config import load_model_spec

    if not submissions_dir.is_dir():
        raise RobbenchError(f"model {name!r}: no submissions folder {submissions_dir} to look the name up in; {fix}")
    specs = [load_model_spec(path) for path in sorted(submissions_dir.glob("*/*/model.yaml"))]
    matches = [s for s in specs if s.name == name and (dataset is None or s.dataset == dataset)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RobbenchError(f"model {name!r} exists for {', '.join(s.dataset for s in matches)}; pass dataset=")
    known = ", ".join(sorted({s.name for s in specs if dataset is None or s.dataset == dataset})) or "none"
    raise RobbenchError(f"no submission named {name!r}{f' on {dataset}' if dataset else ''} in {submissions_dir}; "
                        f"{fix}; known: {known}")  # the fix first: a long list must not push it out of the line


def load_model(
    source: "str | Path | ModelSpec | None" = None, *, model_name: "str | None" = None, dataset: str | None = None,
    threat_model: str | None = None, submissions_dir: "str | Path | None" = None, device: str = "cpu",
    data_dir: str | None = None,
) -> "nn.Module":
    """A ready model: eval mode, verified weights (SHA-256 pin, hub digests), normalisation inside; inputs in [0, 1].

    ``threat_model``, when given, must be one the model is meant for (its list, else its dataset's
    standard ones), as RobustBench's ``load_model(name, dataset, threat_model)`` picks a board; its
    spellings (``model_name=``, ``threat_model="Linf"``) are accepted.
    """
    from .loader import load_submission
    from .runtime import resolve_device
    from .threat_models import default_threat_model_names, threat_model_name

    if (source is None) == (model_name is None):
        raise RobbenchError("name the model once: load_model(NAME) or load_model(model_name=NAME)")
    spec = model_spec(source if source is not None else model_name, dataset=dataset, submissions_dir=submissions_dir)
    loaded = load_submission(spec, data_dir)
    if threat_model is not None:
        meant_for = default_threat_model_names(loaded.dataset, spec.threat_models)
        if threat_model_name(threat_model) not in meant_for:
            raise RobbenchError(f"{spec.name} is evaluated under {', '.join(meant_for)}, not {threat_model!r}")
    return loaded.model.to(resolve_device(device)).eval()
