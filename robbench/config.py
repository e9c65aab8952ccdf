"""model.yaml and train.yaml, validated: unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import RobbenchError, describe_validation_error, quoted

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"  # no path separators; no leading dot, so no "." or ".."
MAX_NAME_LENGTH = 100  # names become file names (boards, model pages) with room to spare under 255 bytes
#: deeper YAML is refused: no config nests more than a few levels, and the composer recurses per level
MAX_YAML_DEPTH = 64
#: a model.yaml or train.yaml is a few kilobytes (its metadata included); larger is refused before it is parsed
MAX_CONFIG_BYTES = 64 * 2**10
#: normalisation is per input channel: no dataset has more
MAX_CHANNELS = 1024
#: what ``load_yaml`` returns: the pydantic model it was given
Loaded = TypeVar("Loaded", bound=BaseModel)


class StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, also refusing what safe_load lets through silently.

    A duplicate key (safe_load keeps the last one, so a ``sha256:`` pin can vanish), a key that
    is not a string, and nesting deeper than ``MAX_YAML_DEPTH``.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *base, whose keys the explicit ones override
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(None, None, f"key {quoted(key)} is not a string", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {quoted(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

#: test examples an evaluation takes unless told otherwise (``robbench evaluate``, ``queue run``,
#: ``robbench.evaluate``): PGD + AutoAttack of a robust small model on them fits 10 minutes on 2 CPU
#: cores. Leaderboard entries evaluate the full test set (``n_examples=None``, ``--n-examples 10000``).
DEFAULT_N_EXAMPLES = 250


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(Strict):
    mean: list[float] = Field(min_length=1, max_length=MAX_CHANNELS)
    std: list[float] = Field(min_length=1, max_length=MAX_CHANNELS)

    @model_validator(mode="after")
    def _same_length_positive_std(self) -> "Normalization":
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        return self


class TrainingCost(Strict):
    """What training took, as ``robbench train`` measured it: boards show it next to accuracy."""

    device: str
    epochs: int = Field(ge=0)
    train_examples: int = Field(ge=0)
    seconds_per_epoch: float = Field(ge=0)
    total_seconds: float = Field(ge=0)


class Reported(Strict):
    """A number the model's authors (or a third party) published, shown on the boards beside robbench's.

    It is a claim, not a measurement: the boards test robbench's best-known robust accuracy against
    it (one-sided exact binomial test) and mark it where robbench measures significantly less.
    """

    threat_model: str = Field(pattern=NAME_PATTERN, max_length=40)  # the robbench threat model it was measured under
    eps: float = Field(gt=0, allow_inf_nan=False)  # must equal the board's radius for the number to be shown
    clean_accuracy: float | None = Field(default=None, ge=0, le=1)
    robust_accuracy: float = Field(ge=0, le=1)
    attack: str = Field(min_length=1, max_length=300)  # what produced robust_accuracy, in one sentence
    n_examples: int | None = Field(default=None, ge=1)  # test examples the published number was measured on
    source: str = Field(pattern=r"^https?://\S+$", max_length=500)  # paper, repository or README
    where: str = Field(min_length=1, max_length=300)  # the table, section or README line in the source


class Metadata(Strict):
    training: str = "unknown"  # standard, pgd-at, trades, fgsm-rs, ...
    paper: str | None = None  # URL shown on the leaderboard
    authors: str | None = None
    venue: str | None = None
    extra_data: bool = False
    training_cost: TrainingCost | None = None  # filled in by robbench train
    caveats: str | None = None  # where the model falls short of its paper's setting or numbers, and why
    reported: list[Reported] = Field(default_factory=list, max_length=20)  # published numbers, one per threat model

    @field_validator("reported")
    @classmethod
    def _one_per_threat_model(cls, value: list[Reported]) -> list[Reported]:
        names = [entry.threat_model for entry in value]
        if len(set(names)) != len(names):
            raise ValueError("give at most one reported entry per threat model")
        return value


class ModelSpec(Strict):
    """A submission: which architecture, which weights, on which dataset."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    dataset: str
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict)
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    normalization: Normalization | None = None
    threat_models: list[str] | None = None
    metadata: Metadata = Field(default_factory=Metadata)

    #: the folder of the YAML file; relative checkpoints resolve against it
    _base_dir: Path = PrivateAttr(default=Path("."))

    @field_validator("checkpoint")
    @classmethod
    def _valid_hub_ref(cls, value: str) -> str:
        """A malformed ``hf://`` reference fails here, before anything is downloaded; a valid one is kept canonical."""
        from .hub_ref import is_hub_ref, parse_checkpoint_ref

        if is_hub_ref(value):
            try:
                return str(parse_checkpoint_ref(value))
            except RobbenchError as exc:
                raise ValueError(str(exc)) from exc
        return value

    def checkpoint_path(self) -> Path:
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else self._base_dir / path


