"""The benchmark scripts run end to end at a tiny size (their figures are meaningless at this size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# a subprocess that times every benchmark, and trains on the Fashion-MNIST training split
pytestmark = [pytest.mark.slow, pytest.mark.needs_data, pytest.mark.timeout(900)]


def test_benchmarks_run_and_write_json_and_a_report(tmp_path):
    pytest.importorskip("torchattacks", reason="the benchmark extra: pip install --no-deps torchattacks==3.5.1")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--device", "cpu", "--threads", "1", "--cases", "small-cnn",
         "--scale", "0.02", "--repeats", "1", "--label", "smoke", "--out-dir", str(out)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "smoke.json").read_text())
    case = data["cases"]["small-cnn/fashion-mnist"]
    assert case["pgd"]["efficiency_evaluate"]["median"] > 0
    assert case["pgd"]["robbench"]["grad_evals"] > 0 and case["pgd"]["torchattacks"]["grad_evals"] > 0
    assert case["autoattack"]["identical_robust_accuracy"], case["autoattack"]["robust_accuracies"]
    assert case["train"]["ratio_robbench_over_hand"]["median"] > 0
    report = (tmp_path / "RESULTS.md").read_text()
    assert "small-cnn/fashion-mnist" in report and data["environment"]["device"] in report
