"""The benchmark scripts run end to end at a tiny size (their figures are meaningless at this size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# a subprocess that times every benchmark; the runs train on the Fashion-MNIST training split (marked needs_data
# test by test: the import check below needs no data)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run_benchmarks(out: Path, *args: str) -> dict:
    """``benchmarks.run`` at the tiny size on the small-cnn case; the JSON it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--device", "cpu", "--threads", "1", "--cases", "small-cnn",
         "--scale", "0.02", "--repeats", "1", "--label", "smoke", "--out-dir", str(out), *args],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "smoke.json").read_text())


@pytest.mark.needs_data
def test_benchmarks_run_and_write_json_and_a_report(tmp_path):
    pytest.importorskip("torchattacks", reason="the benchmark extra (see benchmarks/README.md)")
    out = tmp_path / "results"
    data = _run_benchmarks(out)
    case = data["cases"]["small-cnn/fashion-mnist"]
    assert case["layout"]["forward_speedup"]["median"] > 0 and case["layout"]["forward_backward_speedup"]["median"] > 0
    assert case["layout"]["argmax_agree"] and case["layout"]["max_abs_logit_difference"] < 1e-4
    assert case["pgd"]["efficiency_evaluate"]["median"] > 0
    assert case["pgd"]["robbench"]["grad_evals"] > 0 and case["pgd"]["torchattacks"]["grad_evals"] > 0
    assert case["autoattack"]["identical_robust_accuracy"], case["autoattack"]["robust_accuracies"]
    assert case["train"]["ratio_robbench_over_hand"]["median"] > 0
    report = (tmp_path / "RESULTS.md").read_text()
    assert "small-cnn/fashion-mnist" in report and data["environment"]["device"] in report
    assert "channels_last" in report

    # a run of some benchmarks replaces only those in the file of its label
    again = _run_benchmarks(out, "--only", "layout")["cases"]["small-cnn/fashion-mnist"]
    assert {b: again[b] for b in ("pgd", "autoattack", "train")} == {b: case[b] for b in ("pgd", "autoattack", "train")}


def _closure(requirements: list) -> set[str]:
    """The canonical names of ``requirements`` and everything they require, as installed here."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(text) for text in requires(name) or []]
        except PackageNotFoundError:
            pass
    return seen


#: hides the top-level modules named in argv from every import, as if their packages were not installed
HIDE_AND_IMPORT = """
import importlib.abc, sys
hidden = set(sys.argv[1:])
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
sys.meta_path.insert(0, Hide())
import torchattacks
"""


def test_bench_extra_declares_what_importing_torchattacks_needs():
    """As installed per the README (robbench, then the bench extra with torchattacks under --no-deps):
    every installed package outside robbench's dependencies and the bench extra is hidden; torchattacks imports."""
    pytest.importorskip("torchattacks", reason="the benchmark extra")
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bench = [Requirement(text) for text in project["optional-dependencies"]["bench"]]
    others = [r for r in bench if canonicalize_name(r.name) != "torchattacks"]
    keep = _closure([Requirement(text) for text in project["dependencies"]] + others) | {"torchattacks"}
    hidden = sorted(
        module for module, dists in packages_distributions().items()
        if module not in sys.stdlib_module_names and not any(canonicalize_name(d) in keep for d in dists)
    )
    done = subprocess.run([sys.executable, "-c", HIDE_AND_IMPORT, *hidden], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
