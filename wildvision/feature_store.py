"""The feature store on disk: what an entry is keyed by, reading and writing it, the size bound, and clearing it.

Everything wildvision reuses lives under one cache folder (`cache.default_cache_dir`, or WILDVISION_CACHE_DIR):

- `features/<arch>-<key>/`: backbone outputs (wildvision.features), one folder per exact set of inputs, described in
  its key.json: the architecture, a digest of the backbone's weights, the transforms, and for training views their
  number and seed. Training views are one file per (photo hash, label), since the positive class gets its own crop;
  the evaluation view does not depend on the label and is one file per photo hash, so a photo in two test sets, or in
  test_in of one run and train of the next, is computed once.
- `images-256/`: training photos decoded once at 256 px on the short side (wildvision.cache).

Both count toward one size bound (WILDVISION_CACHE_MAX_GB, default 20 GB). After a run writes entries it evicts the
least recently used entry files until the folder is under the bound; reading an entry sets its modification time, so
"least recently used" means least recently read or written. key.json files are never evicted (they are a few hundred
bytes and say what a folder holds).

Runs share the folder safely: every file is written under a temporary name and renamed into place, so two processes
computing the same entry both succeed and a reader never sees half a file; a reader treats an entry that is missing
when it opens it (evicted or cleared by another process meanwhile) as not stored and computes it again. Deleting the
whole folder (`python -m wildvision cache clear`) is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wildvision import runs
from wildvision.cache import REDUCED_SHORT_SIDE, mark_used, save_array_atomic
from wildvision.data import eval_transform
from wildvision.models import Normalisation

log = logging.getLogger(__name__)

FORMAT = 1
FEATURES = "features"
IMAGES = f"images-{REDUCED_SHORT_SIDE}"
KEY = "key.json"
ENTRY_SUFFIX = ".npy"
MAX_GB_ENV = "WILDVISION_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
GB = 1e9


def max_bytes() -> int:
    """The size bound in bytes: WILDVISION_CACHE_MAX_GB (in GB, 1 GB = 10^9 bytes), else DEFAULT_MAX_GB.

    A value that is not a number of 0 or more is reported and the default used: a typo must not stop a run
    hours in, nor empty the cache."""
    raw = os.environ.get(MAX_GB_ENV, "").strip()
    if not raw:
        return int(DEFAULT_MAX_GB * GB)
    try:
        gb = float(raw)
        if not math.isfinite(gb) or gb < 0:
            raise ValueError(raw)
    except ValueError:
        log.warning("%s=%r is not a size in GB of 0 or more; using %g GB", MAX_GB_ENV, raw, DEFAULT_MAX_GB)
        gb = DEFAULT_MAX_GB
    return int(gb * GB)


def _folder_name(arch: str, description: dict) -> str:
    return f"{arch}-{hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]}"


def keyed_folder(cache_dir: Path, arch: str, description: dict) -> Path:
    """The folder of entries made from exactly the inputs `description` names, with a key.json saying what they are."""
    folder = Path(cache_dir) / FEATURES / _folder_name(arch, description)
    if not (folder / KEY).exists():
        folder.mkdir(parents=True, exist_ok=True)
        runs.write_json_atomic(folder / KEY, description)
    return folder


def views_description(arch: str, weights: str, transform_for_label: Callable[[int], Callable], views: int, seed: int) -> dict:
    """What training views' entries depend on (`weights`: the backbone's weights digest); unchanged since format 1."""
    return {
        "format": FORMAT,
        "arch": arch,
        "weights": weights,
        "transforms": {str(label): repr(transform_for_label(label)) for label in (0, 1)},
        "views": views,
        "seed": seed,
        "images": f"short side {REDUCED_SHORT_SIDE} px (wildvision.cache)",
    }


def eval_description(arch: str, weights: str, normalisation: Normalisation) -> dict:
    """What evaluation-view entries depend on: the photo as evaluation and prediction read it (the original file,
    resized and normalised), so the features are those a full forward pass of the model computes."""
    return {
        "format": FORMAT,
        "arch": arch,
        "weights": weights,
        "view": "evaluation",
        "transform": repr(eval_transform(normalisation)),
        "images": "originals (wildvision.images.open_image)",
    }


def existing_folder(cache_dir: Path, arch: str, description: dict) -> Path | None:
    """keyed_folder's folder if some run already made it, else None (nothing is created)."""
    folder = Path(cache_dir) / FEATURES / _folder_name(arch, description)
    return folder if (folder / KEY).is_file() else None