class TrainSpec(Strict):
    """A reference training run: ``robbench train CONFIG``."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH)
    dataset: str
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict)
    architecture: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    normalization: Normalization | None = None
    method: Literal["standard", "pgd-at", "trades", "fgsm-rs"] = "standard"
    threat_model: str = "linf"  # the dataset's standard threat model trained against
    eps: float | None = Field(default=None, gt=0)  # default: the threat model's standard radius
    attack_steps: int = Field(default=10, ge=1)  # pgd-at and trades; fgsm-rs takes one step
    attack_step_size: float | None = Field(default=None, gt=0)  # default: 1.25 * eps for fgsm-rs, else 2.5 * eps / steps
    trades_beta: float = Field(default=6.0, gt=0)  # TRADES: weight of the KL robustness term
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.01, gt=0)  # the peak learning rate for one-cycle
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["constant", "piecewise", "cosine", "one-cycle"] = "piecewise"
    lr_milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # piecewise: lr / 10 at these fractions
    crop_padding: int = Field(default=0, ge=0)  # random crop after zero-padding by this many pixels (CIFAR: 4)
    horizontal_flip: bool = False  # random left-right flip
    n_train: int | None = Field(default=None, ge=1)  # the first n training examples; None: all but the holdout
    holdout: int = Field(default=0, ge=0)  # the last training examples, kept out of training for selection
    early_stopping: bool = False  # keep the epoch with the best held-out PGD accuracy; stop on a collapse
    catastrophic_drop: float = Field(default=0.2, gt=0, le=1)  # a fall of held-out PGD accuracy that counts as collapse
    eval_examples: int = Field(default=1000, ge=1)  # test examples for the per-epoch clean/PGD check (monitor only)
    eval_attack_steps: int = Field(default=20, ge=1)
    seed: int = 0
    metadata: Metadata = Field(default_factory=Metadata)

    @field_validator("eps")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and value != value:
            raise ValueError("eps must be a number")
        return value

    @field_validator("lr_milestones")
    @classmethod
    def _increasing_fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("lr_milestones must be increasing fractions of training between 0 and 1")
        return value

    @model_validator(mode="after")
    def _selection_needs_holdout(self) -> "TrainSpec":
        if self.early_stopping and self.holdout == 0:
            raise ValueError("early_stopping selects on held-out training examples; set holdout (e.g. 1000)")
        return self


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path``, read strictly (``StrictLoader``, a size limit); one line per problem."""
    from .untrusted_files import read_untrusted

    if not path.exists():
        raise RobbenchError(f"{path}: no such file; pass the path of an existing YAML file")
    text = read_untrusted(path, MAX_CONFIG_BYTES, "YAML file", fix="shorten it")
    try:
        data = yaml.load(text.decode("utf-8"), Loader=StrictLoader)  # safe_load, stricter
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise RobbenchError(f"{path}: malformed YAML{where} ({problem}); fix the syntax") from exc
    except UnicodeDecodeError as exc:
        raise RobbenchError(f"{path}: not UTF-8 text; save it as UTF-8 YAML") from exc
    if not isinstance(data, dict):
        raise RobbenchError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def load_yaml(model: type[Loaded], path: str | Path) -> Loaded:
    """``model`` (a strict pydantic model) from the YAML file ``path``; every problem on one line with its key."""
    path = Path(path)
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RobbenchError(describe_validation_error(path, exc)) from exc


def load_model_spec(path: str | Path) -> ModelSpec:
    spec = load_yaml(ModelSpec, path)
    spec._base_dir = Path(path).resolve().parent
    return spec


def load_train_spec(path: str | Path) -> TrainSpec:
    return load_yaml(TrainSpec, path)
