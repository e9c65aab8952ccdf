"""Where code runs and with what: device choice, library versions, seeding."""

from __future__ import annotations

import platform
import random
from importlib.metadata import PackageNotFoundError, requires, version

import numpy as np
import torch

from .errors import RobbenchError, quoted


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise RobbenchError(f"unknown device {quoted(name)}; use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RobbenchError(f"{name} was asked for but no CUDA GPU is available; use cpu", parameter="device")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def pinned_version(package: str) -> str | None:
    """The version robbench's own requirements pin ``package`` to (``package==X`` in pyproject.toml).

    Read from the installed metadata, so pyproject.toml stays the one place of the pin; None when
    robbench is not installed or does not pin ``package`` exactly.
    """
    try:
        requirements = requires("robbench") or []
    except PackageNotFoundError:
        return None
    for requirement in requirements:
        name, _, rest = requirement.partition("==")
        if rest and ";" not in rest and name.strip().lower() == package.lower():
            return rest.strip()
    return None


def versions() -> dict[str, str]:
    from . import __version__

    return {
        "robbench": __version__,
        "torch": torch.__version__,
        "pyautoattack": package_version("pyautoattack"),
        "python": platform.python_version(),
    }


def seed_everything(seed: int) -> None:
    """Seed every global generator from the recorded seed (never from the clock)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
