"""The options of an evaluation run, checked together before any work starts.

``evaluate`` and ``queue run`` share them: a mistyped option must stop a queue run before it
touches a single request, not fail every request one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import RobbenchError, quoted

if TYPE_CHECKING:
    import torch

    from .attacks import Attack

#: the largest --batch-size: torch indexes a batch with 64-bit integers, and no device holds more
MAX_BATCH_SIZE = 2**31 - 1


def check_run_options(
    attacks: "list[str] | tuple[str, ...]", n_examples: int | None, batch_size: "int | str", device: str, seed: int
) -> "tuple[list[Attack], torch.device]":
    """The attacks and the device the options name; a one-line error for the first bad option."""
    from .attacks import create_attack
    from .runtime import resolve_device

    if n_examples is not None and not n_examples >= 1:
        raise RobbenchError(f"must be a positive integer, got {quoted(n_examples)}", parameter="n_examples")
    if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
        raise RobbenchError(f"must be a positive integer or 'auto', got {quoted(batch_size)}", parameter="batch_size")
    if batch_size != "auto" and batch_size > MAX_BATCH_SIZE:
        raise RobbenchError(f"must be at most {MAX_BATCH_SIZE}, got {batch_size}; use 'auto'", parameter="batch_size")
    if not 0 <= seed < 2**63:
        raise RobbenchError(f"must be between 0 and 2**63 - 1, got {seed}", parameter="seed")
    return [create_attack(name) for name in attacks], resolve_device(device)
