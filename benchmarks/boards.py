"""Boards at the scale of a real leaderboard: render time for N models x R runs on 6 boards.

    python -m benchmarks.boards                          # 1,000 models x 3 runs x 6 boards (18,000 records)
    python -m benchmarks.boards --models 100 --profile   # smaller, with the costliest functions
    python -m benchmarks.boards --from-hub               # also publish to the local test hub and render --from-hub

The render is ``robbench leaderboard`` itself, run as a command (markdown, plots, model pages and
site, as it writes them by default): wall time and the child process's CPU time (user + system),
and its peak memory. ``--profile`` also renders in this process under cProfile, for where the time
goes. ``--from-hub`` publishes the store to ``tests/hub_server.py`` (a local fake hub: no network)
and times ``robbench leaderboard --from-hub`` twice: with the download, then from the warm cache
(the render and the verification of every file against the hub's listing, without the download).

Writes ``benchmarks/<label>.json`` (figures, load averages, the profile's top functions); they are
summarised in ``benchmarks/boards.md``, a section of ``RESULTS.md`` (``python -m benchmarks.run
--report-only`` rebuilds it). Targets: rendering under 60 s on 2 cores; ``--from-hub``
under 2 minutes plus the download. The CPU may be shared: the load average is stated with each
figure, and the CPU time is the figure that load does not inflate.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .run import HERE

#: dataset -> (threat, norm, eps) x 2: the six standard boards
BOARDS = {
    "fashion-mnist": [("linf", "Linf", 0.1), ("l2", "L2", 1.5)],
    "mnist": [("linf", "Linf", 0.3), ("l2", "L2", 2.0)],
    "cifar10": [("linf", "Linf", 8 / 255), ("l2", "L2", 0.5)],
}


#: the synthetic records' status characters: misclassified clean, survived, broken by stage 0 or 1
_STATUS = np.frombuffer(b"-+01", dtype=np.uint8)


def synthesise(results: Path, models: int, runs: int, examples: int, seed: int = 0) -> int:
    """``models`` x ``runs`` records on every board, written as the store writes them, and the ledger; the record count.

    Each model has a clean and a robust accuracy; each run draws its examples' outcomes from them (the runs of a
    model differ example by example, so the board combines them as it does real runs).
    """
    from robbench.config import Metadata
    from robbench.evidence import Evidence
    from robbench.ownership import Claim, Ledger
    from robbench.results import AttackSpec, Checkpoint, EvalRecord, Examples, RunConfig, Versions
    from robbench.store import record_json, relative_record_path, write_ledger
    from robbench.threat_models import ThreatModel

    rng = np.random.default_rng(seed)
    ledger, count = Ledger(), 0
    attacks = [("pgd", "pgd/pgd"), ("autoattack", "autoattack/apgd-ce")]
    for m in range(models):
        name, sha = f"model-{m:04d}", f"{m:064x}"
        ledger.append(Claim(name, sha))
        clean, robust = rng.uniform(0.5, 0.99), rng.uniform(0.0, 0.5)
        for dataset, threats in BOARDS.items():
            for threat, norm, eps in threats:
                for run in range(runs):
                    draw = rng.random(examples)
                    codes = np.where(draw > clean, 0, np.where(draw < robust, 1, 2 + rng.integers(0, 2, examples)))
                    evidence = Evidence(stages=[stage for _, stage in attacks], status=_STATUS[codes].tobytes().decode())
                    config = RunConfig(
                        name=name, dataset=dataset, data_sha256="1" * 64,
                        threat_model=ThreatModel(name=threat, norm=norm, eps=eps, standard=True),
                        examples=Examples(start=0, stop=examples, test_size=10_000),
                        attacks=[AttackSpec(name=a, config={}) for a, _ in attacks], architecture="small-cnn",
                        checkpoint=Checkpoint(path="model.safetensors", sha256=sha), seed=run, batch_size=500, device="cpu",
                        versions=Versions(robbench="0.1.0", torch="2.13.0", pyautoattack="0.2.0", python="3.11"),
                    )
                    record = EvalRecord(
                        config=config, metadata=Metadata(training="pgd-at"), parameter_count=1000,
                        clean_accuracy=evidence.clean_accuracy(), robust_accuracy=evidence.robust_accuracy(),
                        attacks=evidence.attack_results(), evidence=evidence, wall_time_s=1.0,
                        timestamp=f"2026-01-01T00:00:{run:02d}+00:00",
                    )
                    path = results / relative_record_path(record)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(record_json(record))
                    count += 1
    write_ledger(results, ledger)
    return count


def timed_command(arguments: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``python -m robbench ARGUMENTS``: its wall and CPU seconds, peak memory and stderr lines (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "robbench", *arguments], env=env, capture_output=True, text=True,
                          cwd=HERE.parent)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"robbench {' '.join(arguments)} failed ({done.returncode}): {done.stderr[-2000:]}")
    stderr = [line for line in done.stderr.splitlines() if line.strip()]
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
        "peak_rss_mib": round(after.ru_maxrss / 1024),  # the largest child so far (Linux: KiB)
        "stderr_lines": len(stderr), "stderr_first": stderr[:3], "stdout_last": done.stdout.strip().splitlines()[-1:],
    }


def profiled_render(results: Path, out: Path) -> list[str]:
    """``write_leaderboards`` in this process under cProfile: the top functions by cumulative and by own time."""
    from robbench.leaderboard import write_leaderboards

    profiler = cProfile.Profile()
    profiler.runcall(write_leaderboards, results, out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)
    return [line.replace(str(HERE.parent) + "/", "") for line in text.getvalue().splitlines() if line.strip()]


def from_hub(results: Path, work: Path) -> dict:
    """Publish ``results`` to the local test hub, then time ``leaderboard --from-hub``: cold (with the download), warm."""
    sys.path.insert(0, str(HERE.parent))
    from tests.hub_server import HubServer

    token = "hf_benchmark_token"
    figures = {}
    with HubServer(token, limit_s=3600) as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HUB_CACHE": str(work / "cache"),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        figures["publish"] = timed_command(["publish", "--repo", "bench/board", "--results-dir", str(results)], env)
        repo = figures["publish"]["stdout_last"][0].split("--from-hub ", 1)[1].split()[0]
        for run in ("from_hub_cold", "from_hub_warm"):
            figures[run] = timed_command(["leaderboard", "--from-hub", repo, "--out", str(work / run)], env)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boards", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=1000, help="examples per record (default: 1,000)")
    parser.add_argument("--profile", action="store_true", help="also render under cProfile; the top functions go to the JSON")
    parser.add_argument("--from-hub", action="store_true", help="also time `leaderboard --from-hub` against the test hub")
    parser.add_argument("--label", default="boards")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robbench-boards-"))
    try:
        started = time.perf_counter()
        n_records = synthesise(work / "results", args.models, args.runs, args.examples)
        figures = {
            "label": args.label, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": args.models, "runs": args.runs, "boards": 6, "records": n_records, "examples": args.examples,
            "cores": os.cpu_count(), "synthesise_s": round(time.perf_counter() - started, 1),
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
        }
        figures["render"] = timed_command(["leaderboard", "--results-dir", str(work / "results"), "--out", str(work / "out")])
        figures["load_average_after_render"] = [round(v, 2) for v in os.getloadavg()]
        if args.from_hub:
            figures.update(from_hub(work / "results", work))
            figures["load_average_after_hub"] = [round(v, 2) for v in os.getloadavg()]
        if args.profile:
            figures["profile"] = profiled_render(work / "results", work / "profiled")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / f"{args.label}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "profile"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
