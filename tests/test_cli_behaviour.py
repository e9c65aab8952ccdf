"""How the ``robbench`` command behaves: version, help, errors in words, threads, output in a pipe."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import yaml

from robbench import __version__, threads
from robbench.cli import build_parser, main
from robbench.config import load_model_spec
from robbench.errors import RobbenchError
from .helpers import REPO


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"robbench {__version__}"


def _parsers(parser: argparse.ArgumentParser, path: str = "robbench"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_and_argument_has_help_text():
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


@pytest.mark.parametrize("computes", ["evaluate", "verify", "train", "tradeoff", "explain", "queue run"])
def test_every_compute_sub_command_takes_threads(computes):
    parsers = dict(_parsers(build_parser()))
    assert "--threads" in parsers[f"robbench {computes}"]._option_string_actions


def test_a_missing_sub_command_is_named_in_words(capsys):
    assert main(["queue"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["robbench: error: missing sub-command: add, run or status; see `robbench queue --help`"]
    assert main([]) == 2
    assert "robbench: error: missing sub-command: list, evaluate," in capsys.readouterr().err


def test_threads_from_a_faked_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: None)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for load, expected in ((0.2, 8), (3.4, 5), (7.6, 1), (16.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert threads.choose_threads(None) == expected, load
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda root=None: 2.5)  # a container: 2.5 CPUs of the 8
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 0.0, 0.0))  # spread over 8 cores: 1.5 of our 3 are busy
    assert threads.usable_cores() == 3 and threads.choose_threads(None) == 2
    assert threads.choose_threads(6) == 6  # --threads wins
    for bad in (0, -3):
        with pytest.raises(RobbenchError, match="threads must be a positive integer"):
            threads.choose_threads(bad)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose_threads(None) is None  # an explicit OMP_NUM_THREADS is left to torch


def test_threads_below_one_is_a_one_line_error(capsys):
    assert main(["tradeoff", "--threads", "0"]) == 2  # refused before the command computes anything
    assert "robbench: error: --threads must be a positive integer, got 0" in capsys.readouterr().err


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None


def test_config_errors_list_every_problem_without_pydantic_prefixes(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": "fashion-mnist", "architecture": "small-cnn", "checkpoint": "m.safetensors", "colour": "red",
        "normalization": {"mean": [0.5], "std": [0.5, 0.2]}, "sha256": "xyz",
    }))
    with pytest.raises(RobbenchError) as info:
        load_model_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 4 problems: ") and "\n" not in message
    for part in ("missing required key 'name'", "unknown key 'colour'", "key 'normalization': mean and std must have the same length",
                 "key 'sha256': "):
        assert part in message, part
    assert "Value error" not in message


LONG = "a-results-folder-with-a-long-name-so-that-its-path-is-wider-than-eighty-columns"


def _piped(*argv: str, cwd) -> subprocess.CompletedProcess:
    """``robbench ARGV`` with stdout and stderr going to pipes, not a terminal, and no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "robbench", *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_evaluate_output_in_a_pipe_is_never_wrapped(linear_submission, tmp_path):
    results = tmp_path / LONG / LONG
    done = _piped("evaluate", str(linear_submission), "--threat-model", "linf", "--attacks", "pgd", "--n-examples", "20",
                  "--device", "cpu", "--threads", "1", "--results-dir", str(results), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (path,) = (results / "fashion-mnist" / "linf" / "fmnist-linear").glob("*.json")
    (wrote,) = [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
    adversarial = path.with_name(path.name.replace(".json", ".adv.npz"))
    assert wrote.startswith(f"wrote {path} and its ") and wrote.endswith(f" adversarial examples {adversarial}")
    # stderr is a pipe: plain progress lines, after one line saying what runs
    err = done.stderr.splitlines()
    assert err[0].startswith("robbench: evaluating fmnist-linear on 20 fashion-mnist test examples under linf 0.1 with pgd")
    assert "robbench: stage 1 of 1, pgd: " in done.stderr and "━" not in done.stderr
    rows = [[c.strip() for c in line.replace("┃", "│").split("│")[1:-1]] for line in done.stdout.splitlines() if line[:1] in "│┃"]
    assert rows[0] == ["threat model", "eps", "clean %", "pgd %", "robust %", "seconds"] and len(rows) == 2
    assert rows[1][:2] == ["linf", "0.1"]


@pytest.mark.slow
def test_tradeoff_output_in_a_pipe_is_never_wrapped(tmp_path):
    out = tmp_path / LONG / "tradeoff.md"
    done = _piped("tradeoff", "--d", "10", "--n-train", "100", "--n-test", "200", "--train-eps", "0,1", "--steps", "5",
                  "--threads", "1", "--out", str(out), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    assert f"wrote {out}" in lines
    assert any(line.strip().startswith("tsipras d=10 p=0.9") and line.strip().endswith("test samples)") for line in lines)
    rows = [line.replace("┃", "│") for line in lines if line[:1] in "│┃"]
    assert rows and not [row for row in rows if row.split("│")[1].strip() == ""]  # a wrapped cell leaves a row with an empty first cell


@pytest.mark.slow
def test_deprecated_hub_syntax_is_one_warning_line(tmp_path, linear_submission):
    spec = yaml.safe_load(linear_submission.read_text())
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({**spec, "checkpoint": "hf://org/repo/model.safetensors@main"}))
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from robbench.cli import main; from robbench.config import load_model_spec; "
         f"sys.exit(main(['submit', {str(path)!r}, '--repo', 'org/x']))"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = code.stderr.strip().splitlines()
    assert lines[0] == ("robbench: warning: hf://org/repo/model.safetensors@main: hf://ORG/REPO/PATH@REVISION is deprecated; "
                        "write hf://models/org/repo@main/model.safetensors"), code.stderr
    assert lines[1].startswith("robbench: error: ") and len(lines) == 2


def test_percent_is_two_decimals_and_imports_nothing_heavy():
    """One percent format for the console, reports and boards; cheap to import (no torch, no scipy)."""
    code = subprocess.run(
        [sys.executable, "-c", "import sys; from robbench.formats import percent; "
         "print(percent(0.725), percent(1), percent(0.00004), percent(None)); print(sorted({'torch', 'scipy'} & set(sys.modules)))"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert code.stdout.splitlines() == ["72.50 100.00 0.00 —", "[]"], code.stderr
