"""The options of an evaluation run: one ``RunOptions``, checked once when it is built.

Every entry point takes it: ``robbench evaluate`` and ``robbench queue run`` (built from their
shared flags, ``robbench.cli.terminal.add_run_flags``), ``robbench.evaluate`` and ``robbench.benchmark``
(built from their keyword arguments, or passed whole). A mistyped option stops a queue run before
it touches a single request, and nothing checks an option twice.

Attacks are named by spec strings, ``name`` or ``name(key=value,...)``, comma-separated and run in
order: ``pgd,autoattack`` or ``pgd(steps=100,restarts=5),autoattack``. Each value is read as a YAML
scalar (``5`` an int, ``0.5`` a float, ``true`` a bool, ``dlr`` a string); an option the attack does
not take is refused naming the ones it does (``robbench.attacks.create_attack``). The options
are recorded through ``Attack.config``, so ``pgd`` and ``pgd()`` give the same record.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

import yaml

from .config import DEFAULT_N_EXAMPLES
from .errors import RobbenchError, quoted

if TYPE_CHECKING:
    import torch

    from .adaptive import Budget

    from .attacks import Attack

#: the largest --batch-size: torch indexes a batch with 64-bit integers, and no device holds more
MAX_BATCH_SIZE = 2**31 - 1
#: the most forward passes one prediction may average, and the most re-verifications of a break
MAX_DRAWS = 10_000
#: re-verifications of every break of a randomized model (``robbench.randomized``)
DEFAULT_REDRAWS = 10
#: the board protocol's attacks, run when none are named
DEFAULT_ATTACKS = "pgd,autoattack"

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_SPEC = re.compile(rf"\s*({_NAME})\s*(?:\((.*)\))?\s*", re.DOTALL)
_OPTION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)
SPEC_SYNTAX = "name or name(key=value,...), comma-separated, e.g. pgd(steps=100,restarts=5),autoattack"


@dataclass(frozen=True)
class AttackRequest:
    """An attack as a run names it: its registry name and the keyword options for its factory."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def create(self) -> "Attack":
        from .attacks import create_attack

        return create_attack(self.name, **self.options)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        values = ",".join(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                          for key, value in self.options.items())
        return f"{self.name}({values})"


def parse_attack_specs(text: str) -> tuple[AttackRequest, ...]:
    """``"pgd(steps=100),autoattack"`` as attack requests; a one-line error (``--attacks ...``) when malformed."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise RobbenchError(f"has unbalanced or nested parentheses in {quoted(text)}; write {SPEC_SYNTAX}",
                                parameter="attacks")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise RobbenchError(f"has an unclosed parenthesis in {quoted(text)}; write {SPEC_SYNTAX}", parameter="attacks")
    items.append(text[start:])
    requests = tuple(_parse_spec(item) for item in items if item.strip())
    if not requests:
        raise RobbenchError(f"is empty; pass e.g. {DEFAULT_ATTACKS}", parameter="attacks")
    return requests


def _parse_spec(item: str) -> AttackRequest:
    match = _SPEC.fullmatch(item)
    if match is None:
        raise RobbenchError(f"cannot read {quoted(item.strip())}; write {SPEC_SYNTAX}", parameter="attacks")
    name, body = match.groups()
    options: dict[str, Any] = {}
    for part in body.split(",") if body and body.strip() else ():  # name and name() take no options
        option = _OPTION.fullmatch(part)
        if option is None or not option.group(2).strip():
            raise RobbenchError(f"option {quoted(part.strip())} of {name} is not key=value; write {SPEC_SYNTAX}",
                                parameter="attacks")
        key, value = option.group(1), _scalar(option.group(2).strip(), name, option.group(1))
        if key in options:
            raise RobbenchError(f"sets option {key} of {name} twice", parameter="attacks")
        options[key] = value
    return AttackRequest(name, options)


def _scalar(text: str, attack: str, key: str) -> Any:
    """``text`` as a YAML scalar (int, float, bool, string; ``null`` for None)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RobbenchError(f"option {key} of {attack} is not a YAML scalar: {quoted(text)}", parameter="attacks") from exc
    if isinstance(value, (dict, list)) or not isinstance(value, (str, int, float, bool, type(None))):
        raise RobbenchError(f"option {key} of {attack} must be a single value, got {quoted(text)}", parameter="attacks")
    return value


AttacksOption = Union[str, AttackRequest, Iterable[Union[str, AttackRequest]]]


