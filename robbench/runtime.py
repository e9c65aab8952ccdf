"""Where code runs and with what: device choice, library versions, seeding."""

from __future__ import annotations

import platform
import random
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch

from .errors import RobbenchError, quoted


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise RobbenchError(f"unknown device {quoted(name)}; use auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RobbenchError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
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
