"""Put advertorch's PGD-trained LeNet-5 next to model.yaml, checked against its pinned SHA-256.

The weights are LGPL-3.0, so the repository pins them instead of committing them: this script takes
the advertorch 0.2.3 source distribution from PyPI (``pip download --no-deps --no-binary :all:
advertorch==0.2.3``) and extracts one member. Run: ``python submissions/mnist/lenet5-pgd-at-advertorch/fetch.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

from robbench.digests import file_digest

HERE = Path(__file__).resolve().parent
SDIST = "advertorch==0.2.3"
MEMBER = "advertorch-0.2.3/advertorch_examples/trained_models/mnist_lenet5_advtrained.pt"


def from_sdist(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", str(folder), SDIST]
    subprocess.run(command, check=True)
    archive_path = next(folder.glob("advertorch-0.2.3.tar.gz"))
    target = folder / "weights.pt"
    with tarfile.open(archive_path) as archive:
        member = archive.getmember(MEMBER)
        if not member.isfile():
            raise SystemExit(f"error: {MEMBER} in {archive_path.name} is not a regular file")
        with archive.extractfile(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def main() -> int:
    spec = yaml.safe_load((HERE / "model.yaml").read_text(encoding="utf-8"))
    target, expected = HERE / spec["checkpoint"], spec["sha256"]
    if target.is_file() and file_digest(target) == expected:
        print(f"{target} is already there, sha256 {expected}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        source = from_sdist(Path(tmp))
        if file_digest(source) != expected:
            print(f"error: {MEMBER} has sha256 {file_digest(source)}, model.yaml pins {expected}; refusing it", file=sys.stderr)
            return 1
        partial = target.with_suffix(".part")
        shutil.copyfile(source, partial)
        partial.replace(target)
    print(f"wrote {target}, sha256 {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
