"""Threat models: which perturbations an adversary may add (a norm ball of radius eps).

Each dataset registers its standard threat models; the registry key is ``"<dataset>/<name>"``.
An entry is a function of the dataset, because some radii depend on the dataset's parameters
(``tsipras``: eps = 2·eta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Literal

from .errors import RobbenchError, quoted
from .registry import Registry

if TYPE_CHECKING:
    from .data import Dataset

Norm = Literal["Linf", "L2"]

#: ``--eps`` values above this multiple of the standard radius are refused as absurd.
MAX_EPS_FACTOR = 100.0


@dataclass(frozen=True)
class ThreatModel:
    name: str  # "linf", "l2"
    norm: Norm
    eps: float
    standard: bool = True

    def with_eps(self, eps: float) -> "ThreatModel":
        """The same norm at another radius; marked non-standard unless the radius is unchanged."""
        if not math.isfinite(eps) or eps <= 0:
            raise RobbenchError(f"--eps must be a positive finite number, got {eps}")
        if eps > MAX_EPS_FACTOR * self.eps:
            raise RobbenchError(
                f"--eps {eps} is over {MAX_EPS_FACTOR:g}x the standard {self.name} radius {self.eps:g}; "
                "pass a radius on the data's scale"
            )
        return replace(self, eps=float(eps), standard=math.isclose(eps, self.eps, rel_tol=1e-9))

    @property
    def slug(self) -> str:
        """Folder/board name: ``linf`` for the standard radius, ``linf-eps0.2`` otherwise."""
        return self.name if self.standard else f"{self.name}-eps{self.eps:g}"


THREAT_MODELS: Registry[Callable[["Dataset"], ThreatModel]] = Registry(
    "threat model",
    builtin_modules=("robbench.data.idx", "robbench.data.synthetic", "robbench.data.cifar", "robbench.data.npz"),
    entry_point_group=None,
)


def standard_threat_models(dataset: "Dataset") -> dict[str, ThreatModel]:
    """The dataset's standard threat models, by name."""
    prefix = f"{dataset.name}/"
    found = {}
    for key in THREAT_MODELS.names():
        if key.startswith(prefix):
            threat = THREAT_MODELS.get(key).factory(dataset)
            found[threat.name] = threat
    return found


def get_threat_model(dataset: "Dataset", name: str) -> ThreatModel:
    known = standard_threat_models(dataset)
    if name not in known:
        raise RobbenchError(
            f"dataset {dataset.name!r} has no threat model {quoted(name)}; known: {', '.join(sorted(known)) or 'none'}"
        )
    return known[name]
