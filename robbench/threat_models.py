"""Threat models: which perturbations an adversary may add (a norm ball of radius eps).

One identity everywhere: the ``ThreatModel`` below is what datasets declare, what attacks use,
what records store and what boards are keyed by; ``slug`` is its one file/board name. Each
dataset declares its standard threat models as data (``Dataset.threat_models``), because some
radii depend on the dataset's parameters (``tsipras``: eps = 2·eta).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import RobbenchError, quoted

if TYPE_CHECKING:
    from .data import Dataset

Norm = Literal["Linf", "L2"]

#: ``--eps`` values above this multiple of the standard radius are refused as absurd.
MAX_EPS_FACTOR = 100.0


class ThreatModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=40)  # "linf", "l2"; part of file names
    norm: Norm
    eps: float = Field(gt=0, allow_inf_nan=False)
    standard: bool = True

    def with_eps(self, eps: float) -> "ThreatModel":
        """The same norm at another radius; marked non-standard unless the radius is unchanged."""
        if not math.isfinite(eps) or eps <= 0:
            raise RobbenchError(f"must be a positive finite number, got {eps}", parameter="eps")
        if eps > MAX_EPS_FACTOR * self.eps:
            raise RobbenchError(
                f"{eps} is over {MAX_EPS_FACTOR:g}x the standard {self.name} radius {self.eps:g}; "
                "pass a radius on the data's scale", parameter="eps",
            )
        return self.model_copy(update={"eps": float(eps), "standard": math.isclose(eps, self.eps, rel_tol=1e-9)})

    @property
    def slug(self) -> str:
        """Folder/board name: ``linf`` for the standard radius, ``linf-eps0.2`` otherwise."""
        return self.name if self.standard else f"{self.name}-eps{self.eps:g}"


def linf(eps: float) -> ThreatModel:
    return ThreatModel(name="linf", norm="Linf", eps=eps)


def l2(eps: float) -> ThreatModel:
    return ThreatModel(name="l2", norm="L2", eps=eps)


def standard_threat_models(dataset: "Dataset") -> dict[str, ThreatModel]:
    """The dataset's standard threat models, by name."""
    return {threat.name: threat for threat in dataset.threat_models}


def threat_model_name(name: str) -> str:
    """robbench's spelling of a threat model's name: RobustBench's ``"Linf"`` and ``"L2"`` are ``linf`` and ``l2``."""
    return name.strip().lower()


def get_threat_model(dataset: "Dataset", name: str) -> ThreatModel:
    known = standard_threat_models(dataset)
    name = threat_model_name(name)
    if name not in known:
        raise RobbenchError(
            f"dataset {dataset.name!r} has no threat model {quoted(name)}; known: {', '.join(sorted(known)) or 'none'}"
        )
    return known[name]


def default_threat_model_names(dataset: "Dataset", model_list: list[str] | None) -> list[str]:
    """The threat models a model is meant for: its model.yaml's list, else the dataset's standard ones."""
    return model_list or sorted(standard_threat_models(dataset))


def select_threat_models(dataset: "Dataset", names: "str | list[str]", eps: float | None,
                         model_list: list[str] | None = None) -> list[ThreatModel]:
    """The threat models to evaluate: ``"all"`` (``default_threat_model_names``) or the ones named;
    ``eps``: the one threat model named, at another radius (non-standard)."""
    if names == "all":
        names = default_threat_model_names(dataset, model_list)
    elif isinstance(names, str):
        names = [names]
    threats = [get_threat_model(dataset, name) for name in names]
    if eps is not None:
        if len(threats) != 1:
            raise RobbenchError("applies to one threat model; name that threat model as well", parameter="eps")
        threats = [threats[0].with_eps(eps)]
    return threats