def read_entry(path: Path) -> np.ndarray | None:
    """The stored array, or None when it is not there (never written, or evicted or cleared by another process a
    moment ago) or damaged: the caller computes it again. Reading marks the entry as recently used."""
    try:
        array = np.load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as error:
        log.warning("ignoring the damaged store entry %s (%s); computing it again", path, error)
        return None
    mark_used(path)
    return array


def write_entry(path: Path, array: np.ndarray) -> bool:
    """Store `array` atomically; False, with a warning, when that fails (a full disk, a folder cleared meanwhile):
    the caller has the array in memory and goes on without storing it."""
    try:
        save_array_atomic(path, array)
    except OSError as error:
        log.warning("could not store %s (%s); it will be computed again next time", path, error.strerror or error)
        return False
    return True


@dataclass(frozen=True)
class Entry:
    path: Path
    bytes: int
    used: float  # modification time: when it was last read or written


def entries(cache_dir: Path) -> Iterator[Entry]:
    """Every entry file of the store (features and decoded images); files that vanish while listed are left out."""
    for top in (Path(cache_dir) / FEATURES, Path(cache_dir) / IMAGES):
        for directory, _, names in os.walk(top):
            for name in names:
                if not name.endswith(ENTRY_SUFFIX):
                    continue
                path = Path(directory) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                yield Entry(path, stat.st_size, stat.st_mtime)


@dataclass(frozen=True)
class Removed:
    files: int
    bytes: int


def enforce_bound(cache_dir: Path, limit_bytes: int | None = None) -> Removed:
    """Evict the least recently used entries until the store holds at most `limit_bytes` (default `max_bytes()`)."""
    limit = max_bytes() if limit_bytes is None else limit_bytes
    found = list(entries(cache_dir))
    total = sum(entry.bytes for entry in found)
    files = freed = 0
    for entry in sorted(found, key=lambda entry: entry.used):
        if total <= limit:
            break
        entry.path.unlink(missing_ok=True)  # already gone: another process evicted it
        total -= entry.bytes
        files, freed = files + 1, freed + entry.bytes
    if files:
        log.info("cache over its bound of %.1f GB: evicted %d least recently used files (%.2f GB)", limit / GB, files, freed / GB)
    return Removed(files, freed)


def clear(cache_dir: Path) -> Removed:
    """Delete the store (features and decoded images) and say how much it held; the cache folder itself stays."""
    files = size = 0
    for top in (Path(cache_dir) / FEATURES, Path(cache_dir) / IMAGES):
        for directory, _, names in os.walk(top):
            for name in names:
                try:
                    size += (Path(directory) / name).stat().st_size
                    files += 1
                except FileNotFoundError:
                    pass
        shutil.rmtree(top, ignore_errors=True)
    return Removed(files, size)


@dataclass(frozen=True)
class FolderInfo:
    """One folder of the store for `cache info`: its path under the cache folder, what it holds, its entry files and bytes."""

    name: str
    holds: str
    files: int
    bytes: int


def _holds(folder: Path) -> str:
    try:
        key = json.loads((folder / KEY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "backbone outputs (no key.json: made while the store was being cleared)"
    if key.get("view") == "evaluation":
        return f"{key.get('arch')} backbone outputs, evaluation view (weights {str(key.get('weights'))[:8]})"
    return f"{key.get('arch')} backbone outputs, training views ({key.get('views')} per photo, seed {key.get('seed')}; weights {str(key.get('weights'))[:8]})"


def folders(cache_dir: Path) -> list[FolderInfo]:
    """Each features folder, and the decoded-image folder where it holds any, with its entry files and bytes."""
    sizes: dict[Path, list[int]] = {}
    for entry in entries(cache_dir):
        parent = entry.path.parent if entry.path.is_relative_to(Path(cache_dir) / FEATURES) else Path(cache_dir) / IMAGES
        sizes.setdefault(parent, []).append(entry.bytes)
    found = []
    features = Path(cache_dir) / FEATURES
    for folder in sorted(features.iterdir()) if features.is_dir() else []:
        if folder.is_dir():
            found.append(FolderInfo(f"{FEATURES}/{folder.name}", _holds(folder), len(sizes.get(folder, [])), sum(sizes.get(folder, []))))
    images = sizes.get(Path(cache_dir) / IMAGES, [])
    if images:
        found.append(FolderInfo(IMAGES, f"decoded training photos, {REDUCED_SHORT_SIDE} px on the short side", len(images), sum(images)))
    return found
