"""Layout benchmark: the same weights in contiguous (NCHW) and channels_last memory format.

robbench's loader puts every model's convolution weights in channels_last (``robbench/loader.py``);
this measures what that buys. Per repetition, interleaved, in both layouts at the attack batch size:
a forward-only loop under inference_mode (what AutoAttack's Square queries cost) and an
input-gradient forward+backward loop (what an APGD, FAB or PGD step costs). The layout may change
speed only: the logits of the case's examples are compared between the two (largest absolute
difference, argmax agreement).
"""

from __future__ import annotations

import copy

import torch

from .common import Case, bare_forward, bare_forward_backward, interleaved, ratio_summary

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def channels_last(case: Case, device: torch.device, *, n: int, batch_size: int, iterations: int, repeats: int) -> dict:
    """Whether the loader's channels_last buys speed, and only speed: time ratios and logit agreement."""
    # explicit copies in each layout: the case's model is whatever the loader made of it
    models = {name: copy.deepcopy(case.model).to(memory_format=fmt) for name, fmt in LAYOUTS.items()}
    x, y = case.x[:n], case.y[:n]
    xb, yb = x[:batch_size].to(device), y[:batch_size].to(device)

    with torch.inference_mode():  # also the forward warm-up (oneDNN/cuDNN primitive creation)
        logits = {name: torch.cat([model(xs.to(device)).cpu() for xs in x.split(batch_size)])
                  for name, model in models.items()}
    for model in models.values():
        bare_forward_backward(model, xb, yb, 1)  # warm-up of the backward kernels

    loops = {}
    for name, model in models.items():
        loops[f"forward_{name}"] = lambda model=model: {"seconds": bare_forward(model, xb, iterations)}
        loops[f"forward_backward_{name}"] = lambda model=model: {"seconds": bare_forward_backward(model, xb, yb, iterations)}
    runs = interleaved(loops, repeats)
    seconds = {name: [r["seconds"] for r in rs] for name, rs in runs.items()}

    def speedup(kind: str) -> dict:
        """contiguous seconds ÷ channels_last seconds, one ratio per repetition."""
        return ratio_summary([a / b for a, b in zip(seconds[f"{kind}_contiguous"], seconds[f"{kind}_channels_last"])])

    reference, converted = logits["contiguous"], logits["channels_last"]
    disagree = int((reference.argmax(1) != converted.argmax(1)).sum())
    return {
        "config": {"n": x.shape[0], "batch_size": xb.shape[0], "iterations": iterations, "repeats": repeats},
        "seconds_per_call": {name: [round(s / iterations, 5) for s in v] for name, v in seconds.items()},
        "forward_speedup": speedup("forward"),
        "forward_backward_speedup": speedup("forward_backward"),
        "max_abs_logit_difference": float((reference - converted).abs().max()),
        "argmax_disagreements": disagree,
        "argmax_agree": disagree == 0,
    }
