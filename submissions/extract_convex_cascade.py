"""Rebuild the committed ``model.safetensors`` of the two convex-adversarial cascade submissions from the published files.

github.com/locuslab/convex_adversarial (MIT) publishes the NeurIPS 2018 models as cascades: one
``.pth`` holding ``{'state_dict': [stage 0, stage 1, stage 2], 'err': ..., 'epoch': ...,
'sampler_indices': [...]}``. A cascade classifies an image with the first stage that *certifies*
it, which needs the dual-network bound at inference time, so it is not a model robbench can
evaluate; its first stage, trained on all data, is the paper's single model. The recipe, exactly:

1. take ``models_scaled/<file>.pth`` at commit ``COMMIT`` (a git blob, fetched from
   raw.githubusercontent.com or given with ``--from PATH``) and refuse it unless its SHA-256 is
   the one pinned in ``SOURCES``;
2. read it with ``torch.load(map_location="cpu", weights_only=True)``;
3. write ``state_dict[0]`` unchanged (8 float32 tensors, keys ``0.weight`` ... ``7.bias``) with
   ``safetensors.torch.save_file``, metadata ``{"source": <repository>/<commit>/<path>,
   "source_sha256": <pin>, "cascade_stage": "0"}``.

An existing ``model.safetensors`` is compared tensor by tensor with the rebuilt one; a
mismatch is an error. Run: ``python submissions/extract_convex_cascade.py [--from DIR]`` (DIR: a
checkout of the repository at ``COMMIT``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from robbench.digests import file_digest

HERE = Path(__file__).resolve().parent
REPOSITORY = "https://github.com/locuslab/convex_adversarial"
COMMIT = "2cd8149249b9e90383af10fc7e9b9fe90166813e"
RAW = f"https://raw.githubusercontent.com/locuslab/convex_adversarial/{COMMIT}"
#: submission folder -> (path in the repository, SHA-256 of the published file)
SOURCES = {
    "mnist/convex-small-wong-scaled": (
        "models_scaled/mnist_small_0_3.pth", "1f2bc54fa1506831b73bbd28c6669eaa487ab78bcd97455390f8d7cb9c7ed3ca"),
    "cifar10/convex-small-wong-scaled": (
        "models_scaled/cifar_small_8px.pth", "f07c615f58616cbc7667974f146c4baa851bf0e71df8431a150abea8b7901f37"),
}
TARGET = "model.safetensors"


class Refused(Exception):
    """A published file that is not the pinned one, or a rebuilt state that differs from the committed file."""


def first_stage(original: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Stage 0 of a published cascade checkpoint, after checking the file's pinned digest."""
    actual = file_digest(original)
    if actual != expected_sha256:
        raise Refused(f"{original.name} has sha256 {actual}, the pin is {expected_sha256}; refusing it")
    loaded = torch.load(original, map_location="cpu", weights_only=True)
    stages = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(stages, list) or not stages or not isinstance(stages[0], dict):
        raise Refused(f"{original.name} is not a cascade checkpoint (no list under 'state_dict')")
    return {key: tensor.contiguous() for key, tensor in stages[0].items()}


def write_or_check(state: dict[str, torch.Tensor], target: Path, source_path: str, source_sha256: str) -> str:
    """Write ``state`` to ``target`` (atomically), or check an existing ``target`` holds exactly it."""
    if target.is_file():
        committed = load_file(str(target))
        if committed.keys() != state.keys() or not all(torch.equal(committed[k], state[k]) for k in state):
            raise Refused(f"{target} does not hold stage 0 of {source_path}; remove it to rebuild")
        return f"{target} holds stage 0 of {source_path}, sha256 {file_digest(target)}"
    partial = target.with_suffix(".part")
    metadata = {"source": f"{REPOSITORY}/blob/{COMMIT}/{source_path}", "source_sha256": source_sha256, "cascade_stage": "0"}
    save_file(state, str(partial), metadata=metadata)
    partial.replace(target)
    return f"wrote {target}, sha256 {file_digest(target)}"


def download(source_path: str, folder: Path) -> Path:
    target = folder / Path(source_path).name
    with urllib.request.urlopen(f"{RAW}/{source_path}", timeout=60) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="checkout", type=Path, help="a checkout of convex_adversarial at COMMIT")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for folder, (source_path, source_sha256) in SOURCES.items():
            try:
                original = args.checkout / source_path if args.checkout else download(source_path, Path(tmp))
                state = first_stage(original, source_sha256)
                print(write_or_check(state, HERE / folder / TARGET, source_path, source_sha256))
            except Refused as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
