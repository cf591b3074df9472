"""A screening job's config.json as one typed record, read and written only here, and the names of its files.

config.json is written by the process that creates a job, completed by the one that first loads its model and lists
its files, and read by every process that scores, merges, lists, reviews or exports the job. Read as a plain dict in
each of them, a renamed key would fail far from its cause; read here into ScreenConfig, a job folder is checked once.

`format` versions the whole job folder this record describes (files.jsonl, parts/ and scores.csv's columns, see
merge.SCORES_COLUMNS): 1 is a folder written before the version was recorded, which reads as it always did; a
folder of a later format than this wildvision knows is refused rather than misread.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildvision import classes, runs

FORMAT = 2  # 2: config.json records `format`; scores.csv has merge.SCORES_COLUMNS
SCREENS_DIR_ENV = "WILDVISION_SCREENS_DIR"
FILES, SCORES, PARTS, UNPACKED = "files.jsonl", "scores.csv", "parts", "unpacked"
PART_BATCHES = 32  # batches per part: at 8 images a batch a kill loses under 3 s of CPU work, and 100,000 images make 391 parts


def default_screens_dir() -> Path:
    """$WILDVISION_SCREENS_DIR, else screens/ (read on every call, so tests can point it elsewhere)."""
    return Path(os.environ.get(SCREENS_DIR_ENV, "screens"))


@dataclass(frozen=True)
class ScreenConfig:
    """config.json of a screening job. The model's fields are None until the job's first process loads the model
    (a job started from the dashboard), `files` until its file list is made."""

    model: str  # as given: default, a run name or folder, a checkpoint
    model_file: str | None  # what predict.load_model takes: the checkpoint's absolute path, or the default model's name
    sources: tuple[str, ...]  # absolute
    sources_as_given: tuple[str, ...]
    created_at: str | None = None
    model_version: dict | None = None  # checkpoint path and mtime, or the default model card's code_version
    architecture: str | None = None
    threshold: float | None = None
    class_names: tuple[str, ...] | None = None  # negative first, positive last
    files: int | None = None  # rows of files.jsonl
    system_files_left_out: int | None = None
    part_batches: int = PART_BATCHES
    part_size: int | None = None  # rows per part: batch_size * part_batches, fixed once the model is recorded
    batch_size: int | None = None
    phash_threshold: int | None = None
    device: str | None = None  # what a SLURM job's tasks use; None for a job scored on this machine
    read_roots: tuple[str, ...] | None = None  # a job started from a page: the data roots its files must lie under
    format: int = FORMAT

    @property
    def positive(self) -> str:
        """What a flag means (e.g. captive): the model's positive class."""
        return classes.positive_class(self.class_names) if self.class_names else "positive"


_FIELDS = {field.name for field in dataclasses.fields(ScreenConfig)}


def is_screen_config(data: Any) -> bool:
    """Whether a config.json's content is a screening job's (a run folder's config.json is not)."""
    return isinstance(data, dict) and "sources_as_given" in data


def from_json(data: dict, where: Path | str = "config.json") -> ScreenConfig:
    """The record of a config.json's content; a RunError when it is not a screening job's or comes from a later
    wildvision. Keys this version does not know are passed over (a later minor addition)."""
    if not is_screen_config(data):
        raise runs.RunError(f"{where} is not a screening job's config.json (it names no sources)")
    version = int(data.get("format", 1))
    if version > FORMAT:
        raise runs.RunError(f"{where} is of screening format {version}, newer than this wildvision reads ({FORMAT}): update wildvision")
    known = {key: value for key, value in data.items() if key in _FIELDS}
    for key in ("sources", "sources_as_given", "class_names", "read_roots"):
        if known.get(key) is not None:
            known[key] = tuple(map(str, known[key]))
    try:
        return ScreenConfig(**known | {"format": version})
    except TypeError as error:  # a key every format has is missing: a damaged file
        raise runs.RunError(f"{where} is not a whole screening job's config.json ({error})") from None


def read_config(screen_dir: Path) -> ScreenConfig:
    """The job's config.json (RunError when it cannot be read or is not a screening job's)."""
    path = Path(screen_dir) / runs.CONFIG
    return from_json(runs.read_json(path), path)


def write_config(screen_dir: Path, config: ScreenConfig) -> None:
    """config.json, written atomically; a record read from an older folder keeps that folder's format."""
    data = dataclasses.asdict(config)
    for key in ("sources", "sources_as_given", "class_names", "read_roots"):
        if data[key] is not None:
            data[key] = list(data[key])
    runs.write_json_atomic(Path(screen_dir) / runs.CONFIG, data)
