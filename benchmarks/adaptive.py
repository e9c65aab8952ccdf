"""What each ``--adaptive`` escalation costs relative to the AutoAttack run it follows.

    OMP_NUM_THREADS=1 python -m benchmarks.adaptive --threads 1       # writes adaptive/<label>.json
    OMP_NUM_THREADS=1 python -m benchmarks.adaptive --model mnist-small-cnn-trades --threat-model l2 \
        --n 100 --label mnist-small-cnn-trades-l2                      # one model, one threat model
    python -m benchmarks.run --report-only                             # RESULTS.md with its section

On one model (the committed Fashion-MNIST PGD-AT SmallCNN by default) and the first ``n`` test
images, per threat model (all of the dataset's, or those given): AutoAttack (standard) as the board
protocol runs it, then every distinct escalation of ``robbench.adaptive.ESCALATIONS`` for that norm
(or those of the attacks given with ``--only``), each in its round-1 and round-2 setting, on the
examples AutoAttack left (as ``--adaptive`` runs it: the engine's ``earlier``). Each row has this
process's CPU time (one thread) and the wall time, each also as the escalation's ÷ AutoAttack's,
and what the escalation broke of the survivors. CPU time is the figure to compare: on a shared
machine the wall time also counts the time other jobs held the cores. An escalation that does not
apply (``transfer`` from a model without removable preprocessing) is listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "adaptive"


def measure(model_name: str, n: int, threads: int, save: Callable[[dict], None], threat_models: list[str] | None = None,
            only: list[str] | None = None) -> dict:
    from robbench.adaptive import ESCALATIONS
    from robbench.attacks import AttackRules, create_attack
    from robbench.errors import RobbenchError
    from robbench.evaluation import run_attacks
    from robbench.loader import load_submission
    from robbench.zoo import model_spec

    torch.set_num_threads(threads)
    loaded = load_submission(model_spec(model_name))
    x, y = loaded.dataset.load("test", n)
    distinct = []
    for escalation in (e for escalations in ESCALATIONS.values() for e in escalations):
        if escalation not in distinct:
            distinct.append(escalation)
    rows: list[dict] = []
    result = {"model": model_name, "n": n, "threads": threads, "rows": rows, "finished": None}
    for threat in loaded.dataset.threat_models:
        if threat_models and threat.slug not in threat_models:
            continue
        rules = AttackRules.for_dataset(loaded.dataset, threat)

        def timed(attack, earlier=None):
            cpu, wall = time.process_time(), time.perf_counter()
            outcome = run_attacks(loaded.model, x, y, rules=rules, attacks=[attack], batch_size=n, earlier=earlier)
            return outcome, {"seconds": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}

        protocol, autoattack = timed(create_attack("autoattack"))
        broken = torch.from_numpy(protocol.evidence.broken())
        survivors = int(protocol.evidence.survived().sum())
        rows.append({"threat": threat.slug, "escalation": "autoattack", "round": 0, **autoattack, "ratio": 1.0,
                     "wall_ratio": 1.0, "attacked": int(protocol.evidence.clean_correct().sum()),
                     "broken": int(broken.sum())})
        save(result)
        for escalation in distinct:
            if threat.norm not in escalation.norms or (only and escalation.attack not in only):
                continue
            for round_number in (1, 2) if escalation.grows else (1,):
                attack = escalation.create(round_number)
                row = {"threat": threat.slug, "escalation": escalation.spec(round_number), "round": round_number,
                       "attacked": survivors}
                try:
                    attack.stages(loaded.model, rules)
                except RobbenchError as exc:
                    rows.append({**row, "skipped": str(exc)})
                    continue
                outcome, spent = timed(attack, broken)
                rows.append({**row, **spent, "ratio": spent["seconds"] / autoattack["seconds"],
                             "wall_ratio": spent["wall_s"] / autoattack["wall_s"],
                             "broken": int(outcome.evidence.broken().sum())})
                save(result)  # a killed run keeps the rows so far
    result["finished"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    save(result)
    return result


def report_section(folder: Path = OUT) -> list[str]:
    """The markdown section of every ``adaptive/*.json`` (for ``benchmarks.run.write_report``)."""
    lines: list[str] = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        lines += [
            f"## adaptive escalations: {path.stem} (cpu, {result['threads']} threads)", "",
            f"`python -m benchmarks.adaptive`, {result['finished'] or 'unfinished'}: `{result['model']}` on the first {result['n']} "
            "test images; each escalation attacks the examples AutoAttack left, as `--adaptive` runs it. CPU time "
            "of this process (one run each) and wall time; × AutoAttack is the escalation's time over AutoAttack's on "
            "all correctly classified examples. Compare CPU times: the wall time also counts the time other jobs held "
            "the machine's cores.", "",
            "| threat | escalation | round | CPU s | × AutoAttack (CPU) | wall s | × AutoAttack (wall) | attacked | broken |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in result["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['threat']} | `{row['escalation']}` | {row['round']} | — | skipped: "
                             f"{row['skipped'].split(';')[0]} | — | — | {row['attacked']} | — |")
                continue
            wall = (f"{row['wall_s']:.1f} | {row['wall_ratio']:.2f}" if "wall_s" in row else "— | —")  # older runs: CPU only
            lines.append(f"| {row['threat']} | `{row['escalation']}` | {row['round'] or 'protocol'} | "
                         f"{row['seconds']:.1f} | {row['ratio']:.2f} | {wall} | {row['attacked']} | {row['broken']} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fmnist-small-cnn-pgd-at", help="a committed submission's name or a model.yaml")
    parser.add_argument("--n", type=int, default=32, help="test images (default 32)")
    parser.add_argument("--threat-model", action="append", help="a threat model's slug (repeatable; default: all)")
    parser.add_argument("--only", action="append", help="the escalations of this attack only (repeatable; default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{args.label}.json"
    from robbench.atomic_files import atomic_write_text

    measure(args.model, args.n, args.threads, lambda result: atomic_write_text(path, json.dumps(result, indent=2) + "\n"),
            args.threat_model, args.only)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
