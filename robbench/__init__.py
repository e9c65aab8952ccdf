"""robbench: an adversarial-robustness benchmark that contrasts standard and robust accuracy.

Public API (timm-style)::

    robbench.create_model("small-cnn", num_classes=10)
    x, y = robbench.load_dataset("fashion-mnist", split="test", n=1000)
    records = robbench.evaluate("submissions/fashion-mnist/small-cnn-pgd-at/model.yaml")
    model = robbench.load_model("fmnist-small-cnn-pgd-at")   # RobustBench-style: eval mode, verified
    record = robbench.benchmark(model, dataset="fashion-mnist", threat_model="linf", n_examples=100)

Importing robbench imports no architecture, dataset or attack module; they load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["create_model", "load_dataset", "evaluate", "load_model", "benchmark", "RobbenchError"]

_LAZY = {
    "create_model": ("robbench.models", "create_model"),
    "load_dataset": ("robbench.data", "load_dataset"),
    "evaluate": ("robbench.pipeline", "evaluate"),
    "load_model": ("robbench.zoo", "load_model"),
    "benchmark": ("robbench.in_memory", "benchmark"),
    "RobbenchError": ("robbench.errors", "RobbenchError"),
}

if TYPE_CHECKING:
    from .data import load_dataset
    from .errors import RobbenchError
    from .pipeline import evaluate
    from .in_memory import benchmark
    from .models import create_model
    from .zoo import load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'robbench' has no attribute {name!r}")
