"""Scoring a job's file list into part files: each part a fixed range of list rows, written whole by an atomic rename.

Part k covers list rows [k * part_size, (k + 1) * part_size), so a resume scores only the parts that are missing, a
kill loses at most one part's work, and no row is ever scored twice. `--shard I/N` scores only the parts whose number
modulo N is I (SLURM array task I of N), so N processes share a job without overlapping.

Files are read by the one inference loop (wildvision.inference) and hashed by the photo-identity module
(wildvision.photos): one decode per file gives the model's input and the pHash. The same forward pass gives each
photo's pooled head input (its backbone features), kept per part as features-<first index>.npy beside the part's CSV
(float16, a NaN row for a file with no score) and merged into features.npy (wildvision.screening.features), so a
retrained head can re-score the job without decoding a photo again. The features file is written before the CSV:
a part whose CSV exists always has its features.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wildvision import inference, photos, roots, runs
from wildvision.data import eval_pixels
from wildvision.images import ImageError, open_image
from wildvision.predict import LoadedModel
from wildvision.screening import job_features as features
from wildvision.screening.config import PARTS, ScreenConfig
from wildvision.screening.sources import NOT_REGULAR, Listed, read_file_list

PART_COLUMNS = ["index", "path", "sha256", "phash", "probability", "label", "unlike_training", "error"]
WINDOW_PARTS = 16  # parts handed to the inference loop at once: its prefetch restarts only every 4,096 images
Shard = tuple[int, int]  # (I, N): the parts whose number modulo N is I, what SLURM array task I of N scores


@dataclass(frozen=True)
class Decoded:
    """What one read of a file gives: the model's input, SHA-256 and pHash, or the reason it cannot be scored."""

    tensor: torch.Tensor | None
    sha256: str
    phash: int | None
    error: str | None


def decoder(loaded: LoadedModel):
    """The per-file work of the loader threads: SHA-256 of the bytes, then one decode for both pHash and the model's input.

    The hash reads the file once; the decode reads it again from the page cache (open_image takes a path, and
    that is where every check on a hostile file lives). A file that is not a regular one (a line of a list file
    naming /dev/zero or a FIFO, a link to one) is never opened: reading it would never end or never start."""
    transform = eval_pixels()

    def decode(file: str) -> Decoded:
        try:
            roots.regular(file)
        except roots.OutsideRoots:
            return Decoded(None, "", None, NOT_REGULAR)
        try:
            digest = photos.sha256(file)
        except FileNotFoundError:
            return Decoded(None, "", None, "file not found")
        except OSError as error:
            return Decoded(None, "", None, f"cannot be read ({error.strerror or error})")
        try:
            image = open_image(file)
        except ImageError as error:
            return Decoded(None, digest, None, error.reason)
        return Decoded(transform(image), digest, photos.phash(image), None)

    return decode


def _part_path(screen_dir: Path, first: int) -> Path:
    return screen_dir / PARTS / f"part-{first:09d}.csv"


