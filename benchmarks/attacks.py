"""Attack benchmarks: PGD efficiency and torchattacks PGD; AutoAttack versus pyautoattack directly.

- ``pgd``: per repetition, interleaved: the bare forward+backward loop at the batch size, robbench's
  PGD as ``evaluate`` runs it (``run_attacks``: clean pass, PGD on the correctly classified,
  verification), robbench's PGD loop alone (``pgd_perturb`` on one batch), and torchattacks' PGD
  (same eps, steps, step size, random start) with the clean and adversarial accuracy passes a user
  of it writes. Gradient evaluations are counted by a hook on the model (a backward pass through
  a forward call's logits counts its examples).
- ``autoattack``: per repetition, interleaved: ``robbench.evaluate(..., attacks=["autoattack"])``
  from the model.yaml (everything included: loading, clean pass, the four components, verification,
  reliability flags) and ``pyautoattack.AutoAttack(...).run_standard_evaluation`` on the same
  model, data, seed and batch size.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from .common import (
    Case, bare_forward, bare_forward_backward, counting, interleaved, ratio_summary, sync, timed,
)


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def pgd(case: Case, device: torch.device, *, n: int, batch_size: int, steps: int, repeats: int) -> dict:
    import torchattacks

    from robbench.attacks import AttackRules, derive_seed
    from robbench.attacks.pgd import PGDAttack, pgd_perturb
    from robbench.evaluation import run_attacks

    model, threat = case.model, case.threat
    eps, step_size = threat.eps, 2.5 * threat.eps / steps
    x, y = case.x[:n], case.y[:n]
    xb, yb = x[:batch_size].to(device), y[:batch_size].to(device)
    attack = PGDAttack(steps=steps)

    def bare() -> dict:
        seconds = bare_forward_backward(model, xb, yb, steps)
        return {"seconds": seconds, "grad_evals": steps * xb.shape[0]}

    seeds = {"robbench": 0, "torchattacks": 0}  # repetition k runs both with seed k: strength is compared over seeds

    def robbench_evaluate() -> dict:
        seed = seeds["robbench"]
        seeds["robbench"] += 1
        with counting(model) as counts:
            rules = AttackRules.for_dataset(case.dataset, threat, seed=seed, device=device)
            seconds, outcome = timed(device, lambda: run_attacks(model, x, y, rules=rules, attacks=[attack], batch_size=batch_size))
        return {"seconds": seconds, "grad_evals": counts.grad, "forward_only": counts.forward_only,
                "clean_accuracy": outcome.clean_accuracy, "robust_accuracy": outcome.robust_accuracy,
                "robust_mask": outcome.robust_mask.cpu()}

    def robbench_loop() -> dict:
        generator = torch.Generator(device=device).manual_seed(0)
        with counting(model) as counts:  # it stops attacking examples once misclassified: count, don't assume
            seconds, _ = timed(device, lambda: pgd_perturb(
                model, xb, yb, norm=threat.norm, eps=eps, steps=steps, step_size=step_size,
                value_range=case.dataset.value_range, generator=generator,
            ))
        return {"seconds": seconds, "grad_evals": counts.grad}

    def torchattacks_pgd() -> dict:
        """What a careful torchattacks user writes: a clean pass, then PGD on the correctly classified.

        Paired with robbench: the same batches (the correctly classified, in order) and, per batch, the
        global generator seeded with robbench's batch seed, so torchattacks' ``uniform_(-eps, eps)``
        start is robbench's ``(2·rand - 1)·eps`` start (same generator stream; equal up to rounding).
        Both then differ only in what they return: robbench the first misclassified iterate.
        """
        seed = seeds["torchattacks"]
        seeds["torchattacks"] += 1
        atk = torchattacks.PGD(model, eps=eps, alpha=step_size, steps=steps, random_start=True)
        robust = torch.zeros(x.shape[0], dtype=torch.bool)

        def run() -> None:
            with torch.inference_mode():
                correct = torch.cat([model(xs.to(device)).argmax(1).cpu() == ys for xs, ys in _batches(x, y, batch_size)])
            survivors = correct.nonzero().squeeze(1)
            for index in survivors.split(batch_size) if survivors.numel() else []:
                torch.manual_seed(derive_seed(seed, "pgd", "pgd", int(index[0])))
                xs, ys = x[index].to(device), y[index].to(device)
                adv = atk(xs, ys)
                with torch.inference_mode():
                    robust[index] = (model(adv).argmax(1) == ys).cpu()

        with counting(model) as counts:
            seconds, _ = timed(device, run)
        return {"seconds": seconds, "grad_evals": counts.grad, "forward_only": counts.forward_only,
                "robust_accuracy": int(robust.sum()) / x.shape[0], "robust_mask": robust}

    bare(), robbench_loop()  # warm-up (allocator, cuDNN autotuning)
    runs = interleaved(
        {"bare": bare, "robbench_evaluate": robbench_evaluate, "robbench_loop": robbench_loop, "torchattacks": torchattacks_pgd},
        repeats,
    )
    rate = {name: [r["grad_evals"] / r["seconds"] for r in rs] for name, rs in runs.items()}
    eff_eval = [a / b for a, b in zip(rate["robbench_evaluate"], rate["bare"])]
    eff_loop = [a / b for a, b in zip(rate["robbench_loop"], rate["bare"])]
    eff_ta = [a / b for a, b in zip(rate["torchattacks"], rate["bare"])]
    speedup = [t["seconds"] / r["seconds"] for t, r in zip(runs["torchattacks"], runs["robbench_evaluate"])]
    rate_vs_ta = [a / b for a, b in zip(rate["robbench_evaluate"], rate["torchattacks"])]
    rb, ta = runs["robbench_evaluate"], runs["torchattacks"]
    mean_rb = sum(r["robust_accuracy"] for r in rb) / len(rb)
    mean_ta = sum(r["robust_accuracy"] for r in ta) / len(ta)
    # same seed, same batches, same random start: examples torchattacks broke and robbench did not
    only_torchattacks = [int((r["robust_mask"] & ~t["robust_mask"]).sum()) for r, t in zip(rb, ta)]
    only_robbench = [int((t["robust_mask"] & ~r["robust_mask"]).sum()) for r, t in zip(rb, ta)]
    return {
        "config": {"n": x.shape[0], "batch_size": batch_size, "steps": steps, "eps": eps, "step_size": step_size,
                   "random_start": True, "repeats": repeats},
        "bare_grad_evals_per_s": [round(v, 1) for v in rate["bare"]],
        "efficiency_evaluate": ratio_summary(eff_eval),
        "efficiency_loop": ratio_summary(eff_loop),
        "efficiency_torchattacks": ratio_summary(eff_ta),
        "vs_torchattacks_wall_speedup": ratio_summary(speedup),  # torchattacks seconds / robbench seconds
        "vs_torchattacks_grad_rate": ratio_summary(rate_vs_ta),
        "robbench": {"clean_accuracy": rb[0]["clean_accuracy"], "robust_accuracy": [r["robust_accuracy"] for r in rb],
                     "mean_robust_accuracy": mean_rb, "grad_evals": rb[0]["grad_evals"], "forward_only": rb[0]["forward_only"],
                     "seconds": [round(r["seconds"], 4) for r in rb]},
        "torchattacks": {"robust_accuracy": [r["robust_accuracy"] for r in ta], "mean_robust_accuracy": mean_ta,
                         "grad_evals": ta[0]["grad_evals"], "forward_only": ta[0]["forward_only"],
                         "seconds": [round(r["seconds"], 4) for r in ta]},
        # over the same seeds 0..repeats-1 (each library's own random start): robbench's mean is not higher
        "robbench_at_least_as_strong": mean_rb <= mean_ta,
        "broken_by_torchattacks_only": only_torchattacks,  # per seed
        "broken_by_robbench_only": only_robbench,
    }


@contextmanager
def _counting_loaded_models():
    """Count calls of every model ``robbench.evaluate`` loads (it loads its own copy from the model.yaml)."""
    import robbench.loader as loader
    from .common import Counts

    totals = Counts()
    original = loader.load_submission

    def load(*args, **kwargs):
        loaded = original(*args, **kwargs)

        def hook(module, inputs, output):
            count = int(output.shape[0])
            totals.forward += count
            if output.requires_grad:
                output.register_hook(lambda grad, count=count: setattr(totals, "grad", totals.grad + count))

        loaded.model.register_forward_hook(hook)
        return loaded

    loader.load_submission = load
    try:
        yield totals
    finally:
        loader.load_submission = original


def autoattack(case: Case, device: torch.device, *, n: int, batch_size: int, repeats: int) -> dict:
    import logging

    from pyautoattack import AutoAttack

    import robbench
    from robbench.flags import model_flags

    model, threat = case.model, case.threat
    x, y = case.x[:n], case.y[:n]
    xb, yb = x[:batch_size].to(device), y[:batch_size].to(device)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)

    def direct() -> dict:
        with counting(model) as counts:
            def run():
                adversary = AutoAttack(model, norm=threat.norm, eps=threat.eps, version="standard", seed=0, device=str(device))
                return adversary.run_standard_evaluation(x, y, batch_size=batch_size)
            seconds, (_, y_adv) = timed(device, run)
        return {"seconds": seconds, "robust_accuracy": int((y_adv.cpu() == y).sum()) / x.shape[0],
                "grad_evals": counts.grad, "forward_only": counts.forward_only}

    def robbench_evaluate() -> dict:
        with _counting_loaded_models() as counts:
            seconds, records = timed(device, lambda: robbench.evaluate(
                case.spec_path, threat_models=threat.name, attacks=["autoattack"], n_examples=n, batch_size=batch_size,
                device=str(device), seed=0, data_dir=case.data_dir, eps=case.eps,
            ))
        record = records[0]
        return {"seconds": seconds, "robust_accuracy": record.robust_accuracy, "clean_accuracy": record.clean_accuracy,
                "record_wall_time_s": record.wall_time_s, "grad_evals": counts.grad, "forward_only": counts.forward_only,
                "stages": [[s.name, s.n_attacked, s.n_broken] for a in record.attacks for s in a.stages],
                "flags": [f.code for f in record.flags]}

    def bare() -> dict:
        return {"fb": bare_forward_backward(model, xb, yb, 5) / (5 * xb.shape[0]),
                "f": bare_forward(model, xb, 5) / (5 * xb.shape[0])}

    bare()
    runs = interleaved({"bare": bare, "direct": direct, "robbench": robbench_evaluate}, repeats)
    wall_ratio = [r["seconds"] / d["seconds"] for r, d in zip(runs["robbench"], runs["direct"])]
    fb = sorted(b["fb"] for b in runs["bare"])[len(runs["bare"]) // 2]  # seconds per example, median
    f = sorted(b["f"] for b in runs["bare"])[len(runs["bare"]) // 2]

    def efficiency(r: dict) -> dict:
        return {
            "grad_evals_per_s_over_bare": round(r["grad_evals"] / r["seconds"] * fb, 4),
            "model_work_fraction": round((r["grad_evals"] * fb + r["forward_only"] * f) / r["seconds"], 4),
        }

    # the reliability flags are part of robbench's evaluation, not of AutoAttack: their cost, measured once
    flag_seconds, _ = timed(device, lambda: model_flags(
        model, x, y, threat=threat, value_range=case.dataset.value_range, seed=0, device=device,
    ))
    rb, dr = runs["robbench"], runs["direct"]
    return {
        "config": {"n": x.shape[0], "batch_size": batch_size, "eps": threat.eps, "norm": threat.norm, "seed": 0,
                   "version": "standard", "repeats": repeats},
        "wall_ratio_robbench_over_direct": ratio_summary(wall_ratio),
        "robbench": {"robust_accuracy": rb[0]["robust_accuracy"], "clean_accuracy": rb[0]["clean_accuracy"],
                     "seconds": [round(r["seconds"], 3) for r in rb], "record_wall_time_s": [r["record_wall_time_s"] for r in rb],
                     "grad_evals": rb[0]["grad_evals"], "forward_only": rb[0]["forward_only"], "stages": rb[0]["stages"],
                     "flags": rb[0]["flags"], **efficiency(rb[0])},
        "direct": {"robust_accuracy": dr[0]["robust_accuracy"], "seconds": [round(r["seconds"], 3) for r in dr],
                   "grad_evals": dr[0]["grad_evals"], "forward_only": dr[0]["forward_only"], **efficiency(dr[0])},
        "flags_seconds": round(flag_seconds, 3),
        "bare_seconds_per_example": {"forward_backward": fb, "forward": f},
        "identical_robust_accuracy": all(r["robust_accuracy"] == d["robust_accuracy"] for r, d in zip(rb, dr)),
        "robust_accuracies": {"robbench": [r["robust_accuracy"] for r in rb], "direct": [d["robust_accuracy"] for d in dr]},
    }