def attack_requests(attacks: AttacksOption) -> tuple[AttackRequest, ...]:
    """Requests from a spec string, or from a list of spec strings and requests (the API's ``["pgd"]``).

    An empty string is refused (a flag given nothing); an empty list is a clean pass alone, as the API allows.
    """
    if isinstance(attacks, AttackRequest):
        return (attacks,)
    if isinstance(attacks, str):
        return parse_attack_specs(attacks)
    requests: list[AttackRequest] = []
    for attack in attacks:
        if isinstance(attack, AttackRequest):
            requests.append(attack)
        elif isinstance(attack, str):
            requests.extend(parse_attack_specs(attack))
        else:
            raise RobbenchError(f"takes attack spec strings, got {quoted(attack)}", parameter="attacks")
    return tuple(requests)


@dataclass(frozen=True)
class RunOptions:
    """How to run an evaluation, whatever the model and threat models: checked once, in ``__post_init__``.

    ``attacks``: spec strings or ``AttackRequest`` (normalised to a tuple of requests). ``n_examples``:
    the first N test examples (``None``: all). ``batch_size``: a positive int or ``"auto"``
    (``robbench.evaluation.auto_batch_size``). ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    ``seed``: of every random step. ``data_dir``: ``DIR/<dataset>/`` holds the dataset files (``None``:
    the dataset's own search). ``results_dir``: where progress and records are written (``None``:
    nothing is written, as for ``benchmark``). ``prediction_draws``: forward passes each prediction
    averages, for randomized models (``robbench.randomized``); ``redraws``: re-verifications of each break
    when the model is randomized or ``prediction_draws`` > 1. ``adaptive``: after the attacks, the
    escalations the fired reliability flags call for, within this budget (``robbench.adaptive``; ``None``: none).
    """

    attacks: tuple[AttackRequest, ...] = field(default_factory=lambda: parse_attack_specs(DEFAULT_ATTACKS))
    n_examples: int | None = DEFAULT_N_EXAMPLES
    batch_size: "int | str" = "auto"
    device: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    results_dir: Path | None = None
    prediction_draws: int = 1
    redraws: int = DEFAULT_REDRAWS
    adaptive: "Budget | None" = None

    def __post_init__(self) -> None:
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_field("attacks", attack_requests(self.attacks))
        n_examples, batch_size, seed = self.n_examples, self.batch_size, self.seed
        if n_examples is not None and not (_is_int(n_examples) and n_examples >= 1):
            raise RobbenchError(f"must be a positive integer, got {quoted(n_examples)}", parameter="n_examples")
        if batch_size != "auto" and not (_is_int(batch_size) and batch_size >= 1):
            raise RobbenchError(f"must be a positive integer or 'auto', got {quoted(batch_size)}", parameter="batch_size")
        if batch_size != "auto" and batch_size > MAX_BATCH_SIZE:
            raise RobbenchError(f"must be at most {MAX_BATCH_SIZE}, got {batch_size}; use 'auto'", parameter="batch_size")
        if not (_is_int(seed) and 0 <= seed < 2**63):
            raise RobbenchError(f"must be between 0 and 2**63 - 1, got {quoted(seed)}", parameter="seed")
        for name, least in (("prediction_draws", 1), ("redraws", 1)):
            value = getattr(self, name)
            if not (_is_int(value) and least <= value <= MAX_DRAWS):
                raise RobbenchError(f"must be an integer from {least} to {MAX_DRAWS}, got {quoted(value)}", parameter=name)
        if self.results_dir is not None:
            set_field("results_dir", Path(self.results_dir))
        if self.data_dir is not None:
            set_field("data_dir", str(self.data_dir))
        names = [request.name for request in self.attacks]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise RobbenchError(f"names {twice} twice; a record keeps one result per attack name", parameter="attacks")
        self.create_attacks()  # every attack's options, checked by its factory
        self.torch_device()  # the device exists

    def create_attacks(self) -> "list[Attack]":
        """Fresh attack objects, in run order."""
        return [request.create() for request in self.attacks]

    def torch_device(self) -> "torch.device":
        from .runtime import resolve_device

        return resolve_device(self.device)

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: "RunOptions | None" = None, **changes: Any) -> "RunOptions":
        """``options`` (default: the defaults) with ``changes``: what the API functions' keyword arguments build."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown run option {unknown[0]!r}; the options are: "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        if options is None:
            return cls(**changes)
        return options.replace(**changes) if changes else options


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
