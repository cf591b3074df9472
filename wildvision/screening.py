"""Screening jobs: score thousands of scraped images with one model, so NGO staff review the flagged ones.

`python -m wildvision screen SOURCE...` turns folders (searched recursively), zips and list files (one
image path per line) into a job folder that survives being killed: `--resume SCREEN_DIR` finishes it.
wildvision.sources lists what the sources hold, every file a row (zips inside folders too).
The dashboard runs the same jobs in the background, and `--slurm-tasks N` as a SLURM job array of N
shards (wildvision.screen_jobs: starting, following, cancelling, resuming).

screens/<name>-<UTC time>-<suffix>/   (under $WILDVISION_SCREENS_DIR, else screens/)
  config.json   the model as given, its architecture, threshold, class names and version (checkpoint
                path and mtime, or the default model card's code_version), the sources, the number of
                files and the part size; a resume refuses a model whose version changed. A job started
                in the background records the model (and so the part size) when its process loads it,
                and the number of files once they are listed (null until then), with the number of
                system files (.DS_Store, Thumbs.db...) left out, which the log names too
  status.json   runs.write_status's contract (queued, running, completed, failed, cancelled; 'interrupted'
                derived when the process is gone) plus done, total, images_per_second and seconds_left,
                and once completed, counts (write_scores: files, distinct_photos, flagged files,
                flagged_photos, unreadable files)
  files.jsonl   the file list, fixed once: one JSON [path as given or listed, file on disk, error] a line
  unpacked/     zip members that passed uploads' checks, under numbered names (member names are never
                used as paths: a `../` member is a row with its reason, not a file outside the folder)
  parts/        part-<first index>.csv per PART_BATCHES batches, while the job runs (removed at the end)
  scores.csv    when completed: one row per listed file, in list order: path, sha256, probability,
                label (at the model's threshold), unlike_training, duplicate_group, error
  console.log   the output of its background process or SLURM tasks
  slurm.json, slurm/   for a job submitted to SLURM: its job id and task count; each submission's folder

Exactly once: the file list is written before any scoring and never changes; part k always covers list
rows [k * part_size, (k + 1) * part_size) and is written whole by an atomic rename. A resume scores only
the parts that are missing, so a kill loses at most one part's work and never duplicates a row;
scores.csv is merged from the parts and written atomically before the status says completed. SIGTERM
(cancel, scancel, a SLURM time limit) ends the part under way unwritten and records 'cancelled'.

Shards: `--resume SCREEN_DIR --shard I/N` scores only the parts whose number modulo N is I (SLURM array
task I of N), so N processes share a job without overlapping; each merges scores.csv at its end if it
finds every part written (under a lock), so whichever finishes last completes the job. `done` counts
the rows of all parts on disk, whoever wrote them.

A reposted photo is one review item: files with identical bytes (SHA-256) or pHashes at most
datacheck.PHASH_THRESHOLD bits apart share `duplicate_group`, the list row number (from 1) of the
group's first file; a photo seen once is its own group. Groups are computed at the end, over all rows.

A file that cannot be used (corrupt, truncated, a decompression bomb, not an image, missing, an unsafe
zip member, a zip that cannot be opened) is a row whose `error` says why; it never stops the job.

`unlike_training` is how unlike the model's training photos an image is (wildvision.novelty, from the same
forward pass as its probability); empty when the model keeps no summary of its training photos.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import torch
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from wildvision import jobs, model_card, runs, slurm
from wildvision.data import eval_transform
from wildvision.datacheck import PHASH_THRESHOLD, near_pairs
from wildvision.images import ImageError, open_image
from wildvision.predict import LoadedModel, checkpoint_path, default_batch_size, forward, load_model, prepared_batches, stack_inputs
from wildvision.sources import Listed, iter_sources, listing_note

SCREENS_DIR_ENV = "WILDVISION_SCREENS_DIR"
FILES, SCORES, PARTS, UNPACKED = "files.jsonl", "scores.csv", "parts", "unpacked"
COLUMNS = ["path", "sha256", "probability", "label", "unlike_training", "duplicate_group", "error"]
PART_COLUMNS = ["index", "path", "sha256", "phash", "probability", "label", "unlike_training", "error"]
PART_BATCHES = 32  # batches per part: at 8 images a batch a kill loses under 3 s of CPU work, and 100,000 images make 391 parts
WINDOW_PARTS = 16  # parts handed to prepared_batches at once: its prefetch restarts only every 4,096 images
Shard = tuple[int, int]  # (I, N): the parts whose number modulo N is I, what SLURM array task I of N scores
PHASH_SIDE = 64  # pHash shrinks to 32 x 32; reducing to no less than 64 px first keeps its bits (datacheck.DRAFT_SIZE)


def default_screens_dir() -> Path:
    """$WILDVISION_SCREENS_DIR, else screens/ (read on every call, so tests can point it elsewhere)."""
    return Path(os.environ.get(SCREENS_DIR_ENV, "screens"))


@dataclass(frozen=True)
class Decoded:
    """What one read of a file gives: the model's input, SHA-256 and pHash, or the reason it cannot be scored."""

    tensor: torch.Tensor | None
    sha256: str
    phash: int | None
    error: str | None


