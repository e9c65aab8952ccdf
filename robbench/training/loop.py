"""``robbench train``: train a reference baseline, top to bottom in one function.

Writes into the output folder ``model.safetensors``, a ready ``model.yaml`` (with the measured
training cost) and ``train_log.json``: per epoch the training loss, learning rate and seconds,
clean and PGD accuracy on the first ``eval_examples`` test images (a monitor: nothing is
selected on them) and on the last ``holdout`` training images, which are kept out of training
so that early stopping (Rice et al., 2020) selects on data the final evaluation never sees.

After every epoch the whole training state (weights, optimiser, position in the schedule, every
random generator, the history) is written atomically to ``training_state.pt``; ``--resume``
continues from it exactly: on CPU, bit for bit the weights of an uninterrupted run. The file
is removed once the submission is written.

On CUDA the training set stays on the GPU and is augmented there, and the updates run in bf16
autocast with channels_last and cuDNN autotuning; the per-epoch evaluations run in float32.

Under torchrun (``torchrun --nproc-per-node N -m robbench train ...``) the updates go through
``DistributedDataParallel``: every rank draws the same global batch (same shuffle and
augmentation generators), keeps its contiguous share, crafts adversarial examples for it on the
unwrapped model (with its own attack generator), and the gradients are averaged, weighted so
that the step is the step of the global batch. With ``batch_size`` the global batch, a model
without batch norm or dropout therefore takes the single-process steps (up to summation order);
with batch norm each rank normalises by its own share's statistics, as usual under DDP, and rank
0's running statistics are copied to every rank before each evaluation. The per-epoch
evaluations are sharded like ``robbench evaluate``'s; rank 0 writes the state and the submission,
and ``--resume`` needs the same number of processes.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save as safetensors_bytes

from .. import distributed
from ..attacks import AttackRules, derive_seed
from ..attacks.pgd import PGDAttack, pgd_step_size
from ..config import Metadata, TrainSpec
from ..data import get_dataset
from ..digests import file_digest
from ..errors import RobbenchError
from ..evaluation import ProgressFactory, run_attacks
from ..loader import build_model, inner_model
from ..results import atomic_write_bytes, atomic_write_text, make_dirs
from ..runtime import describe_device, resolve_device, seed_everything, versions
from ..threat_models import get_threat_model
from .methods import METHODS, AdversarySettings

STATE_FILE = "training_state.pt"


def learning_rate_factor(schedule: str, progress: float, milestones: Sequence[float] = (0.5, 0.75)) -> float:
    """Multiplier of the base (for one-cycle: peak) learning rate at ``progress`` in [0, 1) of training."""
    if schedule == "piecewise":  # Madry et al., Rice et al.: / 10 at each milestone
        return 10.0 ** -sum(progress >= m for m in milestones)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "one-cycle":  # Wong et al.: linear from 0 to the peak at 2/5 of training, then back to 0
        return progress / 0.4 if progress < 0.4 else (1 - progress) / 0.6
    return 1.0


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of the zero-padded image, then a random left-right flip; on x's device."""
    n, c, h, w = x.shape
    if padding:
        padded = F.pad(x, (padding,) * 4)
        shift = torch.randint(0, 2 * padding + 1, (2, n, 1), generator=generator, device=x.device)
        rows = (shift[0] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (shift[1] + torch.arange(w, device=x.device))[:, None, None, :]
        images = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[images, channels, rows, cols]
    if flip:
        mirrored = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def split_training_set(
    x: torch.Tensor, y: torch.Tensor, n_train: int | None, holdout: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_fit, y_fit, x_holdout, y_holdout): the first ``n_train`` examples and the last ``holdout``."""
    cut = len(x) - holdout
    if cut < 1:
        raise RobbenchError(f"holdout {holdout} leaves none of the {len(x)} training examples to train on; lower holdout")
    fit = slice(0, cut if n_train is None else min(n_train, cut))
    return x[fit], y[fit], x[cut:], y[cut:]


def train(
    spec: TrainSpec,
    out_dir: Path,
    *,
    device: str = "auto",
    data_dir: str | None = None,
    resume: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``spec`` and write the submission folder; return the training log."""
    session_started = time.perf_counter()
    seed_everything(spec.seed)
    world = distributed.world()
    torch_device = world.device(resolve_device(device))  # cuda:LOCAL_RANK under torchrun
    cuda = torch_device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # fixed input shapes: let cuDNN pick its fastest kernels
    dataset = get_dataset(spec.dataset, **({**spec.dataset_kwargs, "data_dir": data_dir} if data_dir else spec.dataset_kwargs))
    if (spec.crop_padding or spec.horizontal_flip) and len(dataset.input_shape) != 3:
        raise RobbenchError(f"crop_padding and horizontal_flip need images; {dataset.name} inputs are not (C, H, W)")
    x_train, y_train = dataset.load("train")
    x_fit, y_fit, x_holdout, y_holdout = split_training_set(x_train, y_train, spec.n_train, spec.holdout)
    if world.active and (spec.batch_size < world.size or 0 < len(x_fit) % spec.batch_size < world.size):
        raise RobbenchError(
            f"{len(x_fit)} training examples in batches of {spec.batch_size} give a batch smaller than the {world.size} "
            "processes, which would leave one with nothing; change batch_size or n_train"
        )
    x_eval, y_eval = dataset.load("test", spec.eval_examples)
    threat = get_threat_model(dataset, spec.threat_model)
    if spec.eps is not None:
        threat = threat.with_eps(spec.eps)
    default_step = 1.25 * threat.eps if spec.method == "fgsm-rs" else pgd_step_size(threat.eps, spec.attack_steps)
    adversary = AdversarySettings(
        threat=threat, steps=spec.attack_steps, step_size=spec.attack_step_size or default_step,
        value_range=dataset.value_range, beta=spec.trades_beta,
    )
    method = METHODS[spec.method]

    model = build_model(spec.architecture, spec.architecture_kwargs, spec.normalization, dataset).to(torch_device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    trained = world.wrap_ddp(model, torch_device)  # the updates go through DDP; attacks and evaluations use `model`
    # rank 0 keeps the single-process seeds; other ranks draw their own attack starts and dropout masks
    rank_seed = spec.seed if world.is_main else derive_seed(spec.seed, "train-rank", world.rank)
    if not world.is_main:
        torch.manual_seed(rank_seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    total_steps = spec.epochs * math.ceil(len(x_fit) / spec.batch_size)
    generators = {
        "shuffle": torch.Generator().manual_seed(spec.seed),
        "attack": torch.Generator(device=torch_device).manual_seed(rank_seed + 1),
        "augment": torch.Generator(device=torch_device).manual_seed(spec.seed + 2),
    }
    monitor = PGDAttack(steps=spec.eval_attack_steps)
    x_fit, y_fit = x_fit.to(torch_device), y_fit.to(torch_device)  # CIFAR-sized sets live on the GPU

    monitor_rules = AttackRules.for_dataset(dataset, threat, seed=spec.seed, device=torch_device)

    def accuracies(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        outcome = run_attacks(model, x, y, rules=monitor_rules, attacks=[monitor], batch_size=500)
        return outcome.clean_accuracy, outcome.robust_accuracy

    state_path = out_dir / STATE_FILE
    history: list[dict] = []
    best: dict | None = None  # epoch, holdout PGD accuracy and weights of the best held-out epoch
    stopped: str | None = None
    step, seconds_before = 0, 0.0
    if resume:
        saved = world.on_main(lambda: _load_state(state_path, spec, torch_device, world.size))
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _set_rng_states(saved["rng"][world.rank], generators, torch_device)
        history, best, stopped, step, seconds_before = (
            saved["history"], saved["best"], saved["stopped"], saved["step"], saved["seconds"]
        )

    for epoch in range(len(history) + 1, spec.epochs + 1):
        if stopped:
            break
        epoch_started = time.perf_counter()
        trained.train()
        order = torch.randperm(len(x_fit), generator=generators["shuffle"]).to(torch_device)
        advance = (progress or (lambda d, t: lambda n: None))(f"epoch {epoch}/{spec.epochs}", len(x_fit))
        loss_sum = torch.zeros((), device=torch_device)  # summed on the device: no sync per step
        for start in range(0, len(order), spec.batch_size):
            index = order[start : start + spec.batch_size]
            x = augment(x_fit[index], spec.crop_padding, spec.horizontal_flip, generators["augment"])
            share = world.shard(torch.arange(len(index)))  # this rank's part of the global batch
            x, y = x[share], y_fit[index][share]
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = spec.lr * learning_rate_factor(spec.schedule, step / total_steps, spec.lr_milestones)
            step += 1
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                loss = method(trained, x, y, adversary, generators["attack"])
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; weighting by the share makes that the global batch's mean
            (loss * (len(share) * world.size / len(index))).backward()
            optimizer.step()
            loss_sum += loss.detach() * len(share)
            advance(len(index))
        (train_loss,) = world.sum([loss_sum.item() / len(x_fit)])
        world.sync_buffers(model)  # rank 0's running statistics: the ones evaluated below, kept and saved
        if not math.isfinite(train_loss):
            raise RobbenchError(f"training diverged in epoch {epoch} (loss {train_loss}); lower lr")

        entry = {"epoch": epoch, "loss": train_loss, "lr": lr}
        entry["clean_accuracy"], entry["pgd_accuracy"] = accuracies(x_eval, y_eval)
        if len(x_holdout):
            clean, robust = accuracies(x_holdout, y_holdout)
            entry["holdout_clean_accuracy"], entry["holdout_pgd_accuracy"] = clean, robust
            if best is None or robust > best["pgd_accuracy"]:
                best = {"epoch": epoch, "pgd_accuracy": robust, "model": _cpu_copy(model.state_dict())}
            if best["pgd_accuracy"] - robust > spec.catastrophic_drop:  # Wong et al.'s catastrophic overfitting
                entry["catastrophic_overfitting"] = True
                if spec.early_stopping:
                    stopped = (
                        f"catastrophic overfitting in epoch {epoch}: held-out PGD accuracy {robust:.3f}, "
                        f"best {best['pgd_accuracy']:.3f} in epoch {best['epoch']}"
                    )
        entry["seconds"] = round(time.perf_counter() - epoch_started, 2)
        entry["seconds"] = world.from_main(entry["seconds"])  # rank 0's clock, in every rank's history
        history.append(entry)
        rng = world.gather(_rng_states(generators, torch_device))  # one per rank
        if world.is_main:
            _save_state(state_path, {
                "config": spec.model_dump(mode="json"),
                "device_type": torch_device.type,
                "world_size": world.size,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng,
                "history": history,
                "best": best,
                "stopped": stopped,
                "step": step,
                "seconds": seconds_before + time.perf_counter() - session_started,
            })
            if log:
                log(entry)

    selected = history[-1]["epoch"]
    if spec.early_stopping and best is not None:  # Rice et al.: the best held-out epoch, not the last
        model.load_state_dict(best["model"])
        selected = best["epoch"]
    model.eval()
    cost = {
        "device": world.describe(describe_device(torch_device)),
        "epochs": len(history),
        "train_examples": len(x_fit),
        "seconds_per_epoch": round(sum(e["seconds"] for e in history) / len(history), 2),
        "total_seconds": round(seconds_before + time.perf_counter() - session_started, 2),
    }
    train_log = {
        "config": spec.model_dump(mode="json"),
        "threat_model": {"name": threat.name, "norm": threat.norm, "eps": threat.eps},
        "attack_step_size": adversary.step_size,
        "device": cost["device"],
        "precision": "bf16 autocast, channels_last" if cuda else "float32",
        "versions": versions(),
        "data": {  # fit on train[:train_examples], select on train[available - holdout:]
            "available_train_examples": len(x_train),
            "train_examples": len(x_fit),
            "holdout_examples": len(x_holdout),
            "test_monitor_examples": len(x_eval),
        },
        "selected_epoch": selected,
        "stopped_early": stopped,
        "cost": cost,
        "epochs": history,
    }
    if world.is_main:
        _write_submission(spec, model, out_dir, train_log)
        state_path.unlink(missing_ok=True)
    world.barrier()  # every rank returns once the submission is on disk
    return train_log


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _rng_states(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, torch.Tensor]:
    states = {name: g.get_state() for name, g in generators.items()}
    states["torch"] = torch.get_rng_state()  # dropout
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, torch.Tensor], generators: dict[str, torch.Generator], device: torch.device) -> None:
    for name, generator in generators.items():
        generator.set_state(states[name])
    torch.set_rng_state(states["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def _save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_state(path: Path, spec: TrainSpec, device: torch.device, world_size: int) -> dict:
    if not path.is_file():
        raise RobbenchError(f"{path} not found: no interrupted run to resume there; run without --resume")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file; atomic writes make this rare
        raise RobbenchError(f"{path} is not a readable training state ({exc}); delete it and train again") from exc
    if not isinstance(saved, dict) or "world_size" not in saved:
        raise RobbenchError(f"{path} was written by an older robbench; delete it and train again without --resume")
    config = spec.model_dump(mode="json")
    changed = [key for key in config if saved["config"].get(key) != config[key]]
    if changed:
        raise RobbenchError(f"{path} was written by a run with another {changed[0]!r}; resume with the same train.yaml")
    if saved["device_type"] != device.type:
        raise RobbenchError(f"{path} was written on {saved['device_type']}; resume with --device {saved['device_type']}")
    if saved["world_size"] != world_size:
        raise RobbenchError(
            f"{path} was written by {saved['world_size']} process(es), this run has {world_size}; "
            f"resume with torchrun --nproc-per-node {saved['world_size']} (or without torchrun for 1)"
        )
    return saved


def _write_submission(spec: TrainSpec, model: torch.nn.Module, out_dir: Path, train_log: dict) -> None:
    make_dirs(out_dir)
    weights = out_dir / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in inner_model(model).state_dict().items()}
    atomic_write_bytes(weights, safetensors_bytes(state, metadata={"robbench_name": spec.name}))
    metadata = Metadata(**{**spec.metadata.model_dump(), "training": spec.method, "training_cost": train_log["cost"]})
    model_yaml = {
        "name": spec.name,
        "dataset": spec.dataset,
        **({"dataset_kwargs": spec.dataset_kwargs} if spec.dataset_kwargs else {}),
        "architecture": spec.architecture,
        "architecture_kwargs": spec.architecture_kwargs,
        "checkpoint": weights.name,
        "sha256": file_digest(weights),
        "normalization": spec.normalization.model_dump() if spec.normalization else None,
        "threat_models": None,
        "metadata": metadata.model_dump(),
    }
    atomic_write_text(out_dir / "model.yaml", yaml.safe_dump(model_yaml, sort_keys=False))
    atomic_write_text(out_dir / "train_log.json", json.dumps(train_log, indent=2) + "\n")
