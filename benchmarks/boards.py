"""Boards at the scale of a real leaderboard: render time for N models x R runs on 6 boards.

    python -m benchmarks.boards                          # 1,000 models x 3 runs x 6 boards (18,000 records)
    python -m benchmarks.boards --models 100 --profile   # smaller, with the 15 costliest functions
    python -m benchmarks.boards --from-hub               # also publish to the local test hub and render --from-hub

Writes ``benchmarks/<label>.json`` (figures, load averages, the profile's top functions); they are
summarised in ``benchmarks/boards.md``, a section of ``RESULTS.md`` (``python -m benchmarks.run
--report-only`` rebuilds it). Targets: rendering under 60 s on 2 cores; ``--from-hub``
under 2 minutes plus the download. The CPU may be shared: the load average is stated with each figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .run import HERE

#: dataset -> (threat, norm, eps) x 2: the six standard boards
BOARDS = {
    "fashion-mnist": [("linf", "Linf", 0.1), ("l2", "L2", 1.5)],
    "mnist": [("linf", "Linf", 0.3), ("l2", "L2", 2.0)],
    "cifar10": [("linf", "Linf", 8 / 255), ("l2", "L2", 0.5)],
}


def synthesise(results: Path, models: int, runs: int, examples: int, seed: int = 0) -> int:
    """``models`` x ``runs`` records on every board, written as the store writes them, and the ledger; the record count."""
    from robbench.config import Metadata
    from robbench.evidence import Evidence
    from robbench.ownership import Claim, Ledger
    from robbench.results import AttackSpec, Checkpoint, EvalRecord, Examples, RunConfig, Versions
    from robbench.store import record_json, relative_record_path, write_ledger
    from robbench.threat_models import ThreatModel

    rng = random.Random(seed)
    ledger, count = Ledger(), 0
    attacks = [("pgd", "pgd/pgd"), ("autoattack", "autoattack/apgd-ce")]
    for m in range(models):
        name, sha = f"model-{m:04d}", f"{m:064x}"
        ledger.append(Claim(name, sha))
        clean, robust = rng.uniform(0.5, 0.99), rng.uniform(0.0, 0.5)
        for dataset, threats in BOARDS.items():
            for threat, norm, eps in threats:
                for run in range(runs):
                    status = "".join(
                        "-" if r > clean else "+" if r < robust else rng.choice("01") for r in (rng.random() for _ in range(examples))
                    )
                    evidence = Evidence(stages=[stage for _, stage in attacks], status=status)
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


def timed_render(results: Path, out: Path, profile: bool) -> tuple[float, list[str], str]:
    from robbench.leaderboard import write_leaderboards

    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    written, problems = write_leaderboards(results, out)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    top = ""
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        top = text.getvalue()
    return seconds, problems, top


def from_hub(results: Path, work: Path) -> dict:
    """Publish ``results`` to the local test hub, then time ``leaderboard --from-hub`` (download and render apart)."""
    sys.path.insert(0, str(HERE.parent))
    from tests.hub_server import HubServer

    token = "hf_benchmark_token"
    with HubServer(token, limit_s=3600) as server:
        env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HUB_CACHE": str(work / "cache"),
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        published = subprocess.run([sys.executable, "-m", "robbench", "publish", "--repo", "bench/board", "--results-dir",
                                    str(results)], env=env, capture_output=True, text=True)
        assert published.returncode == 0, published.stderr[-2000:]
        line = published.stdout.strip().splitlines()[-1]
        started = time.perf_counter()
        rendered = subprocess.run([*line.replace("robbench", f"{sys.executable} -m robbench", 1).split(), "--out",
                                   str(work / "from-hub")], env=env, capture_output=True, text=True)
        total = time.perf_counter() - started
        assert rendered.returncode == 0, rendered.stderr[-2000:]
    return {"from_hub_s": round(total, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.boards", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=1000, help="examples per record (default: 1,000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the render; the top functions go to the JSON")
    parser.add_argument("--from-hub", action="store_true", help="also time `leaderboard --from-hub` against the test hub")
    parser.add_argument("--label", default="boards")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robbench-boards-"))
    try:
        load_start = os.getloadavg()
        started = time.perf_counter()
        n_records = synthesise(work / "results", args.models, args.runs, args.examples)
        synth_s = time.perf_counter() - started
        render_s, problems, top = timed_render(work / "results", work / "out", args.profile)
        figures = {
            "label": args.label, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": args.models, "runs": args.runs, "boards": 6, "records": n_records, "examples": args.examples,
            "cores": os.cpu_count(), "load_average_start": [round(v, 2) for v in load_start],
            "synthesise_s": round(synth_s, 1), "render_s": round(render_s, 1), "problems": len(problems),
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        }
        if args.from_hub:
            figures.update(from_hub(work / "results", work))
        if top:
            figures["profile"] = top.splitlines()[:45]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / f"{args.label}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "profile"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
