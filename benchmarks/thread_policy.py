"""Thread policy under background load: torch's default (a thread per core) vs robbench's (the free cores).

Starts ``--busy`` processes that spin on the CPU, waits until the load average shows them, then
times the same small ``robbench evaluate`` (small-cnn PGD-AT on Fashion-MNIST, PGD only) in fresh
processes, alternating the two policies: ``--threads`` = the usable cores (what torch picks by
itself) and no ``--threads`` (robbench's choice, recorded). Writes wall and CPU seconds per run
and the medians to ``benchmarks/threads/<label>.json``::

    python -m benchmarks.thread_policy --busy 4 --repeats 3 --n-examples 100
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = REPO / "submissions" / "fashion-mnist" / "small-cnn-pgd-at" / "model.yaml"


def _spin() -> None:
    while True:
        pass


def _evaluate(threads: int | None, n_examples: int, results_dir: str) -> dict:
    """One evaluation in a fresh process; its wall and CPU seconds and the thread count it used."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # let the policy decide
    argv = [sys.executable, "-m", "robbench", "evaluate", str(MODEL), "--threat-model", "linf", "--attacks", "pgd",
            "--n-examples", str(n_examples), "--device", "cpu", "--results-dir", results_dir]
    argv += ["--threads", str(threads)] if threads is not None else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = json.loads((Path(results_dir) / "fashion-mnist" / "linf" / "fmnist-small-cnn-pgd-at.json").read_text())
    return {"wall_s": round(wall, 2), "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "device": record["device"], "robust_accuracy": record["robust_accuracy"]}


def main() -> None:
    from robbench.threads import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=4, help="background processes spinning on the CPU (default: 4)")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations per policy, alternating (default: 3)")
    parser.add_argument("--n-examples", type=int, default=100, help="test examples per evaluation (default: 100)")
    parser.add_argument("--settle-s", type=float, default=60, help="longest wait for the load average to rise (default: 60)")
    parser.add_argument("--label", default="cpu", help="threads/<label>.json (default: cpu)")
    args = parser.parse_args()

    cores = usable_cores()
    busy = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    try:
        deadline = time.monotonic() + args.settle_s
        while os.getloadavg()[0] < 0.8 * args.busy and time.monotonic() < deadline:
            time.sleep(2)
        runs = {"default": [], "robbench": []}
        with tempfile.TemporaryDirectory() as scratch:
            for repeat in range(args.repeats):
                order = ("default", "robbench") if repeat % 2 == 0 else ("robbench", "default")
                for policy in order:
                    load = os.getloadavg()[0]
                    run = _evaluate(cores if policy == "default" else None, args.n_examples, f"{scratch}/{policy}{repeat}")
                    runs[policy].append({**run, "load_before": round(load, 2)})
                    print(policy, run, f"load {load:.2f}", flush=True)
                    out = _write(args, cores, runs)  # after every run: a time limit still leaves the numbers so far
    finally:
        for process in busy:
            process.terminate()
    print(f"wrote {out}")


def _write(args: argparse.Namespace, cores: int, runs: dict) -> Path:
    from robbench.threads import auto_threads

    summary = {
        policy: {"runs": len(rs), "median_wall_s": statistics.median(r["wall_s"] for r in rs),
                 "median_cpu_s": statistics.median(r["cpu_s"] for r in rs)}
        for policy, rs in runs.items() if rs
    }
    result = {
        "what": "robbench evaluate small-cnn-pgd-at, linf, pgd, first n test images, CPU, under background load",
        "busy_processes": args.busy, "n_examples": args.n_examples, "usable_cores": cores,
        "robbench_threads_now": auto_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "runs": runs, "summary": summary,
    }
    if len(summary) == 2:
        result["speedup_wall"] = round(summary["default"]["median_wall_s"] / summary["robbench"]["median_wall_s"], 2)
    out = HERE / "threads" / f"{args.label}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
