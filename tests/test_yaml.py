"""robbench reads every YAML file with safe_load's semantics, minus what safe_load lets through silently."""

from __future__ import annotations

import pytest
import yaml

from robbench.config import MAX_YAML_DEPTH, StrictLoader, load_train_spec
from robbench.errors import RobbenchError

SAMPLE = """
base: &base {lr: 0.1, epochs: 2}
merged: {<<: *base, epochs: 3}
aliased: *base
date: 2024-01-01
tagged: !!str 12
list: [1, 2.5, null, true]
"""


def test_same_result_as_safe_load_on_valid_yaml():
    assert yaml.load(SAMPLE, Loader=StrictLoader) == yaml.safe_load(SAMPLE)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 1\nb: {c: 1, c: 2}\n", "duplicate key 'c'"),
        ("sha256: abc\nname: x\nsha256: null\n", "duplicate key 'sha256'"),
        ("a: {1: x}\n", "key 1 is not a string"),
        ("? [a, b]\n: x\n", "is not a string"),
        ("a: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1) + "\n", f"nested deeper than {MAX_YAML_DEPTH} levels"),
        ("!!python/object/apply:os.system [true]\n", "could not determine a constructor"),
    ],
)
def test_refused_with_the_problem_named(text, problem):
    with pytest.raises(yaml.YAMLError) as caught:
        yaml.load(text, Loader=StrictLoader)
    assert problem in str(caught.value)


def test_train_yaml_duplicate_key_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("name: x\ndataset: fashion-mnist\narchitecture: linear\nepochs: 1\nepochs: 5\n")
    with pytest.raises(RobbenchError, match=r"train.yaml: malformed YAML at line 5, column 1 \(duplicate key 'epochs'\)"):
        load_train_spec(path)
