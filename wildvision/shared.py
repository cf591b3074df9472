"""The shared folder beside a clone: demo photos (demo-data/) and offline ImageNet weights (weights/).

It is `../shared` next to the repository, or `$WILDVISION_SHARED` (read on every call, so a test can
point it at an empty folder). A fresh clone has none: every function here then answers None.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared"


def shared_folder() -> Path:
    """$WILDVISION_SHARED, else the `shared` folder beside the repository (which may not exist)."""
    return Path(os.environ.get("WILDVISION_SHARED") or DEFAULT).expanduser()


def demo_data(part: str = "train") -> Path | None:
    """A folder of the demo data (train, test_out_pet, test_out_nopet), or None where it is absent."""
    folder = shared_folder() / "demo-data" / part
    return folder if folder.is_dir() else None


def local_weights_file(arch: str) -> Path | None:
    """The offline ImageNet state dict shipped for `arch` (weights/ARCH-imagenet*.pth), or None."""
    folder = shared_folder() / "weights"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob(f"{arch}-imagenet*.pth"))
    return files[0] if files else None
