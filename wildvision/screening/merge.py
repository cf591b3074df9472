"""Merging a job's parts into scores.csv, with duplicate groups: the end of a screening job.

scores.csv has one row per listed file, in list order, with SCORES_COLUMNS. It stays a plain CSV whose first line is
its header, because NGO staff open it in a spreadsheet: a version comment line or a version column would be noise
there. Its format is the job folder's (config.json's `format`, see config.py), and readers check the header holds
the columns they use (check_columns), so a scores.csv from an older wildvision still reads, and a foreign or
truncated one is named plainly instead of failing on a missing key.

A reposted photo is one review item: files with identical bytes (SHA-256) or pHashes at most
photos.PHASH_THRESHOLD bits apart share `duplicate_group`, the list row number (from 1) of the group's first
file (photos.duplicate_group_ids); a photo seen once is its own group. Groups are computed at the end, over all rows.

A file name that is not UTF-8 (os.fsdecode holds its bytes as surrogates) is written as its own bytes
(errors="surrogateescape"), so scores.csv names the exact file; every reader opens it the same way.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from wildvision import photos, runs
from wildvision.screening import job_features
from wildvision.screening.config import PARTS, SCORES, ScreenConfig
from wildvision.screening.scoring import rows_done

SCORES_COLUMNS = ["path", "sha256", "probability", "label", "unlike_training", "duplicate_group", "error"]


def check_columns(columns: Iterable[str] | None, path: Path) -> None:
    """Refuse a scores.csv whose header lacks a column of SCORES_COLUMNS, naming what is missing."""
    present = set(columns if columns is not None else ())
    missing = [column for column in SCORES_COLUMNS if column not in present]
    if missing:
        raise runs.RunError(f"{path} is not a screening job's scores.csv: it has no {', '.join(missing)} column")


def part_rows(screen_dir: Path) -> Iterator[dict]:
    """The rows of every part written so far, in list order (scoring.PART_COLUMNS)."""
    for part in sorted((screen_dir / PARTS).glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8", errors="surrogateescape") as handle:
            yield from csv.DictReader(handle)


def write_scores(screen_dir: Path, config: ScreenConfig) -> dict:
    """Merge the parts into scores.csv (in list order, streamed, renamed into place) with duplicate groups; returns
    what the job list and the log show of it (counts_line), each count in one unit: files (rows), distinct_photos
    (duplicate groups of readable files: an unreadable file is no photo), flagged (files labelled the positive
    class), flagged_photos (distinct photos with a flagged file) and unreadable (files)."""
    sha256s, phashes, readable = [], [], []
    for row in part_rows(screen_dir):
        sha256s.append(row["sha256"])
        phashes.append(int(row["phash"], 16) if row["phash"] else None)
        readable.append(not row["error"])
    groups = photos.duplicate_group_ids(sha256s, phashes)
    positive = config.positive
    counts = {"files": len(groups), "distinct_photos": len({group for group, ok in zip(groups, readable) if ok}), "flagged": 0, "unreadable": 0}
    flagged_photos = set()

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:  # names byte for byte
            writer = csv.writer(handle)
            writer.writerow(SCORES_COLUMNS)
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


def merge_when_complete(screen_dir: Path, config: ScreenConfig) -> bool:
    """Once every part is written: scores.csv, status completed (with write_scores' counts), parts removed. False while parts are missing.

    Each process that scored parts calls it at its end, so with several SLURM tasks whichever finishes last merges;
    two finishing together merge one after the other (the second finds the job completed)."""
    with _merge_lock(screen_dir):
        status = runs.read_json(screen_dir / runs.STATUS)
        if status.get("state") == "completed" and (screen_dir / SCORES).exists():
            return True
        total = int(config.files or 0)
        if rows_done(screen_dir, int(config.part_size or 0), total) < total:
            return False
        counts = write_scores(screen_dir, config)
        job_features.merge_parts(screen_dir)
        runs.write_status(screen_dir, "completed", done=total, total=total, seconds_left=0, message=f"scores in {screen_dir / SCORES}", counts=counts)
        shutil.rmtree(screen_dir / PARTS, ignore_errors=True)
        return True
