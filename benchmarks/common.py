"""What every benchmark shares: the two cases, device set-up, model-call counting and interleaved timing.

Every figure is a ratio of two loops timed in the same process, alternating (A B, B A, A B, ...),
each repetition giving one ratio; the report shows the median ratio and its range. On a shared
machine the absolute rates drift; the ratios of neighbours in time do much less.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
import yaml
from torch import nn

REPO = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / ".work"  # scratch (converted checkpoints, npz files); git-ignored

#: the third-party CIFAR-10 ResNet-18 that pyautoattack ships for its own example (a robust model)
def pyautoattack_checkpoint() -> Path:
    import pyautoattack

    return Path(pyautoattack.__file__).parent / "examples" / "model_test.pt"


#: what every loop is timed with: wall-clock time, or this process's CPU time (see ``setup``)
CLOCK = {"name": "wall", "read": time.perf_counter}


def clock() -> float:
    return CLOCK["read"]()


def setup(device: str, threads: int | None, cudnn_benchmark: bool = False, clock_name: str = "auto") -> torch.device:
    """The device with PyTorch's defaults (float32; cuDNN autotuning off unless asked for).

    cuDNN autotuning is off by default because AutoAttack's batches shrink as examples break and
    every new batch size is tuned again; both sides of every comparison run under the same setting.
    """
    if threads:
        torch.set_num_threads(threads)
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        torch.backends.cudnn.benchmark = cudnn_benchmark
    # On a CPU shared with other jobs, wall time mostly measures how often the scheduler ran us; with
    # one torch thread this process's CPU time measures the work itself. GPUs: wall time, always.
    if clock_name == "auto":
        clock_name = "process" if torch_device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    if clock_name == "process" and torch_device.type != "cpu":
        raise SystemExit("--clock process measures CPU work only; use wall time on a GPU")
    CLOCK.update(name=clock_name, read=time.process_time if clock_name == "process" else time.perf_counter)
    return torch_device


def describe(device: torch.device) -> str:
    from robbench.runtime import describe_device

    return describe_device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Case:
    key: str  # "small-cnn/fashion-mnist"
    spec_path: Path  # a model.yaml, for `robbench evaluate`
    model: nn.Module  # the same weights, loaded by robbench's loader, on the device, eval mode
    dataset: object  # robbench.data.Dataset
    threat: object  # robbench.threat_models.ThreatModel
    x: torch.Tensor  # test examples (CPU)
    y: torch.Tensor
    data_dir: str | None
    note: str = ""
    eps: float | None = None  # a non-standard radius (``robbench evaluate --eps``), None: the standard one


def _small_cnn_spec() -> tuple[Path, str]:
    robust = REPO / "submissions" / "fashion-mnist" / "small-cnn-pgd-at" / "model.yaml"
    if robust.is_file():
        return robust, "robbench's PGD-AT SmallCNN (submissions/fashion-mnist/small-cnn-pgd-at)"
    return REPO / "submissions" / "fashion-mnist" / "small-cnn-standard" / "model.yaml", (
        "robbench's standard SmallCNN (the PGD-AT one was not there)"
    )


def _resnet18_spec() -> Path:
    """pyautoattack's example checkpoint, as a robbench submission (safetensors + model.yaml)."""
    from safetensors.torch import save_file

    folder = WORK / "cifar10-resnet18-aa-example"
    spec = folder / "model.yaml"
    if spec.is_file():
        return spec
    folder.mkdir(parents=True, exist_ok=True)
    state = torch.load(pyautoattack_checkpoint(), map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    spec.write_text(yaml.safe_dump({
        "name": "cifar10-resnet18-aa-example",
        "dataset": "cifar10",
        "architecture": "resnet18",
        "checkpoint": "model.safetensors",
        "metadata": {"training": "unknown", "paper": "https://github.com/fra31/auto-attack"},
    }), encoding="utf-8")
    return spec


CASES = ("small-cnn", "resnet18")


def load_case(name: str, device: torch.device, n: int, data_dir: str | None) -> Case:
    from robbench.config import load_model_spec
    from robbench.loader import load_submission
    from robbench.threat_models import get_threat_model

    eps = None  # the threat model's standard radius
    if name == "small-cnn":
        spec_path, note = _small_cnn_spec()
        key = "small-cnn/fashion-mnist"
    elif name == "resnet18":
        spec_path, key = _resnet18_spec(), "resnet18/cifar10"
        note = ("pyautoattack's example CIFAR-10 ResNet-18 (examples/model_test.pt), a standard-trained model: at the "
                "standard ε = 8/255 PGD breaks every image, so the attacks run at ε = 1/255 (non-standard), where it "
                "keeps about 40% under PGD-10 and every AutoAttack component has survivors to attack")
        eps = 1 / 255
    else:
        raise SystemExit(f"unknown case {name!r}; use {', '.join(CASES)}")
    loaded = load_submission(load_model_spec(spec_path), data_dir)
    model = loaded.model.to(device).eval()
    x, y = loaded.dataset.load("test", n)
    threat = get_threat_model(loaded.dataset, "linf")
    if eps is not None:
        threat = threat.with_eps(eps)
    return Case(key, spec_path, model, loaded.dataset, threat, x, y, data_dir, note, eps)


# --- counting model calls -----------------------------------------------------------------------

@dataclass
class Counts:
    grad: int = 0  # examples whose logits a backward pass went through (one gradient evaluation each)
    forward: int = 0  # examples in every forward call, with or without a backward

    @property
    def forward_only(self) -> int:
        return self.forward - self.grad


@contextmanager
def counting(model: nn.Module) -> Iterator[Counts]:
    """Count forward calls of ``model`` and the backward passes through their outputs."""
    counts = Counts()

    def hook(module, args, output):
        n = int(output.shape[0])
        counts.forward += n
        if output.requires_grad:
            def on_backward(grad, n=n):
                counts.grad += n
            output.register_hook(on_backward)

    handle = model.register_forward_hook(hook)
    try:
        yield counts
    finally:
        handle.remove()


# --- the hardware limit: bare forward+backward ------------------------------------------------

def bare_forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int) -> float:
    """Seconds for ``iterations`` input-gradient passes (what one attack step costs) in a plain loop."""
    x = x.detach().clone().requires_grad_(True)
    sync(x.device)
    started = clock()
    for _ in range(iterations):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    sync(x.device)
    return clock() - started


def bare_forward(model: nn.Module, x: torch.Tensor, iterations: int) -> float:
    sync(x.device)
    started = clock()
    with torch.inference_mode():
        for _ in range(iterations):
            model(x)
    sync(x.device)
    return clock() - started


def interleaved(loops: dict[str, Callable[[], dict]], repeats: int) -> dict[str, list[dict]]:
    """Run the loops alternately ``repeats`` times (order rotated each time); every result per loop."""
    names = list(loops)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for name in order:
            results[name].append(loops[name]())
    return results


def ratio_summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "values": [round(v, 4) for v in values],
    }


def timed(device: torch.device, fn: Callable[[], object]) -> tuple[float, object]:
    sync(device)
    started = clock()
    result = fn()
    sync(device)
    return clock() - started, result


def env_summary(device: torch.device) -> dict:
    import platform

    from robbench.runtime import package_version

    info = {
        "device": describe(device),
        "torch": torch.__version__,
        "pyautoattack": package_version("pyautoattack"),
        "torchattacks": package_version("torchattacks"),
        "robbench": package_version("robbench"),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "clock": CLOCK["name"],
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info