def write_rows(path: Path, columns: list[str], rows: list[list]) -> None:
    """A CSV of the job (a part file, or scores.csv re-scored), atomically. Names are written with errors="surrogateescape" (and read back so by
    merge.part_rows): a file name that is not UTF-8 (b'caf\\xe9.jpg', held by Python as a surrogate) keeps its
    exact bytes instead of failing the job, and every resume of it."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())

    runs.write_atomic(path, write)


def _unread(index: int, row: Listed) -> tuple[list, None]:
    return [index, row.path, "", "", "", "", "", row.error or ""], None


def _score_rows(
    loaded: LoadedModel, rows: list[tuple[int, Listed]], batch_size: int, workers: int | None
) -> Iterator[tuple[int, tuple[list, np.ndarray | None]]]:
    """(list index, (part row, pooled head input or None)) for every row, in list order, through the one inference
    loop (inference.batches), whose forward pass gives the features beside the probabilities."""
    readable = [(index, row) for index, row in rows if row.file is not None and row.error is None]
    batches = inference.batches(
        loaded, [row.file for _, row in readable], decoder(loaded), tensor=lambda decoded: decoded.tensor, batch_size=batch_size, workers=workers, features=True
    )
    scored: dict[int, list] = {}
    vectors: dict[int, np.ndarray] = {}
    pending = iter(rows)
    with contextlib.closing(batches):
        for batch in batches:
            if batch.features is not None:
                for result, vector in zip(batch.readable, batch.features.half().cpu().numpy()):
                    vectors[readable[result.position][0]] = vector
            for result in batch.rows:  # decode catches every ImageError itself, so each prepared is a Decoded
                index, row = readable[result.position]
                decoded = result.prepared
                phash = "" if decoded.phash is None else f"{decoded.phash:016x}"
                scored[index] = [index, row.path, decoded.sha256, phash, "", "", "", decoded.error or ""]
                if result.probability is not None:
                    unlike = "" if result.unlike_training is None else f"{result.unlike_training:.4f}"
                    scored[index][4:7] = [f"{result.probability:.6f}", loaded.label_for(result.probability), unlike]
            last = readable[batch.rows[-1].position][0]
            for index, row in pending:  # rows with nothing to read (unsafe zip members) keep their place
                yield index, (scored.pop(index), vectors.pop(index, None)) if index in scored else _unread(index, row)
                if index == last:
                    break
    for index, row in pending:
        yield index, _unread(index, row)


def parse_shard(text: str) -> Shard:
    """A shard written as I/N (0 <= I < N): the parts whose number modulo N is I."""
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard {text!r}: write I/N with 0 <= I < N, e.g. 0/4 for the first of 4")
    return shard


def _written_parts(screen_dir: Path) -> set[int]:
    """The first list row of every part written so far."""
    return {int(part.stem.split("-")[1]) for part in (screen_dir / PARTS).glob("part-*.csv")}


def rows_done(screen_dir: Path, part_size: int, total: int) -> int:
    """List rows whose part is written: whoever wrote them (several SLURM tasks write parts side by side)."""
    return sum(min(part_size, total - first) for first in _written_parts(screen_dir))


def _windows(screen_dir: Path, part_size: int, shard: Shard | None = None) -> Iterator[list[tuple[int, Listed]]]:
    """The list rows of parts not yet written (of one shard's parts, given one), up to WINDOW_PARTS parts at a time (whole parts only)."""
    written = _written_parts(screen_dir)
    window: list[tuple[int, Listed]] = []
    for index, row in enumerate(read_file_list(screen_dir)):
        first = index - index % part_size
        if first in written or (shard is not None and first // part_size % shard[1] != shard[0]):
            continue
        if len(window) >= WINDOW_PARTS * part_size and index % part_size == 0:
            yield window
            window = []
        window.append((index, row))
    if window:
        yield window


def _progress(screen_dir: Path, part_size: int, total: int, started: float, done_at_start: int) -> None:
    """status.json's progress: rows in the parts on disk, and the rate at which they have grown since this process began
    (with several tasks, their joint rate)."""
    done = rows_done(screen_dir, part_size, total)
    elapsed = time.perf_counter() - started
    rate = (done - done_at_start) / elapsed if elapsed > 0 and done > done_at_start else None
    left = round((total - done) / rate) if rate else None
    runs.write_status(screen_dir, "running", message=None, done=done, total=total, images_per_second=round(rate, 1) if rate else None, seconds_left=left)
    line = f"screened {done:,} / {total:,} files" + (f" ({rate:.1f} files/s, {left} s left)" if rate else "")
    if sys.stderr.isatty():
        print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def score_parts(screen_dir: Path, config: ScreenConfig, loaded: LoadedModel, workers: int | None = None, shard: Shard | None = None) -> None:
    """Score every list row (of `shard`'s parts, given one) that has no part yet, writing each part atomically as soon
    as its last row is scored. `config`: the job's, with its model and file list recorded."""
    total, part_size, batch_size = int(config.files or 0), int(config.part_size or 0), int(config.batch_size or 1)
    (screen_dir / PARTS).mkdir(exist_ok=True)
    describing = features.describe(loaded)
    features.write_description(screen_dir / PARTS, describing)
    started, done_at_start = time.perf_counter(), rows_done(screen_dir, part_size, total)
    _progress(screen_dir, part_size, total, started, done_at_start)
    for window in _windows(screen_dir, part_size, shard):
        part: list[list] = []
        vectors: list[np.ndarray | None] = []
        for index, (row, vector) in _score_rows(loaded, window, batch_size, workers):
            part.append(row)
            vectors.append(vector)
            if (index + 1) % part_size == 0 or index + 1 == total:
                features.write_part(features.part_path(screen_dir, part[0][0]), vectors, describing.dim)
                write_rows(_part_path(screen_dir, part[0][0]), PART_COLUMNS, part)
                part, vectors = [], []
                _progress(screen_dir, part_size, total, started, done_at_start)
