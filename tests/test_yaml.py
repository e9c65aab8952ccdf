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


@pytest.mark.parametrize(("text", "message"), [
    ("d: 10\nn_train: 0\n", "tradeoff.yaml: key 'n_train': Input should be greater than or equal to 1 (got 0)"),
    ("n_trian: 100\n", "tradeoff.yaml: unknown key 'n_trian'; remove it or check its spelling"),
    ("train_eps: [0, 1, 1]\np: 1.5\n", "tradeoff.yaml: 2 problems: key 'p': Input should be less than 1 (got 1.5); "
                                       "key 'train_eps': training radii repeat (got [0, 1, 1])"),
])
def test_a_bad_report_config_is_one_line_naming_the_key(tmp_path, text, message):
    from robbench.reports.tradeoff import TradeoffConfig

    path = tmp_path / "tradeoff.yaml"
    path.write_text(text)
    with pytest.raises(RobbenchError) as caught:
        TradeoffConfig.from_yaml(path)
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_report_configs_load_from_yaml_and_are_strict(tmp_path):
    from robbench.reports.explain import ExplainConfig
    from robbench.reports.sample_size import SampleSizeConfig

    path = tmp_path / "sample-size.yaml"
    path.write_text("sizes: [100, 300]\neps: [0, 0.2]\nworkers: 1\n")
    assert SampleSizeConfig.from_yaml(path) == SampleSizeConfig(sizes=(100, 300), eps=(0.0, 0.2), workers=1)
    path.write_text("model_yamls: [a/model.yaml]\nnorm: L1\n")
    with pytest.raises(RobbenchError, match=r"^.*sample-size.yaml: key 'norm': Input should be 'L2' or 'Linf' \(got 'L1'\)$"):
        ExplainConfig.from_yaml(path)
    with pytest.raises(RobbenchError, match="^SampleSizeConfig: key 'workers': Input should be greater than or equal to 1 .got 0.$"):
        SampleSizeConfig(workers=0)  # built in Python (or from the command's flags): the same line, naming the class


def test_records_and_queue_files_share_the_one_line_of_validation_errors(tmp_path):
    """One formatter (``errors.describe_validation_error``) for specs, records, queue requests and report settings."""
    from robbench.publishing.evaluation_queue import read_queue
    from robbench.store import read_record

    (tmp_path / "queue").mkdir()
    request = tmp_path / "queue" / "r.json"
    request.write_text('{"id": "r", "checkpoint": "hf://a/b@main/m.safetensors", "spec": {}, "threat_model": "linf", '
                       '"eps": "wide", "pinned": "x", "submitted": "t", "updated": "t", "status": "LOST"}')
    with pytest.raises(RobbenchError) as caught:
        read_queue(tmp_path / "queue")
    assert str(caught.value) == (
        f"{request}: not a valid queue request: 2 problems: key 'eps': Input should be a valid number, unable to parse "
        "string as a number (got 'wide'); key 'status': Input should be 'PENDING', 'RUNNING', 'FINISHED' or 'FAILED' "
        "(got 'LOST'); fix or remove it")
    record = tmp_path / "run.json"
    record.write_text('{"schema_version": 2, "color": "red"}')
    with pytest.raises(RobbenchError, match=r"run.json: invalid record: \d+ problems: missing required key 'config'; .*"
                                            r"unknown key 'color'; remove it or check its spelling"):
        read_record(record)
