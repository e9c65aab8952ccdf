"""One ``RunOptions`` for every entry point: checked once, its flags declared once, attacks named by spec strings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from robbench.attacks import AttackRules
from robbench.cli import build_parser, main
from robbench.data import get_dataset
from robbench.errors import RobbenchError
from robbench.results import AttackSpec
from robbench.store import read_record
from robbench.run_options import AttackRequest, RunOptions, parse_attack_specs
from robbench.cli.terminal import EVALUATION_FLAGS, RUN_FLAGS, run_options
from robbench.threat_models import get_threat_model
from .helpers import REPO

COMMITTED_RECORDS = sorted((REPO / "results").glob("*/*/*/*.json"))
#: the board protocol's runs; the escalations of `--adaptive` are runs of one other attack each (test_adaptive)
PROTOCOL_RECORDS = [path for path in COMMITTED_RECORDS if path.name.startswith("pgd+autoattack-")]
#: the sub-commands that evaluate: each takes every run flag, and builds its options with ``run_options``
EVALUATING = (("evaluate", "model.yaml"), ("queue", "run"))


@pytest.mark.parametrize("record_file", PROTOCOL_RECORDS, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_default_attacks_give_each_committed_records_attack_configs_and_run_id(record_file):
    """The board protocol's defaults must keep every committed record's configuration (and so its run id)."""
    record = read_record(record_file)
    config = record.config
    assert [a.name for a in config.attacks] == ["pgd", "autoattack"]
    dataset = get_dataset(config.dataset, **config.dataset_params)
    rules = AttackRules.for_dataset(dataset, config.threat_model, seed=config.seed)
    rebuilt = [AttackSpec(name=a.name, config=a.config(rules)) for a in RunOptions(device="cpu").create_attacks()]
    assert rebuilt == config.attacks
    assert config.model_copy(update={"attacks": rebuilt}).run_id == config.run_id == record_file.name.removesuffix(".json")


def test_committed_records_are_found():
    assert len(COMMITTED_RECORDS) >= 20


@pytest.mark.parametrize("text, expected", [
    ("pgd,autoattack", [("pgd", {}), ("autoattack", {})]),
    (" pgd() , autoattack ", [("pgd", {}), ("autoattack", {})]),
    ("pgd(steps=100, restarts=5),autoattack", [("pgd", {"steps": 100, "restarts": 5}), ("autoattack", {})]),
    ("pgd(step_size_factor=0.5)", [("pgd", {"step_size_factor": 0.5})]),
    ("apgd(loss=dlr,targeted=true,eps=null,label='5')",
     [("apgd", {"loss": "dlr", "targeted": True, "eps": None, "label": "5"})]),
])
def test_attack_specs_parse_to_names_and_yaml_scalar_options(text, expected):
    requests = parse_attack_specs(text)
    assert [(r.name, r.options) for r in requests] == expected
    assert parse_attack_specs(",".join(str(r) for r in requests)) == requests  # str() writes the spec back


@pytest.mark.parametrize("text, message", [
    ("", "attacks is empty; pass e.g. pgd,autoattack"),
    (",", "attacks is empty"),
    ("pgd(steps=1", "attacks has an unclosed parenthesis in 'pgd(steps=1'"),
    ("pgd(steps=1))", "attacks has unbalanced or nested parentheses"),
    ("pgd(steps=(1))", "attacks has unbalanced or nested parentheses"),
    ("pgd(steps)", "attacks option 'steps' of pgd is not key=value"),
    ("pgd(steps=)", "attacks option 'steps=' of pgd is not key=value"),
    ("pgd(steps=1,steps=2)", "attacks sets option steps of pgd twice"),
    ("pgd(steps=[1])", "attacks option steps of pgd must be a single value, got '[1]'"),
    ("pgd x", "attacks cannot read 'pgd x'"),
])
def test_malformed_attack_specs_are_refused_in_one_line(text, message):
    with pytest.raises(RobbenchError) as error:
        parse_attack_specs(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("attacks, message", [
    ("pgd(stepz=5)", "attack 'pgd' has no option 'stepz'; its options: steps, restarts, step_size_factor"),
    ("autoattack(steps=5)", "attack 'autoattack' has no option 'steps'; its options: version"),
    ("pgd(steps=many)", "attack 'pgd' option steps must be int, got 'many'"),
    ("pgd(steps=2.5)", "attack 'pgd' option steps must be int, got 2.5"),
    ("pgd(steps=true)", "attack 'pgd' option steps must be int, got True"),
    ("pgd(steps=0)", "pgd needs steps >= 1"),
    ("pgdd", "unknown attack 'pgdd'"),
    ("pgd,pgd(steps=40)", "attacks names pgd twice; a record keeps one result per attack name"),
])
def test_attack_options_are_checked_when_the_run_options_are_built(attacks, message):
    with pytest.raises(RobbenchError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        RunOptions(attacks=attacks, device="cpu")


def test_attack_options_reach_the_attack_and_its_recorded_config():
    options = RunOptions(attacks="pgd(steps=40,restarts=2,step_size_factor=2)", device="cpu")
    assert options.attacks == (AttackRequest("pgd", {"steps": 40, "restarts": 2, "step_size_factor": 2}),)
    [attack] = options.create_attacks()
    dataset = get_dataset("tsipras", n=10)
    rules = AttackRules.for_dataset(dataset, get_threat_model(dataset, "linf"))
    config = attack.config(rules)
    assert (config["steps"], config["restarts"], config["step_size"]) == (40, 2, 2 * rules.threat.eps / 40)


@pytest.mark.parametrize("options, message", [
    ({"n_examples": 0}, "n_examples must be a positive integer, got 0"),
    ({"n_examples": 2.5}, "n_examples must be a positive integer, got 2.5"),
    ({"batch_size": 0}, "batch_size must be a positive integer or 'auto', got 0"),
    ({"batch_size": "big"}, "batch_size must be a positive integer or 'auto', got 'big'"),
    ({"batch_size": 2**31}, "batch_size must be at most 2147483647, got 2147483648; use 'auto'"),
    ({"seed": -1}, "seed must be between 0 and 2**63 - 1, got -1"),
    ({"seed": 2**63}, "seed must be between 0 and 2**63 - 1"),
    ({"seed": True}, "seed must be between 0 and 2**63 - 1, got True"),
    ({"device": "tpu"}, "unknown device 'tpu'; use auto, cpu or cuda"),
    ({"attacks": [3]}, "attacks takes attack spec strings, got 3"),
])
def test_each_bad_option_is_refused_with_its_one_line_message(options, message):
    with pytest.raises(RobbenchError) as error:
        RunOptions(**{"device": "cpu", **options})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_api_options_accept_lists_and_an_empty_list_is_a_clean_pass():
    assert RunOptions(attacks=["pgd", "autoattack"], device="cpu") == RunOptions(device="cpu")
    assert RunOptions(attacks=[], device="cpu").attacks == ()
    assert RunOptions.of(RunOptions(device="cpu"), seed=3).seed == 3
    with pytest.raises(TypeError, match="unknown run option 'sead'"):
        RunOptions.of(sead=3)
    with pytest.raises(RobbenchError, match="^seed must be between"):
        RunOptions.of(RunOptions(device="cpu"), seed=-1)  # a change is checked too


def _subparsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (sub-command path, parser) under ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


def test_every_run_flag_comes_from_the_one_declaration():
    """A run flag on any sub-command is RUN_FLAGS' own (its help and type), wherever it appears."""
    seen = set()
    for path, parser in _subparsers(build_parser()):
        for action in parser._actions:
            if action.dest in RUN_FLAGS and (path, action.dest) != (("sample-size",), "batch_size"):  # the training batch
                flag, declared = RUN_FLAGS[action.dest]
                assert action.option_strings == [flag] and action.help == declared["help"], (path, flag)
                assert action.type == declared.get("type"), (path, flag)
                seen.add(action.dest)
    assert seen == set(RUN_FLAGS)


