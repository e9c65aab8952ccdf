"""Settle the committed reliability flags: ``robbench evaluate --adaptive`` on every flagged record in results/.

Each flagged protocol record is continued, not re-run (docs/adaptive.md): the command names the
record's model, threat model, radius, examples, seed and batch size, so ``--adaptive`` finds the
stored run and spends only the escalations. Then it prints, per record, the protocol's robust
accuracy and the best-known one after the escalations, with what each flag now says on the board.

    python scripts/settle_flags.py --list                     # the flagged records and their commands
    python scripts/settle_flags.py                            # run them all (CPU hours)
    python scripts/settle_flags.py --only A --only B --seconds 900   # two models, each record's escalations
                                                                     # started within 900 s (docs/adaptive.md)
    python scripts/settle_flags.py --only NAME --tiny --results-dir DIR
        # a check of this script: one model's flagged records copied into DIR, continued there by
        # one escalation each (--adaptive-rounds 1 --adaptive-seconds 1)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from robbench.adaptive import escalated_flags
from robbench.leaderboard import load_store
from robbench.leaderboard.cells import flags_text
from robbench.store import relative_record_path
from robbench.results import EvalRecord
from robbench.store import adversarial_path, read_store

ROOT = Path(__file__).resolve().parent.parent
#: --tiny: the budget that runs exactly one escalation (the budget is checked before each one)
TINY_BUDGET = ["--adaptive-rounds", "1", "--adaptive-seconds", "1"]


def flagged(results: Path) -> list[EvalRecord]:
    """Protocol records (not escalations) with a flag that has escalations, in path order.

    A record at another seed than the board's (a ``verify --replay`` run) is left out: it covers the same
    examples as the seed-0 record, whose escalations continue every earlier run of them.
    """
    records, problems = read_store(results)
    if problems:
        raise SystemExit(f"settle_flags: {problems[0]}")
    return [
        r for r in records
        if r.config.escalation is None and escalated_flags(f.code for f in r.flags)
        and not any(f.code == "non-standard-seed" for f in r.flags)
    ]


def command(record: EvalRecord, results_dir: Path, budget: list[str]) -> list[str]:
    threat = record.threat_model
    eps = [] if threat.standard else ["--eps", repr(threat.eps)]
    return [
        sys.executable, "-m", "robbench", "evaluate", record.name, "--threat-model", threat.name, *eps,
        "--attacks", ",".join(a.name for a in record.config.attacks), "--n-examples", str(record.examples.stop),
        "--batch-size", str(record.batch_size), "--seed", str(record.seed), "--results-dir", str(results_dir),
        "--threads", str(record.cpu_threads or 1),  # CPU numerics move with the thread count
        "--adaptive", *budget,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results", help="where escalation records go")
    parser.add_argument("--only", action="append", help="only the records of this model name (repeatable; run in the order given)")
    parser.add_argument("--seconds", type=float, help="per record: start no escalation after this many seconds (--adaptive-seconds)")
    parser.add_argument("--rounds", type=int, help="per record: at most this many rounds (--adaptive-rounds)")
    parser.add_argument("--tiny", action="store_true", help="one escalation per record, the records copied into --results-dir")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    if args.tiny and args.results_dir.resolve() == (ROOT / "results").resolve():
        parser.error("--tiny is a check of this script: pass another --results-dir than results/")
    records = flagged(ROOT / "results")
    if args.only:
        records = sorted((r for r in records if r.name in args.only), key=lambda r: args.only.index(r.name))
    if not records:
        parser.error("no flagged record" + (f" of {', '.join(args.only)}" if args.only else ""))
    budget = TINY_BUDGET if args.tiny else [
        *(["--adaptive-seconds", str(args.seconds)] if args.seconds else []),
        *(["--adaptive-rounds", str(args.rounds)] if args.rounds else []),
    ]
    for record in records:
        if record.examples.start != 0:
            print(f"skipped {relative_record_path(record)}: examples from {record.examples.start}, not 0", file=sys.stderr)
            continue
        run = command(record, args.results_dir, budget)
        flags = ", ".join(escalated_flags(f.code for f in record.flags))
        print(f"{relative_record_path(record)} ({flags}):\n  python {' '.join(run[1:])}", flush=True)
        if args.tiny and not args.list:
            copy(record, args.results_dir)
        if not args.list:
            subprocess.run(run, check=True, cwd=ROOT)
    if not args.list:
        summary(args.results_dir, {r.name for r in records})
    return 0


def copy(record: EvalRecord, results_dir: Path) -> None:
    """The committed record and its adversarial examples, into ``results_dir`` (where --adaptive continues it)."""
    source = ROOT / "results" / relative_record_path(record)
    target = results_dir / relative_record_path(record)
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in (source, adversarial_path(source)):
        shutil.copy2(path, target.parent / path.name)


def summary(results: Path, names: set[str]) -> None:
    """Per board and model: the protocol run's robust accuracy, the best-known one, and the flags' text."""
    for key, entries in load_store(results).boards.items():
        for entry in entries:
            if entry.name in names and any(run.config.escalation for run in entry.runs):
                print(f"{key.dataset}/{key.threat.slug} {entry.name}: protocol {100 * entry.primary.robust_accuracy:.2f} % "
                      f"-> best-known {100 * entry.robust_accuracy:.2f} %; {flags_text(entry)}")


if __name__ == "__main__":
    sys.exit(main())
