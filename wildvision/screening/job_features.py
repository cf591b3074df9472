"""Each screened photo's backbone features (the pooled input of the model's head), kept beside scores.csv.

A head retrained on people's decisions (wildvision.screening.retrain) and the re-scoring of a job with it
(wildvision.screening.rescore) need only the head's input, which the screening pass computes anyway: keeping it
means no photo is decoded or forwarded through the backbone again. They are float16 (what the feature store keeps,
wildvision.feature_store): 1280 features x 2 bytes x 100,000 photos = 256 MB for the default model.

features.npy   [files, dim] float16, row i is scores.csv's row i; a file with no score (unreadable) is a row of NaN
features.json  the architecture, a digest of the backbone's weights (the features are only valid for a head on
               that very backbone) and the number of features per photo

While the job runs each part has features-<first index>.npy in parts/ (written before the part's CSV, so a written
part always has its features) and parts/features.json; they are merged with the CSV parts. A job screened before
features were kept has none, and says so when asked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wildvision import runs
from wildvision.models import head, head_prefix
from wildvision.predict import LoadedModel
from wildvision.screening.config import PARTS

FEATURES, INFO = "features.npy", "features.json"


@dataclass(frozen=True)
class Description:
    """What the stored features are: whose backbone made them, and how many per photo."""

    arch: str
    backbone: str  # backbone_digest of the weights that made them
    dim: int


def backbone_digest(model: torch.nn.Module, arch: str) -> str:
    """A digest of every weight but the head's: two models give the same features exactly when it is equal
    (a head retrained on features keeps it; a model trained with all layers does not)."""
    digest = hashlib.blake2b()
    prefix = head_prefix(arch)
    for name, tensor in model.state_dict().items():
        if not name.startswith(prefix):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def feature_dim(model: torch.nn.Module, arch: str) -> int:
    """Features per photo: what the head reads (a linear layer's inputs, a convolution's channels)."""
    layer = head(model, arch)
    return int(getattr(layer, "in_features", None) or layer.in_channels)


def describe(loaded: LoadedModel) -> Description:
    return Description(loaded.arch, backbone_digest(loaded.model, loaded.arch), feature_dim(loaded.model, loaded.arch))


def write_description(folder: Path, description: Description) -> None:
    runs.write_json_atomic(Path(folder) / INFO, asdict(description))


def read_description(folder: Path) -> Description:
    data = runs.read_json(Path(folder) / INFO)
    return Description(str(data["arch"]), str(data["backbone"]), int(data["dim"]))


def part_path(screen_dir: Path, first: int) -> Path:
    return Path(screen_dir) / PARTS / f"features-{first:09d}.npy"


def _save(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())

    runs.write_atomic(path, write)


def write_part(path: Path, vectors: list[np.ndarray | None], dim: int) -> None:
    """One part's features, a row per list row, NaN where the file has no score; atomically."""
    array = np.full((len(vectors), dim), np.nan, dtype=np.float16)
    for row, vector in enumerate(vectors):
        if vector is not None:
            array[row] = vector
    _save(path, array)


def merge_parts(screen_dir: Path) -> bool:
    """features.npy from the parts' features, in list order, and features.json; False (nothing written) when a
    part has none (its rows were scored by a wildvision that did not keep features, before a resume)."""
    screen_dir = Path(screen_dir)
    csvs = sorted((screen_dir / PARTS).glob("part-*.csv"))
    pieces = [part_path(screen_dir, int(csv.stem.split("-")[1])) for csv in csvs]
    if not csvs or not all(piece.is_file() for piece in pieces) or not (screen_dir / PARTS / INFO).is_file():
        return False
    arrays = [np.load(piece, mmap_mode="r") for piece in pieces]
    rows = sum(len(array) for array in arrays)

    def write(tmp: Path) -> None:
        merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(rows, arrays[0].shape[1]))
        start = 0
        for array in arrays:
            merged[start : start + len(array)] = array
            start += len(array)
        merged.flush()
        del merged

    runs.write_atomic(screen_dir / FEATURES, write)
    shutil.copyfile(screen_dir / PARTS / INFO, screen_dir / f".{INFO}.tmp")
    os.replace(screen_dir / f".{INFO}.tmp", screen_dir / INFO)
    return True


def read_features(screen_dir: Path) -> tuple[Description, np.ndarray]:
    """The job's description and features ([files, dim] float16, memory-mapped); a RunError in words for a job that
    has none (screened before they were kept, or not finished)."""
    screen_dir = Path(screen_dir)
    if not (screen_dir / FEATURES).is_file() or not (screen_dir / INFO).is_file():
        raise runs.RunError(
            f"screening job {screen_dir.name} has no stored photo features ({FEATURES}): it was screened by an older wildvision "
            "or has not finished. Screen its sources again to retrain or re-score from it"
        )
    return read_description(screen_dir), np.load(screen_dir / FEATURES, mmap_mode="r")


def scored_rows(features: np.ndarray) -> np.ndarray:
    """Which rows hold features (the others are files with no score)."""
    return ~np.isnan(features[:, 0])
