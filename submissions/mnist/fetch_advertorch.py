"""Put advertorch's two MNIST LeNet-5 checkpoints next to their model.yaml files, checked against the pinned SHA-256.

The weights are LGPL-3.0, so the repository pins them instead of committing them: this script takes
the advertorch 0.2.3 source distribution from PyPI once (``pip download --no-deps --no-binary :all:
advertorch==0.2.3``) and extracts each folder's member. A file whose digest is not the pinned one is
refused and nothing is written. Run: ``python submissions/mnist/fetch_advertorch.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

from robbench.digests import file_digest, install_pinned

HERE = Path(__file__).resolve().parent
SDIST = "advertorch==0.2.3"
#: the pinned members are about 1.3 and 2.6 MB; a larger member is refused before it is extracted
MAX_MEMBER_BYTES = 64 * 2**20
MEMBERS = {  # submission folder -> member of the sdist
    "lenet5-pgd-at-advertorch": "advertorch-0.2.3/advertorch_examples/trained_models/mnist_lenet5_advtrained.pt",
    "lenet5-standard-advertorch": "advertorch-0.2.3/advertorch_examples/trained_models/mnist_lenet5_clntrained.pt",
}


def download_sdist(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", str(folder), SDIST]
    subprocess.run(command, check=True)
    return next(folder.glob("advertorch-0.2.3.tar.gz"))


def extract(archive_path: Path, member_name: str, target: Path) -> None:
    with tarfile.open(archive_path) as archive:
        member = archive.getmember(member_name)
        if not member.isfile() or member.size > MAX_MEMBER_BYTES:
            raise SystemExit(f"error: {member_name} in {archive_path.name} is not a regular file of at most "
                             f"{MAX_MEMBER_BYTES:,} bytes; refusing it")
        with archive.extractfile(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)


def main() -> int:
    wanted = {}
    for folder, member in MEMBERS.items():
        spec = yaml.safe_load((HERE / folder / "model.yaml").read_text(encoding="utf-8"))
        target, expected = HERE / folder / spec["checkpoint"], spec["sha256"]
        if target.is_file() and file_digest(target) == expected:
            print(f"{target} is already there, sha256 {expected}")
        else:
            wanted[member] = (target, expected)
    if not wanted:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive_path = download_sdist(Path(tmp))
        for member, (target, expected) in wanted.items():
            extracted = Path(tmp) / "member.pt"
            extract(archive_path, member, extracted)
            refused = install_pinned(extracted, target, expected, member)
            if refused:
                print(f"error: {refused}", file=sys.stderr)
                return 1
            print(f"wrote {target}, sha256 {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
