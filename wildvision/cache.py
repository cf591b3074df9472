"""Where wildvision keeps work it can reuse across epochs and runs, keyed by what the work depends on.

Two caches live under one folder (`default_cache_dir`, or WILDVISION_CACHE_DIR):

- `images-256/`: training images decoded once and shrunk to 256 px on the short side, so epochs
  never re-decode large originals. Stored as raw uint8 arrays (lossless, and faster to read than
  any compressed format). Keyed by a hash of the file's bytes, so an edited image is decoded again.
  Images already no larger than that are not stored: decoding them is as cheap as reading a copy.
- `features/`: backbone outputs per photo, model and view (`wildvision.features`).

Both count toward one size bound, kept by evicting the least recently used files; its files, keys and
clearing are in `wildvision.feature_store`. Deleting the folder is always safe; everything in it is
rebuilt on demand. Files are written to a temporary name and renamed, so runs sharing a cache never
read a half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from wildvision.images import open_image

CACHE_DIR_ENV = "WILDVISION_CACHE_DIR"
REDUCED_SHORT_SIDE = 256


def default_cache_dir() -> Path:
    """WILDVISION_CACHE_DIR if set, else the user's cache folder (~/.cache/wildvision)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wildvision"


def content_hash(path: str | Path) -> str:
    """A digest of the file's bytes: the cache key that changes exactly when the image does."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "blake2b").hexdigest()[:32]


def mark_used(path: Path) -> None:
    """Set a cache file's modification time to now: the size bound (wildvision.feature_store) evicts the least
    recently used first."""
    try:
        os.utime(path)
    except OSError:  # evicted since it was read: what was read is whole, so nothing is lost
        pass


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def reduce(image: Image.Image, short_side: int = REDUCED_SHORT_SIDE) -> Image.Image:
    """`image` shrunk so its short side is `short_side` (never enlarged)."""
    scale = short_side / min(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def open_reduced(path: str | Path, cache_dir: Path) -> Image.Image:
    """The image at `path` as upright RGB, short side at most 256 px, decoded from the original only once.

    Raises ImageError like `open_image` when the original cannot be used.
    """
    try:
        key = content_hash(path)
    except OSError:
        return open_image(path)  # open_image turns the missing or unreadable file into an ImageError
    cached = cache_dir / f"images-{REDUCED_SHORT_SIDE}" / key[:2] / f"{key}.npy"
    try:
        image = Image.fromarray(np.load(cached))
    except (OSError, ValueError, EOFError):  # not cached yet, evicted, or a damaged entry: decode again
        pass
    else:
        mark_used(cached)
        return image
    image = open_image(path)
    reduced = reduce(image)
    if reduced is not image:
        save_array_atomic(cached, np.asarray(reduced))
    return reduced