# ---------------------------------------------------------------------------------------------
# The file list
# ---------------------------------------------------------------------------------------------


def write_file_list(screen_dir: Path, sources: list[str], left_out: list[str]) -> int:
    """Write files.jsonl (streamed, then renamed into place) and return how many rows it has; the system files
    left out are added to `left_out`."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:
            for row in iter_sources(sources, screen_dir / UNPACKED, left_out):
                handle.write(json.dumps([row.path, row.file, row.error]) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())

    runs.write_atomic(screen_dir / FILES, write)
    return count


def read_file_list(screen_dir: Path) -> Iterator[Listed]:
    with open(screen_dir / FILES, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            yield Listed(*json.loads(line))


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def _phash(image: Image.Image) -> int:
    """The image's pHash as an int, from a box-reduced copy no smaller than PHASH_SIDE (cheap on large photos)."""
    factor = max(1, min(image.width, image.height) // PHASH_SIDE)
    return int(str(imagehash.phash(image.reduce(factor) if factor > 1 else image)), 16)


def decoder(loaded: LoadedModel):
    """The per-file work of the loader threads: SHA-256 of the bytes, then one decode for both pHash and the model's input.

    The hash reads the file once; the decode reads it again from the page cache (open_image takes a path, and
    that is where every check on a hostile file lives)."""
    transform = eval_transform(loaded.normalisation)

    def decode(file: str) -> Decoded:
        try:
            with open(file, "rb") as handle:
                sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        except FileNotFoundError:
            return Decoded(None, "", None, "file not found")
        except OSError as error:
            return Decoded(None, "", None, f"cannot be read ({error.strerror or error})")
        try:
            image = open_image(file)
        except ImageError as error:
            return Decoded(None, sha256, None, error.reason)
        return Decoded(transform(image), sha256, _phash(image), None)

    return decode


def _part_path(screen_dir: Path, first: int) -> Path:
    return screen_dir / PARTS / f"part-{first:09d}.csv"


def _unread(index: int, row: Listed) -> list:
    return [index, row.path, "", "", "", "", "", row.error or ""]


def _score_rows(loaded: LoadedModel, rows: list[tuple[int, Listed]], batch_size: int, workers: int | None) -> Iterator[tuple[int, list]]:
    """(list index, part row) for every row, in list order; prepared_batches' threads decode the files ahead of the forward pass."""
    readable = [(index, row) for index, row in rows if row.file is not None and row.error is None]
    scored: dict[int, list] = {}
    batches = prepared_batches([row.file for _, row in readable], decoder(loaded), batch_size, workers)
    pending = iter(rows)
    with contextlib.closing(batches):
        for batch in batches:
            ready = []
            for position, decoded in batch:  # decode catches every ImageError itself, so each is a Decoded
                index, row = readable[position]
                scored[index] = [index, row.path, decoded.sha256, "" if decoded.phash is None else f"{decoded.phash:016x}", "", "", "", decoded.error or ""]
                if decoded.tensor is not None:
                    ready.append((index, decoded.tensor))
            if ready:
                inputs = stack_inputs(loaded, [tensor for _, tensor in ready])
                with torch.inference_mode():
                    probabilities, unlike = forward(loaded, inputs)
                for position, ((index, _), probability) in enumerate(zip(ready, probabilities)):
                    unlike_training = "" if unlike is None else f"{unlike[position]:.4f}"
                    scored[index][4:7] = [f"{probability:.6f}", loaded.label_for(probability), unlike_training]
            last = readable[batch[-1][0]][0]
            for index, row in pending:  # rows with nothing to read (unsafe zip members) keep their place
                yield index, scored.pop(index) if index in scored else _unread(index, row)
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


def score_parts(screen_dir: Path, loaded: LoadedModel, batch_size: int, workers: int | None = None, shard: Shard | None = None) -> None:
    """Score every list row (of `shard`'s parts, given one) that has no part yet, writing each part atomically as soon as its last row is scored."""
    config = runs.read_json(screen_dir / runs.CONFIG)
    total, part_size = int(config["files"]), int(config["part_size"])
    (screen_dir / PARTS).mkdir(exist_ok=True)
    started, done_at_start = time.perf_counter(), rows_done(screen_dir, part_size, total)
    _progress(screen_dir, part_size, total, started, done_at_start)
    for window in _windows(screen_dir, part_size, shard):
        part: list[list] = []
        for index, row in _score_rows(loaded, window, batch_size, workers):
            part.append(row)
            if (index + 1) % part_size == 0 or index + 1 == total:
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                writer.writerow(PART_COLUMNS)
                writer.writerows(part)
                runs.write_text_atomic(_part_path(screen_dir, part[0][0]), buffer.getvalue())
                part = []
                _progress(screen_dir, part_size, total, started, done_at_start)


# ---------------------------------------------------------------------------------------------
# Duplicate groups and scores.csv
# ---------------------------------------------------------------------------------------------


def part_rows(screen_dir: Path) -> Iterator[dict]:
    for part in sorted((screen_dir / PARTS).glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle)


def duplicate_group_ids(sha256s: list[str], phashes: list[int | None], threshold: int = PHASH_THRESHOLD) -> list[int | None]:
    """Per row, the row number (from 1) of the first row that is the same photo: identical bytes or pHashes at most
    `threshold` bits apart, joined transitively (a copy of a copy); None for a row with no bytes to compare."""
    edges = [(i, j) for i, j, _ in near_pairs(phashes, threshold)]
    first: dict[str, int] = {}
    for index, sha256 in enumerate(sha256s):
        if sha256:
            edges.append((first.setdefault(sha256, index), index))
    n = len(sha256s)
    rows, columns = (np.array(c, dtype=np.int64) for c in zip(*edges)) if edges else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    _, component = connected_components(coo_matrix((np.ones(len(rows)), (rows, columns)), shape=(n, n)), directed=False)
    smallest: dict[int, int] = {}
    for index, label in enumerate(component.tolist()):
        smallest.setdefault(label, index)
    return [smallest[label] + 1 if sha256s[index] else None for index, label in enumerate(component.tolist())]


def write_scores(screen_dir: Path) -> dict:
    """Merge the parts into scores.csv (in list order, streamed, renamed into place) with duplicate groups; returns
    what the job list and the log show of it (counts_line), each count in one unit: files (rows), distinct_photos
    (duplicate groups of readable files: an unreadable file is no photo), flagged (files labelled the positive
    class), flagged_photos (distinct photos with a flagged file) and unreadable (files)."""
    sha256s, phashes, readable = [], [], []
    for row in part_rows(screen_dir):
        sha256s.append(row["sha256"])
        phashes.append(int(row["phash"], 16) if row["phash"] else None)
        readable.append(not row["error"])
    groups = duplicate_group_ids(sha256s, phashes)
    positive = runs.read_json(screen_dir / runs.CONFIG)["class_names"][1]
    counts = {"files": len(groups), "distinct_photos": len({group for group, ok in zip(groups, readable) if ok}), "flagged": 0, "unreadable": 0}
    flagged_photos = set()

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row, group in zip(part_rows(screen_dir), groups):
                writer.writerow(
                    [row["path"], row["sha256"], row["probability"], row["label"], row["unlike_training"], "" if group is None else group, row["error"]]
                )
                if row["label"] == positive:
                    counts["flagged"] += 1
                    flagged_photos.add(group)
                counts["unreadable"] += bool(row["error"])
            handle.flush()
            os.fsync(handle.fileno())

    runs.write_atomic(screen_dir / SCORES, write)
    return counts | {"flagged_photos": len(flagged_photos)}


def _count(number: int, unit: str) -> str:
    return f"{number:,} {unit}{'' if number == 1 else 's'}"


def counts_line(counts: dict, positive: str) -> str:
    """A completed job's counts in words, each number with its unit, as the log and the job list both say them:
    "230 files: 227 distinct photos, 109 files / 74 distinct photos flagged captive, 3 files unreadable"."""
    flagged = _count(counts["flagged"], "file")
    if "flagged_photos" in counts:  # counted since jobs count flagged distinct photos
        flagged += f" / {_count(counts['flagged_photos'], 'distinct photo')}"
    unreadable = f", {_count(counts['unreadable'], 'file')} unreadable" if counts["unreadable"] else ""
    return f"{_count(counts['files'], 'file')}: {_count(counts['distinct_photos'], 'distinct photo')}, {flagged} flagged {positive}{unreadable}"


@contextlib.contextmanager
def _merge_lock(screen_dir: Path) -> Iterator[None]:
    """One merging process at a time (flock on .merge.lock, released if its holder dies); where the filesystem
    cannot lock, merging goes on unlocked: write_scores is deterministic and atomic."""
    with open(screen_dir / ".merge.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def merge_when_complete(screen_dir: Path) -> bool:
    """Once every part is written: scores.csv, status completed (with write_scores' counts), parts removed. False while parts are missing.

    Each process that scored parts calls it at its end, so with several SLURM tasks whichever finishes last merges;
    two finishing together merge one after the other (the second finds the job completed)."""
    with _merge_lock(screen_dir):
        status = runs.read_json(screen_dir / runs.STATUS)
        if status.get("state") == "completed" and (screen_dir / SCORES).exists():
            return True
        config = runs.read_json(screen_dir / runs.CONFIG)
        total = int(config["files"])
        if rows_done(screen_dir, int(config["part_size"]), total) < total:
            return False
        counts = write_scores(screen_dir)
        runs.write_status(screen_dir, "completed", done=total, total=total, seconds_left=0, message=f"scores in {screen_dir / SCORES}", counts=counts)
        shutil.rmtree(screen_dir / PARTS, ignore_errors=True)
        return True


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------

CANCELLED_MESSAGE = "cancelled by the user: the images scored so far are kept, and resuming the job scores the rest"


def model_version(loaded: LoadedModel) -> dict:
    """What identifies the weights: the checkpoint's path and modification time, or the default model card's code_version."""
    if loaded.source == "default model":
        return {"default_model_code_version": model_card.load_card()["code_version"]}
    path = Path(loaded.source).resolve()
    return {"checkpoint": str(path), "checkpoint_mtime_ns": path.stat().st_mtime_ns}


def _model_fields(loaded: LoadedModel, batch_size: int, part_batches: int) -> dict:
    """config.json's record of the model, and the part size it fixes for good."""
    version = model_version(loaded)
    return {
        "model_file": version.get("checkpoint", model_card.DEFAULT_NAME),
        "model_version": version,
        "architecture": loaded.arch,
        "threshold": loaded.threshold,
        "class_names": loaded.class_names,
        "batch_size": batch_size,
        "part_size": batch_size * part_batches,
    }


def check_sources(sources: list[str]) -> None:
    """A ValueError naming every source that does not exist."""
    if not sources:
        raise ValueError("give at least one folder, zip or list file to screen")
    missing = [source for source in sources if not Path(source).exists()]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")


def model_file(model: str, runs_dir: Path | None = None) -> str:
    """The model as config.json keeps it: default, or its checkpoint's absolute path (a CheckpointError says why there is none)."""
    if model == model_card.DEFAULT_NAME:
        return model
    return str(checkpoint_path(model, runs_dir or runs.default_runs_dir()).resolve())


def new_screen(
    sources: list[str],
    model: str,
    screens_dir: Path,
    name: str | None = None,
    loaded: LoadedModel | None = None,
    batch_size: int | None = None,
    part_batches: int = PART_BATCHES,
) -> Path:
    """A new job folder holding config.json, whose file list is not made yet (files: null), and status queued.

    With `loaded` (and `batch_size`), config.json records the model at once; without, only the checkpoint is found
    (quick) and the first process that scores the job loads the model and records it (load_screen_model), so the
    dashboard never waits for a model to load. `part_batches`: batches per part file (tests make it small)."""
    check_sources(sources)
    file = model_file(model) if loaded is None else None
    screen_dir = runs.create_run_dir(screens_dir, name or Path(sources[0]).stem or "screen")
    config = {
        "model": model,
        "model_file": file,
        "model_version": None,
        "architecture": None,
        "threshold": None,
        "class_names": None,
        "sources": [str(Path(s).resolve()) for s in sources],
        "sources_as_given": sources,
        "files": None,
        "part_batches": part_batches,
        "part_size": None,
        "batch_size": None,
        "phash_threshold": PHASH_THRESHOLD,
        "created_at": runs.now(),
    }
    if loaded is not None:
        config.update(_model_fields(loaded, batch_size or default_batch_size(loaded.device), part_batches))
    runs.write_json_atomic(screen_dir / runs.CONFIG, config)
    runs.write_status(screen_dir, "queued", message="waiting to start", done=0, total=None)
    return screen_dir


def list_files(screen_dir: Path) -> int:
    """Write the job's file list (files.jsonl), record its length and the system files left out in config.json, and
    say both in the job's log; returns the length."""
    config = runs.read_json(screen_dir / runs.CONFIG)
    left_out: list[str] = []
    config["files"] = write_file_list(screen_dir, config["sources_as_given"], left_out)
    config["system_files_left_out"] = len(left_out)
    runs.write_json_atomic(screen_dir / runs.CONFIG, config)
    print(listing_note(config["files"], left_out), file=sys.stderr, flush=True)
    return config["files"]


def create_screen(
    sources: list[str], model: str, loaded: LoadedModel, batch_size: int, screens_dir: Path, name: str | None = None, part_batches: int = PART_BATCHES
) -> Path:
    """A new job folder with config.json and the file list; scoring is left to `finish_screen`.

    `part_batches`: batches per part file (tests make it small to kill a job between parts)."""
    screen_dir = new_screen(sources, model, screens_dir, name, loaded, batch_size, part_batches)
    runs.write_status(screen_dir, "queued", message="listing files", pid=os.getpid(), host=socket.gethostname())
    list_files(screen_dir)
    return screen_dir


def load_screen_model(screen_dir: Path, device: str = "cpu") -> LoadedModel:
    """The job's model; a job whose model is not recorded yet (new_screen without one) records it now, with the part
    size it fixes; a job whose model's weights changed since it began is refused (its rows would mix two models)."""
    config = runs.read_json(screen_dir / runs.CONFIG)
    loaded = load_model(config["model_file"], device=device)
    if config["model_version"] is None:
        config.update(_model_fields(loaded, default_batch_size(loaded.device), int(config.get("part_batches", PART_BATCHES))))
        runs.write_json_atomic(screen_dir / runs.CONFIG, config)
    elif model_version(loaded) != config["model_version"]:
        raise runs.RunError(f"the model of {screen_dir} changed since the job began ({config['model_version']}); start a new screening job")
    return loaded


@contextlib.contextmanager
def _recorded(screen_dir: Path) -> Iterator[None]:
    """Inside the block SIGTERM (cancel, scancel, a SLURM time limit) is recorded as 'cancelled', any other failure
    as 'failed' with its message; both are raised again. Parts written so far stay: a resume scores only the rest."""
    try:
        with jobs.sigterm_cancels():
            yield
    except jobs.Cancelled:
        runs.write_status(screen_dir, "cancelled", message=CANCELLED_MESSAGE)
        raise
    except Exception as error:
        runs.write_status(screen_dir, "failed", message=str(error))
        raise


def _finish(screen_dir: Path, loaded: LoadedModel, workers: int | None, shard: Shard | None) -> bool:
    config = runs.read_json(screen_dir / runs.CONFIG)
    if not (screen_dir / FILES).exists() or config["files"] is None:  # launched in the background, or killed while listing: list now
        if shard is not None:
            raise runs.RunError(f"{screen_dir} has no file list yet: shards score a list made before they start (screen --slurm-tasks makes it)")
        runs.write_status(screen_dir, "running", message="listing files", done=0, total=None)
        list_files(screen_dir)
    score_parts(screen_dir, loaded, int(runs.read_json(screen_dir / runs.CONFIG)["batch_size"]), workers, shard)
    return merge_when_complete(screen_dir)


def finish_screen(screen_dir: Path, loaded: LoadedModel, workers: int | None = None, shard: Shard | None = None) -> Path:
    """Score what is missing (of `shard`'s parts, given one), then merge scores.csv and mark the job completed once
    every part is written; SIGTERM is recorded as 'cancelled', a failure as 'failed', then raised."""
    with _recorded(screen_dir):
        _finish(screen_dir, loaded, workers, shard)
    return screen_dir


def resume_screen(screen_dir: Path, device: str = "cpu", workers: int | None = None, shard: Shard | None = None) -> Path:
    """Finish a job that was killed, failed, cancelled or is queued (the background process of launch_screen starts
    here); a completed one is left as it is, one running in another process is refused. Given a shard, score only
    its parts and merge if they were the last (shards run side by side, so they are never refused as running)."""
    screen_dir = Path(screen_dir)
    status = runs.read_json(screen_dir / runs.STATUS)
    state = runs.effective_state(status)
    if state == "completed":
        return screen_dir
    if shard is None and state in ("running", "queued") and status.get("pid") not in (None, os.getpid()):
        raise runs.RunError(f"screening job {screen_dir} is still running (pid {status['pid']} on {status.get('host')})")
    with _recorded(screen_dir):
        runs.write_status(screen_dir, "running", message="loading the model" + (f" (shard {shard[0]}/{shard[1]})" if shard else ""))
        _finish(screen_dir, load_screen_model(screen_dir, device), workers, shard)
    return screen_dir


def screen(sources: list[str], model: str = "default", name: str | None = None, screens_dir: Path | None = None, device: str = "cpu") -> Path:
    """A whole job, start to finish: returns its folder (scores.csv is there)."""
    loaded = load_model(model, runs.default_runs_dir(), device)
    screen_dir = create_screen(sources, model, loaded, default_batch_size(loaded.device), screens_dir or default_screens_dir(), name)
    return finish_screen(screen_dir, loaded)


def add_screen_arguments(parser: argparse.ArgumentParser) -> None:
    """The `screen` command's options, for cli.build_parser."""
    parser.add_argument(
        "sources", nargs="*", metavar="SOURCE", help="folders of images (searched recursively), zips of images, or text files listing image paths"
    )
    parser.add_argument("--resume", metavar="SCREEN_DIR", help="finish a killed, failed or cancelled screening job instead of starting one")
    parser.add_argument(
        "--shard",
        type=_shard_argument,
        metavar="I/N",
        help="with --resume: score only the parts whose number modulo N is I, as SLURM array task I of N does; "
        "whichever shard finds every part written merges scores.csv",
    )
    parser.add_argument(
        "--model", default="default", help="default (the shipped model), a run folder, a run name under $WILDVISION_RUNS_DIR, or a checkpoint.pt"
    )
    parser.add_argument("--name", help="the job folder's name (default: the first source's name)")
    parser.add_argument("--screens-dir", type=Path, help=f"where job folders go (default: ${SCREENS_DIR_ENV}, else screens/)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto (a GPU when there is one; default: cpu); with --slurm-tasks, what each task uses (cpu, cuda or cuda:N)",
    )
    cluster = parser.add_argument_group("SLURM", "with --slurm-tasks; the job folder (--screens-dir) must be on a filesystem the compute nodes share")
    cluster.add_argument(
        "--slurm-tasks",
        type=int,
        metavar="N",
        help="list the files here, then score them as one SLURM job array of N tasks (task I scores the parts whose number modulo N is I) and return",
    )
    cluster.add_argument("--dry-run", action="store_true", help="print the batch script that --slurm-tasks would submit; create and submit nothing")
    slurm.add_settings_arguments(cluster)


def _shard_argument(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_screen(args: argparse.Namespace) -> int:
    """`python -m wildvision screen`: 0 when every file was scored (or a SLURM job submitted, or a shard done), 1 when
    some files could not be read, 2 on bad arguments, 130 when cancelled."""
    if bool(args.resume) == bool(args.sources):
        print("error: give SOURCE... to start a screening job, or --resume SCREEN_DIR to finish one (not both)", file=sys.stderr)
        return 2
    cluster = args.slurm_tasks is not None
    if (args.shard and not args.resume) or (cluster and args.resume) or (args.dry_run and not cluster):
        print("error: --shard goes with --resume, --slurm-tasks with SOURCE..., --dry-run with --slurm-tasks", file=sys.stderr)
        return 2
    if cluster:
        from wildvision import screen_jobs

        return screen_jobs.run_slurm_screen(args)
    try:
        if args.resume:
            screen_dir = resume_screen(Path(args.resume), args.device, shard=args.shard)
        else:
            screen_dir = screen(args.sources, args.model, args.name, args.screens_dir, args.device)
    except jobs.Cancelled:
        print(f"cancelled: {CANCELLED_MESSAGE}", file=sys.stderr)
        return jobs.CANCELLED_EXIT
    status = runs.read_json(screen_dir / runs.STATUS)
    if status["state"] != "completed":  # a shard whose parts are done while other shards' are not
        print(f"shard {args.shard[0]}/{args.shard[1]} of {screen_dir}: its parts are scored; the shard that finishes last merges scores.csv")
        return 0
    counts = status.get("counts")
    if counts is None:  # completed by a wildvision that did not count
        print(f"{screen_dir / SCORES}: completed")
        return 0
    positive = runs.read_json(screen_dir / runs.CONFIG)["class_names"][1]
    print(f"screened {counts_line(counts, positive)}; scores in {screen_dir / SCORES}")
    return 1 if counts["unreadable"] else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m wildvision.screening`: the same command, for background processes and tests."""
    parser = argparse.ArgumentParser(prog="python -m wildvision.screening", description=__doc__.split("\n\n")[0])
    add_screen_arguments(parser)
    return run_screen(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
