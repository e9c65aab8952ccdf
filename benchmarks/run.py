"""Run the benchmarks and write ``benchmarks/results/<label>.json`` and ``benchmarks/RESULTS.md``.

    python -m benchmarks.run --device cpu --threads 1          # both cases, CPU sizes
    python -m benchmarks.run --device cuda                      # both cases, GPU sizes
    python -m benchmarks.run --report-only                      # RESULTS.md from the JSON files

RESULTS.md is rebuilt from every JSON file in ``benchmarks/results/`` plus ``benchmarks/analysis.md``
(the hand-written explanation of the figures), so a GPU run adds its section beside the CPU one.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: sizes per device kind: (small-cnn, resnet18); CPU sizes keep a run on 1-2 shared cores under ~30 min
PRESETS = {
    "cpu": {
        "small-cnn": {
            "layout": {"n": 256, "batch_size": 128, "iterations": 10, "repeats": 11},
            "pgd": {"n": 256, "batch_size": 128, "steps": 20, "repeats": 11},
            "autoattack": {"n": 32, "batch_size": 32, "repeats": 3},
            "train": {"n_train": 512, "batch_size": 128, "steps": 10, "epochs": 1, "repeats": 3},
        },
        "resnet18": {
            "layout": {"n": 32, "batch_size": 32, "iterations": 3, "repeats": 11},
            "pgd": {"n": 32, "batch_size": 32, "steps": 10, "repeats": 5},
            "autoattack": {"n": 4, "batch_size": 4, "repeats": 1},
            "train": {"n_train": 64, "batch_size": 32, "steps": 3, "epochs": 1, "repeats": 2},
        },
    },
    "cuda": {  # about 2 minutes on an H100 (an estimate: no GPU was lent when these were chosen)
        "small-cnn": {
            "layout": {"n": 4096, "batch_size": 1024, "iterations": 20, "repeats": 5},
            "pgd": {"n": 4096, "batch_size": 1024, "steps": 20, "repeats": 3},
            "autoattack": {"n": 250, "batch_size": 250, "repeats": 1},
            "train": {"n_train": 4096, "batch_size": 256, "steps": 10, "epochs": 2, "repeats": 2},
        },
        "resnet18": {
            "layout": {"n": 1000, "batch_size": 500, "iterations": 10, "repeats": 5},
            "pgd": {"n": 1000, "batch_size": 500, "steps": 20, "repeats": 3},
            "autoattack": {"n": 64, "batch_size": 64, "repeats": 1},
            "train": {"n_train": 1000, "batch_size": 250, "steps": 10, "epochs": 2, "repeats": 2},
        },
    },
}
BENCHMARKS = ("layout", "pgd", "train", "autoattack")  # the order they run in


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning on (both sides of each comparison)")
    parser.add_argument("--clock", choices=("auto", "wall", "process"), default="auto",
                        help="time loops by wall clock or by this process's CPU time (auto: CPU time on CPU with one thread)")
    parser.add_argument("--cases", default="small-cnn,resnet18")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: layout, pgd, autoattack, train")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every n (smoke tests: e.g. 0.1)")
    parser.add_argument("--repeats", type=int, default=None, help="override every benchmark's repetitions")
    parser.add_argument("--data-dir", default=None, help="DIR/<dataset>/ holds the data (e.g. DIR/cifar10/test-0-999.npz)")
    parser.add_argument("--label", default=None, help="results/<label>.json (default: the device kind)")
    parser.add_argument("--out-dir", default=str(RESULTS), help="where the JSON goes (RESULTS.md: beside results/)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.report_only:
        write_report(out_dir)
        return 0

    from . import attacks, layout, training
    from .common import env_summary, load_case, setup

    device = setup(args.device, args.threads, args.cudnn_benchmark, args.clock)
    preset = PRESETS["cuda" if device.type == "cuda" else "cpu"]
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    label = args.label or device.type
    path = out_dir / f"{label}.json"
    # a run of some benchmarks updates those in an earlier run's file of the same label, keeping the others
    result = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"label": label, "cases": {}}
    result["started"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    result["environment"] = env_summary(device)
    def scaled(config: dict) -> dict:
        config = dict(config)
        for key in ("n", "n_train"):
            if key in config:
                config[key] = max(config.get("batch_size", 1) if args.scale >= 1 else 2, int(config[key] * args.scale))
                config["batch_size"] = min(config["batch_size"], config[key])
        if args.repeats:
            config["repeats"] = args.repeats
        return config

    cases = {}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        if name not in preset:
            raise SystemExit(f"unknown case {name!r}; use {', '.join(preset)}")
        n_needed = max(scaled(config).get("n", scaled(config).get("n_train", 0)) for config in preset[name].values())
        cases[name] = load_case(name, device, n_needed, args.data_dir)
    # benchmark by benchmark, quickest first: a run stopped at a time limit keeps the JSON of what finished
    for bench in sorted(only, key=lambda b: BENCHMARKS.index(b) if b in BENCHMARKS else -1):
        for name, case in cases.items():
            config = scaled(preset[name][bench]) if bench in BENCHMARKS else {}
            entry = result["cases"].setdefault(case.key, {})
            entry.update({"note": case.note, "threat": {"norm": case.threat.norm, "eps": case.threat.eps}})
            started = time.perf_counter()
            print(f"[{case.key}] {bench} {config}", flush=True)
            if bench == "layout":
                entry[bench] = layout.channels_last(case, device, **config)
            elif bench == "pgd":
                entry[bench] = attacks.pgd(case, device, **config)
            elif bench == "autoattack":
                entry[bench] = attacks.autoattack(case, device, **config)
            elif bench == "train":
                entry[bench] = training.pgd_at(case, device, **config)
            else:
                raise SystemExit(f"unknown benchmark {bench!r}; use {', '.join(BENCHMARKS)}")
            entry[bench]["benchmark_seconds"] = round(time.perf_counter() - started, 1)
            entry[bench]["environment"] = {**env_summary(device), "finished": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}
            print(json.dumps(_headline(bench, entry[bench])), flush=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")  # after every benchmark
    result["environment"]["load_average_end"] = env_summary(device).get("load_average")
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    write_report(out_dir)
    return 0


def _headline(bench: str, r: dict) -> dict:
    if bench == "pgd":
        return {"efficiency": r["efficiency_evaluate"]["median"], "loop": r["efficiency_loop"]["median"],
                "vs_torchattacks": r["vs_torchattacks_wall_speedup"]["median"],
                "acc": [r["robbench"]["mean_robust_accuracy"], r["torchattacks"]["mean_robust_accuracy"]]}
    if bench == "autoattack":
        return {"wall_ratio": r["wall_ratio_robbench_over_direct"]["median"], "identical": r["identical_robust_accuracy"],
                "acc": r["robust_accuracies"]}
    if bench == "layout":
        return {"forward": r["forward_speedup"]["median"], "forward_backward": r["forward_backward_speedup"]["median"],
                "max_abs_logit_difference": r["max_abs_logit_difference"], "argmax_agree": r["argmax_agree"]}
    return {"ratio": r["ratio_robbench_over_hand"]["median"]}


# --- the report ---------------------------------------------------------------------------------

def _range(summary: dict, digits: int = 2) -> str:
    return f"{summary['median']:.{digits}f} ({summary['min']:.{digits}f}–{summary['max']:.{digits}f}, {len(summary['values'])} runs)"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _section(data: dict) -> list[str]:
    env = data["environment"]
    lines = [
        f"## {data['label']}: {env['device']}",
        "",
        f"Run {data['started']}; torch {env['torch']}, pyautoattack {env['pyautoattack']}, torchattacks "
        f"{env['torchattacks']}, Python {env['python']}; {env['threads']} torch thread(s) on {env['cpu_count']} cores; "
        f"loops timed by {'this process' + chr(39) + 's CPU time' if env.get('clock') == 'process' else 'wall-clock time'}"
        + (f", load average {env['load_average'][0]} at the start" if env.get("load_average") else "")
        + (f"; cuDNN benchmark {env['cudnn_benchmark']}, cuDNN TF32 {env['cudnn_allow_tf32']}" if "cudnn_benchmark" in env else "")
        + ".",
        "",
        "| case | figure | measured: median (range, runs) | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, case in data["cases"].items():
        if "pgd" in case:
            p = case["pgd"]
            c = p["config"]
            setting = f"PGD-{c['steps']}, batch {c['batch_size']}, {c['n']} examples"
            lines += [
                f"| {key} | robbench PGD gradient evaluations/s ÷ bare forward+backward ({setting}, evaluate path: clean pass, attack, verification) | {_range(p['efficiency_evaluate'])} | ≥ 0.85 | {_verdict(p['efficiency_evaluate']['median'] >= 0.85)} |",
                f"| {key} | same, robbench's PGD loop alone (`pgd_perturb`, one batch) | {_range(p['efficiency_loop'])} | | |",
                f"| {key} | same, torchattacks PGD (its loop plus clean and adversarial passes) | {_range(p['efficiency_torchattacks'])} | | |",
                f"| {key} | time torchattacks ÷ robbench (clock above), robust accuracy of {c['n']} examples ({setting}) | {_range(p['vs_torchattacks_wall_speedup'])} | ≥ 1 | {_verdict(p['vs_torchattacks_wall_speedup']['median'] >= 1)} |",
                f"| {key} | gradient evaluations/s robbench ÷ torchattacks | {_range(p['vs_torchattacks_grad_rate'])} | | |",
                f"| {key} | robust accuracy robbench vs torchattacks, mean over seeds 0..{c['repeats'] - 1}, paired random starts (per seed) | {p['robbench']['mean_robust_accuracy']:.4f} vs {p['torchattacks']['mean_robust_accuracy']:.4f} ({', '.join(f'{a:.4f}' for a in p['robbench']['robust_accuracy'])} vs {', '.join(f'{a:.4f}' for a in p['torchattacks']['robust_accuracy'])}) | robbench ≤ | {_verdict(p['robbench_at_least_as_strong'])} |",
                f"| {key} | examples broken by only one of them, per seed, same random start (torchattacks only / robbench only) | {', '.join(str(v) for v in p['broken_by_torchattacks_only'])} / {', '.join(str(v) for v in p['broken_by_robbench_only'])} | 0 / any | {_verdict(sum(p['broken_by_torchattacks_only']) == 0)} |",
            ]
        if "autoattack" in case:
            a = case["autoattack"]
            c = a["config"]
            acc = a["robust_accuracies"]
            lines += [
                f"| {key} | time (clock above) `robbench evaluate --attacks autoattack` ÷ `run_standard_evaluation` ({c['n']} examples, batch {c['batch_size']}, seed 0) | {_range(a['wall_ratio_robbench_over_direct'], 3)} | ≤ 1.05 | {_verdict(a['wall_ratio_robbench_over_direct']['median'] <= 1.05)} |",
                f"| {key} | robust accuracy robbench vs direct (each run) | {', '.join(f'{v:.4f}' for v in acc['robbench'])} vs {', '.join(f'{v:.4f}' for v in acc['direct'])} | identical | {_verdict(a['identical_robust_accuracy'])} |",
                f"| {key} | AutoAttack gradient evaluations/s ÷ bare forward+backward at batch {c['batch_size']}: robbench / direct | {a['robbench']['grad_evals_per_s_over_bare']:.2f} / {a['direct']['grad_evals_per_s_over_bare']:.2f} | | |",
                f"| {key} | AutoAttack model work (gradient evaluations and forward-only queries at bare speed) ÷ wall time: robbench / direct | {a['robbench']['model_work_fraction']:.2f} / {a['direct']['model_work_fraction']:.2f} | | |",
                f"| {key} | of robbench's AutoAttack wall time: reliability flags (measured alone) | {a['flags_seconds']:.2f} s of {a['robbench']['seconds'][0]:.2f} s | | |",
            ]
        if "train" in case:
            t = case["train"]
            c = t["config"]
            lines.append(
                f"| {key} | images/s `robbench train` PGD-AT ÷ hand-written PGD-AT loop ({c['n_train']} images, batch {c['batch_size']}, PGD-{c['steps']}, {c['precision']}) | {_range(t['ratio_robbench_over_hand'])} | | |"
            )
            if "ratio_epochs_robbench_over_hand" in t:
                lines.append(
                    f"| {key} | same, robbench's epochs only (its log's per-epoch seconds: no start-up, state saving or submission writing) | {_range(t['ratio_epochs_robbench_over_hand'])} | | |"
                )
        if "layout" in case:
            m = case["layout"]
            c = m["config"]
            setting = f"batch {c['batch_size']}, {c['iterations']} calls per loop"
            lines += [
                f"| {key} | time contiguous ÷ channels_last weights (clock above), forward only under inference_mode, as Square's queries ({setting}) | {_range(m['forward_speedup'])} | ≥ 1 | {_verdict(m['forward_speedup']['median'] >= 1)} |",
                f"| {key} | same, input-gradient forward+backward, as an APGD/FAB/PGD step | {_range(m['forward_backward_speedup'])} | ≥ 1 | {_verdict(m['forward_backward_speedup']['median'] >= 1)} |",
                f"| {key} | largest absolute logit difference between the layouts; argmax disagreements ({c['n']} examples) | {m['max_abs_logit_difference']:.2g}; {m['argmax_disagreements']} | float rounding; 0 | {_verdict(m['argmax_agree'])} |",
            ]
    lines.append("")
    for key, case in data["cases"].items():
        # the header is the latest run's, which may have run only some benchmarks: each one's own finish and load
        envs = {bench: case[bench]["environment"] for bench in BENCHMARKS
                if "finished" in case.get(bench, {}).get("environment", {})}
        finished = ", ".join(
            f"{bench} {env['finished']}" + (f" (load average {env['load_average'][0]})" if "load_average" in env else "")
            for bench, env in envs.items()
        )
        lines.append(f"- {key}: {case['note']}; L∞ ε = {case['threat']['eps']:.4g}." + (f" Finished: {finished}." if finished else ""))
    lines.append("")
    return lines


def write_report(out_dir: Path = RESULTS) -> Path:
    sections = []
    for path in sorted(out_dir.glob("*.json")):
        sections += _section(json.loads(path.read_text(encoding="utf-8")))
    from .adaptive import report_section as adaptive_section
    from .attack_libraries import report_section

    sections += report_section(out_dir.parent / "libraries")
    sections += adaptive_section()
    analysis = HERE / "analysis.md"
    text = "\n".join([
        "# robbench benchmarks",
        "",
        "Generated by `python -m benchmarks.run` from `benchmarks/results/*.json` and `benchmarks/analysis.md`; "
        "see `benchmarks/README.md`. Every figure is a ratio of two loops timed alternately in one process; "
        "the median over the repetitions is the figure, the range shows the noise.",
        "",
        *sections,
        analysis.read_text(encoding="utf-8") if analysis.is_file() else "",
        (HERE / "boards.md").read_text(encoding="utf-8") if (HERE / "boards.md").is_file() else "",  # benchmarks.boards
    ])
    report = out_dir.parent / "RESULTS.md"
    report.write_text(text.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {report}")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