def test_the_evaluating_sub_commands_take_the_same_flags_and_build_equal_options(tmp_path):
    parser = build_parser()
    flags = [
        "--attacks", "pgd(steps=7),autoattack", "--n-examples", "9", "--batch-size", "4", "--device", "cpu",
        "--seed", "5", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path / "r"), "--threads", "1",
    ]
    built = [run_options(parser.parse_args([*command, *flags])) for command in EVALUATING]
    assert built[0] == built[1] == RunOptions(
        attacks="pgd(steps=7),autoattack", n_examples=9, batch_size=4, device="cpu", seed=5, data_dir=str(tmp_path),
        results_dir=tmp_path / "r",
    )
    defaults = [run_options(parser.parse_args([*command, "--device", "cpu"])) for command in EVALUATING]
    assert defaults[0] == defaults[1] == RunOptions(device="cpu", results_dir=Path("results"))
    sub_commands = dict(_subparsers(parser))
    for command in (("evaluate",), ("queue", "run")):
        assert set(EVALUATION_FLAGS) <= {a.dest for a in sub_commands[command]._actions}, command


@pytest.mark.parametrize("command", [["evaluate", "model.yaml"], ["queue", "run"]])
@pytest.mark.parametrize("flags, message", [
    (["--attacks", "pgd(stepz=5)"], "robbench: error: attack 'pgd' has no option 'stepz'; its options: steps, restarts, step_size_factor"),
    (["--attacks", "pgd(steps=1"], "robbench: error: --attacks has an unclosed parenthesis"),
    (["--seed", "-1"], "robbench: error: --seed must be between 0 and 2**63 - 1, got -1"),
    (["--n-examples", "0"], "robbench: error: --n-examples must be a positive integer, got 0"),
])
def test_the_cli_refuses_a_bad_option_before_any_work_exit_2_one_line(command, flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main([*command, "--device", "cpu", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not any(tmp_path.iterdir())  # nothing written, not even a queue or results folder


def test_options_are_checked_once_per_run(linear_submission, tmp_path, monkeypatch):
    """The CLI builds them once; ``evaluate`` (which ``queue run`` calls per request) takes them as they are."""
    from robbench import evaluate

    checks = []
    check = RunOptions.__post_init__
    monkeypatch.setattr(RunOptions, "__post_init__", lambda self: (checks.append(1), check(self)))
    (tmp_path / "queue").mkdir()
    assert main(["queue", "run", "--queue-dir", str(tmp_path / "queue"), "--device", "cpu"]) == 0
    assert len(checks) == 1
    options = RunOptions(attacks=[], n_examples=5, device="cpu")
    evaluate(linear_submission, options, threat_models="linf")
    assert len(checks) == 2
