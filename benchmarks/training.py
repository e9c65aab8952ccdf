"""Training benchmark: images/s of ``robbench train`` PGD-AT versus a minimal hand-written PGD-AT loop.

Both train the same architecture from scratch on the same images (the case's test images, written
to an .npz and given to robbench as the ``npz`` dataset: throughput does not depend on which
images), with the same batch size, PGD steps, step size, optimizer and, on CUDA, the precision
robbench train uses (bf16 autocast, channels_last). robbench's time is the whole ``train()`` call:
per-epoch monitor (one test image), the resumable state saved after every epoch, the submission
written at the end.
"""

from __future__ import annotations

import shutil

import numpy as np
import torch
import torch.nn.functional as F

from .common import CLOCK, WORK, Case, interleaved, ratio_summary, timed


def _npz(case: Case, n: int) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"train-{case.key.split('/')[0]}-{n}.npz"
    pixels = (case.x[:n] * 255).round().to(torch.uint8)
    x = pixels.permute(0, 2, 3, 1).numpy()  # NHWC uint8, as the npz dataset reads
    if x.shape[-1] == 1:
        x = x[..., 0]
    np.savez(path, x=x, y=case.y[:n].numpy())
    return str(path)


def pgd_at(case: Case, device: torch.device, *, n_train: int, batch_size: int, steps: int, epochs: int, repeats: int) -> dict:
    from robbench.config import TrainSpec
    from robbench.models import create_model
    from robbench.training.loop import train

    path = _npz(case, n_train)
    eps = case.threat.eps
    step_size = 2.5 * eps / steps
    architecture = case.key.split("/")[0]
    spec = TrainSpec.model_validate({
        "name": f"bench-{architecture}", "dataset": "npz",
        "dataset_kwargs": {"path": path, "train_path": path, "num_classes": 10, "linf_eps": eps},
        "architecture": architecture, "method": "pgd-at", "attack_steps": steps, "epochs": epochs,
        "batch_size": batch_size, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "constant",
        "eval_examples": 1, "eval_attack_steps": 1, "seed": 0,
    })
    out = WORK / f"train-out-{architecture}"
    cuda = device.type == "cuda"

    def robbench_train() -> dict:
        shutil.rmtree(out, ignore_errors=True)
        seconds, log = timed(device, lambda: train(spec, out, device=str(device)))
        epoch_seconds = sum(e["seconds"] for e in log["epochs"])  # the epochs themselves (with the 1-image monitor)
        return {"seconds": seconds, "epoch_seconds": epoch_seconds, "images": n_train * epochs}

    x_all, y_all = case.x[:n_train].to(device), case.y[:n_train].to(device)

    def hand_written() -> dict:
        torch.manual_seed(0)
        model = create_model(architecture, input_shape=tuple(case.x.shape[1:]), num_classes=10).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def run() -> float:
            total = torch.zeros((), device=device)
            for _ in range(epochs):
                order = torch.randperm(n_train, device=device)
                for start in range(0, n_train, batch_size):
                    index = order[start : start + batch_size]
                    x, y = x_all[index], y_all[index]
                    if cuda:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                        model.eval()
                        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
                        for _ in range(steps):
                            x_adv.requires_grad_(True)
                            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
                            x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
                        model.train()
                        loss = F.cross_entropy(model(x_adv), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.detach()
            return float(total)

        seconds, _ = timed(device, run)
        return {"seconds": seconds, "images": n_train * epochs}

    robbench_train(), hand_written()  # warm-up: first calls pay imports, allocator growth, cuDNN/oneDNN set-up
    runs = interleaved({"robbench": robbench_train, "hand": hand_written}, repeats)
    rate = {name: [r["images"] / r["seconds"] for r in rs] for name, rs in runs.items()}
    shutil.rmtree(out, ignore_errors=True)
    return {
        "config": {"n_train": n_train, "batch_size": batch_size, "steps": steps, "step_size": step_size, "eps": eps,
                   "epochs": epochs, "repeats": repeats, "precision": "bf16 autocast, channels_last" if cuda else "float32"},
        "robbench_images_per_s": [round(v, 2) for v in rate["robbench"]],
        "hand_images_per_s": [round(v, 2) for v in rate["hand"]],
        "ratio_robbench_over_hand": ratio_summary([a / b for a, b in zip(rate["robbench"], rate["hand"])]),
        # the same, counting only robbench's epochs (no start-up, state saving or submission writing); its
        # log times epochs by the wall clock, so this figure exists only when the loops are timed by it too
        **({"ratio_epochs_robbench_over_hand": ratio_summary(
            [(r["images"] / r["epoch_seconds"]) / b for r, b in zip(runs["robbench"], rate["hand"])]
        )} if CLOCK["name"] == "wall" else {}),
    }
