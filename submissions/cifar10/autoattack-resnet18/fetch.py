"""Put AutoAttack's example ResNet-18 (``model_test.pt``) next to model.yaml, checked against its sha256.

The file comes from the installed ``pyautoattack`` when its copy has the pinned digest, else from
the PyPI wheel (``pip download --no-deps pyautoattack==0.2.0``, then the wheel member
``pyautoattack/examples/model_test.pt``). Run: ``python submissions/cifar10/autoattack-resnet18/fetch.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

from robbench.digests import file_digest, install_pinned

HERE = Path(__file__).resolve().parent
WHEEL = "pyautoattack==0.2.0"
MEMBER = "pyautoattack/examples/model_test.pt"


def installed_copy() -> Path | None:
    spec = importlib.util.find_spec("pyautoattack")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "examples" / "model_test.pt"
    return path if path.is_file() else None


def from_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(folder), WHEEL], check=True)
    wheel = next(folder.glob("pyautoattack-0.2.0-*.whl"))
    target = folder / "model_test.pt"
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def main() -> int:
    spec = yaml.safe_load((HERE / "model.yaml").read_text(encoding="utf-8"))
    target, expected = HERE / spec["checkpoint"], spec["sha256"]
    if target.is_file() and file_digest(target) == expected:
        print(f"{target} is already there, sha256 {expected}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        source = installed_copy()
        if source is None or file_digest(source) != expected:
            source = from_wheel(Path(tmp))
        refused = install_pinned(source, target, expected, str(source))
        if refused:
            print(f"error: {refused}", file=sys.stderr)
            return 1
    print(f"wrote {target}, sha256 {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
