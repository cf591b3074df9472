"""People's decisions on a screening job's flagged images, kept beside the model's scores and never over them.

screens/<screen-id>/decisions.sqlite
  decisions   one current row per item: path (as scores.csv spells it), label, reviewer, note, decided_at (UTC ISO),
              and the item's sha256 and duplicate_group copied from scores.csv
  history     every decision ever made, append-only (triggers refuse UPDATE and DELETE), with the label it replaced
  thresholds  every threshold adopted for the job (append-only; the latest is the job's line): threshold, reviewer,
              adopted_at, and the target precision and reviewed items it rests on

scores.csv is the model's and is only read here: a person's word and the model's score stay apart, so the measured
precision of the flags can always be recomputed from both.

SQLite rather than a JSON file rewritten atomically as in runs.py: two browser tabs or two processes may decide at
once, and a read-modify-write of a whole file would let the later writer drop the earlier one's decision. Here the
database runs in WAL mode (readers never wait for a writer and a writer never waits for readers), every change is one
``BEGIN IMMEDIATE`` transaction (it takes the write lock before reading the label it replaces, so two changes to one
item are ordered and both land in history), and a busy timeout makes a second writer wait its turn instead of failing.
``PRAGMA user_version`` holds the schema version, so a later wildvision can migrate an older store and an older one
refuses a newer store instead of misreading it.
"""

from __future__ import annotations

import contextlib
import csv
import math
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from scipy.stats import binomtest

from wildvision import runs
from wildvision.screening.config import SCORES, read_config

DATABASE = "decisions.sqlite"
SCHEMA_VERSION = 2
UNSURE = "unsure"
#: The shipped model's class names, negative first (a checkpoint's class_names order; the last is the positive class).
DEFAULT_CLASSES = ("not_captive", "captive")
#: How long a writer waits for another's transaction before giving up; a decision takes milliseconds.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = (
    """CREATE TABLE decisions (
        path TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        note TEXT,
        decided_at TEXT NOT NULL,
        sha256 TEXT,
        duplicate_group TEXT
    )""",
    """CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        label TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        note TEXT,
        decided_at TEXT NOT NULL,
        previous_label TEXT
    )""",
    "CREATE INDEX history_path ON history (path)",
    "CREATE TRIGGER history_no_update BEFORE UPDATE ON history BEGIN SELECT RAISE(ABORT, 'history is append-only'); END",
    "CREATE TRIGGER history_no_delete BEFORE DELETE ON history BEGIN SELECT RAISE(ABORT, 'history is append-only'); END",
)
_SCHEMA_2 = (
    """CREATE TABLE thresholds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        threshold REAL NOT NULL,
        reviewer TEXT NOT NULL,
        adopted_at TEXT NOT NULL,
        target_precision REAL,
        reviewed INTEGER
    )""",
    "CREATE TRIGGER thresholds_no_update BEFORE UPDATE ON thresholds BEGIN SELECT RAISE(ABORT, 'thresholds are append-only'); END",
    "CREATE TRIGGER thresholds_no_delete BEFORE DELETE ON thresholds BEGIN SELECT RAISE(ABORT, 'thresholds are append-only'); END",
)
#: The statements that bring a store from version i to i + 1.
_MIGRATIONS = (_SCHEMA, _SCHEMA_2)


@dataclass(frozen=True)
class Decision:
    """One decision on one item. current() fills sha256 and duplicate_group; history() fills previous_label
    (None the first time the item was decided)."""

    path: str
    label: str
    reviewer: str
    note: str | None
    decided_at: str
    sha256: str | None = None
    duplicate_group: str | None = None
    previous_label: str | None = None


class Precision(NamedTuple):
    """The share of reviewed flags that people found positive, with its Wilson 95% interval, over n items."""

    precision: float
    low: float
    high: float
    n: int


def open_store(screen_dir: str | Path) -> sqlite3.Connection:
    """A connection to the screening folder's decision store, created (or migrated) on first use.

    The connection is in autocommit mode: writers open their own ``BEGIN IMMEDIATE`` transactions.
    """
    screen_dir = Path(screen_dir)
    if not screen_dir.is_dir():
        raise ValueError(f"{screen_dir} is not a screening folder")
    connection = sqlite3.connect(screen_dir / DATABASE, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _use_wal(connection)
        connection.execute("PRAGMA synchronous = FULL")  # a decision reported as saved survives a power cut
        _migrate(connection, screen_dir / DATABASE)
    except BaseException:
        connection.close()
        raise
    return connection


def _use_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL once (it stays in the file). The switch needs the file to itself and SQLite answers
    "database is locked" at once, without its busy timeout, while another process creates or writes the store: so
    wait and try again, for as long as a writer would wait."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(connection: sqlite3.Connection, database: Path) -> None:
    """Bring the store to SCHEMA_VERSION; the write lock is taken only when something has to change."""
    if connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]  # another process may have created it meanwhile
        if version > SCHEMA_VERSION:
            raise ValueError(f"{database} was written by a newer wildvision (schema {version}, this one reads {SCHEMA_VERSION}): update wildvision")
        for statement in (statement for step in _MIGRATIONS[version:] for statement in step):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def scored_items(screen_dir: str | Path) -> dict[str, dict[str, str]] | None:
    """scores.csv's rows by path, or None when the folder has no scores.csv (decisions are then not checked against it)."""
    path = Path(screen_dir) / SCORES
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def screen_classes(screen_dir: str | Path) -> tuple[str, ...]:
    """The class names a screening job's model uses (its config.json's class_names), else the shipped model's."""
    names = read_config(Path(screen_dir)).class_names if (Path(screen_dir) / runs.CONFIG).is_file() else None
    return names or DEFAULT_CLASSES


def _label_problem(label: str, allowed_labels: Sequence[str]) -> str | None:
    allowed = (*allowed_labels, UNSURE)
    return None if label in allowed else f"{label!r} is not a label here; use one of: {', '.join(allowed)}"


def _checked(
    entries: Iterable[tuple[str, str, str, str, str | None]], items: Mapping[str, Mapping[str, str]] | None, allowed_labels: Sequence[str]
) -> list[tuple[str, str, str, str | None]]:
    """(path, label, reviewer, note) for each (where, path, label, reviewer, note) entry; every problem, each prefixed
    by where it came from (a line number, an option), is raised together, so a bad entry applies nothing."""
    rows, problems = [], []
    for where, path, label, reviewer, note in entries:
        prefix = f"{where}: " if where else ""
        found = [
            _label_problem(label, allowed_labels),
            "no path" if not path else None,
            f"{path} is not in this screening job's {SCORES}" if path and items is not None and path not in items else None,
            "no reviewer name" if not reviewer.strip() else None,
        ]
        problems += [prefix + problem for problem in found if problem]
        rows.append((path, label, reviewer.strip(), note or None))
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise ValueError("nothing was saved:\n  " + "\n  ".join(shown))
    if not rows:
        raise ValueError("no decisions were given")
    return rows


def _record(screen_dir: str | Path, rows: Sequence[tuple[str, str, str, str | None]], items: Mapping[str, Mapping[str, str]] | None) -> None:
    """Write checked rows in one transaction: all of them or, on any failure, none."""
    decided_at = runs.now()
    with contextlib.closing(open_store(screen_dir)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for path, label, reviewer, note in rows:
                previous = connection.execute("SELECT label FROM decisions WHERE path = ?", (path,)).fetchone()
                item = (items or {}).get(path, {})
                connection.execute(
                    """INSERT INTO decisions (path, label, reviewer, note, decided_at, sha256, duplicate_group)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (path) DO UPDATE SET label = excluded.label, reviewer = excluded.reviewer, note = excluded.note,
                           decided_at = excluded.decided_at, sha256 = coalesce(excluded.sha256, sha256),
                           duplicate_group = coalesce(excluded.duplicate_group, duplicate_group)""",
                    (path, label, reviewer, note, decided_at, item.get("sha256") or None, item.get("duplicate_group") or None),
                )
                connection.execute(
                    "INSERT INTO history (path, label, reviewer, note, decided_at, previous_label) VALUES (?, ?, ?, ?, ?, ?)",
                    (path, label, reviewer, note, decided_at, previous[0] if previous else None),
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


def decide(
    screen_dir: str | Path,
    paths: Iterable[str],
    label: str,
    reviewer: str,
    note: str | None = None,
    allowed_labels: Sequence[str] = DEFAULT_CLASSES,
    items: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Give every path the same label in one transaction (the Review page decides a near-duplicate group at once).

    `items` are scores.csv's rows by path (scored_items); when not given they are read from the folder, and a path
    that is not in them is refused, so a decision always names an item the model scored.
    """
    items = scored_items(screen_dir) if items is None else items
    _record(screen_dir, _checked((("", str(path), label, reviewer, note) for path in paths), items, allowed_labels), items)


def decide_each(
    screen_dir: str | Path, decided: Iterable[tuple[str, str, str]], reviewer: str, note: str | None = None, allowed_labels: Sequence[str] = DEFAULT_CLASSES
) -> int:
    """Give each (where it was asked, path, label) its own label in one transaction (the review command's --decide
    options); every bad entry is named by where it was asked, and then none is saved. Returns how many were saved."""
    items = scored_items(screen_dir)
    rows = _checked(((where, path, label, reviewer, note) for where, path, label in decided), items, allowed_labels)
    _record(screen_dir, rows, items)
    return len(rows)


def import_csv(screen_dir: str | Path, csv_path: str | Path, reviewer: str, allowed_labels: Sequence[str] = DEFAULT_CLASSES) -> int:
    """Apply a CSV of decisions (columns path,label and optionally note and reviewer, which overrides `reviewer` on its
    row) in one transaction, and return how many rows it held. Every bad row is named by its line number, and then
    nothing of the file is applied."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets save UTF-8 with a byte-order mark
        reader = csv.DictReader(handle)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path} needs the columns path and label (it has: {', '.join(reader.fieldnames or ()) or 'none'})")
        entries = [
            (f"line {reader.line_num}", (row["path"] or "").strip(), (row["label"] or "").strip(), row.get("reviewer") or reviewer, row.get("note"))
            for row in reader
        ]
    items = scored_items(screen_dir)
    rows = _checked(entries, items, allowed_labels)
    _record(screen_dir, rows, items)
    return len(rows)


def current(screen_dir: str | Path) -> dict[str, Decision]:
    """The latest decision on each decided item, by path."""
    with contextlib.closing(open_store(screen_dir)) as connection:
        rows = connection.execute("SELECT path, label, reviewer, note, decided_at, sha256, duplicate_group FROM decisions ORDER BY path").fetchall()
    return {row[0]: Decision(*row) for row in rows}


def history(screen_dir: str | Path, path: str | None = None) -> list[Decision]:
    """Every decision in the order it was made, on one item or on all."""
    where, parameters = (" WHERE path = ?", (path,)) if path is not None else ("", ())
    with contextlib.closing(open_store(screen_dir)) as connection:
        rows = connection.execute(f"SELECT path, label, reviewer, note, decided_at, previous_label FROM history{where} ORDER BY id", parameters).fetchall()
    return [Decision(*row[:5], previous_label=row[5]) for row in rows]


def _reviewed(decisions: Iterable[Decision], flagged: Collection[str] | None) -> list[Decision]:
    """The decisions that say captive or not: unsure says neither, and items outside `flagged` say nothing about the flags."""
    return [d for d in decisions if d.label != UNSURE and (flagged is None or d.path in flagged)]


def measured_precision(decisions: Iterable[Decision], positive_label: str, flagged: Collection[str] | None = None) -> Precision:
    """The precision of the model's flags as people measured it: the share of reviewed flagged items they decided
    `positive_label`, with the Wilson score 95% interval (Wilson, 1927, JASA 22:209-212; scipy's binomtest), which
    keeps within [0, 1] and stays honest for the few dozen items a person reviews, where the normal approximation
    does not. `flagged` is the set of paths the model flagged (None: every decision counts). With no reviewed item
    all three numbers are NaN."""
    reviewed = _reviewed(decisions, flagged)
    if not reviewed:
        return Precision(math.nan, math.nan, math.nan, 0)
    positives = sum(d.label == positive_label for d in reviewed)
    interval = binomtest(positives, len(reviewed)).proportion_ci(confidence_level=0.95, method="wilson")
    return Precision(positives / len(reviewed), float(interval.low), float(interval.high), len(reviewed))


class Adopted(NamedTuple):
    """A threshold adopted for a job: the line its flags are drawn at from then on, and what it rests on."""

    threshold: float
    reviewer: str
    adopted_at: str
    target_precision: float | None
    reviewed: int | None


def adopt_threshold(screen_dir: str | Path, threshold: float, reviewer: str, target_precision: float | None = None, reviewed: int | None = None) -> None:
    """Draw the job's flags at `threshold` from now on (the model's own threshold again undoes a change).

    Kept in the decision store, append-only, so who moved the line, when and on what evidence stays on record;
    scores.csv's `label` column keeps the model's own verdicts."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"a threshold is a probability between 0 and 1, not {threshold}")
    if not reviewer.strip():
        raise ValueError("no reviewer name: say who adopts the threshold")
    with contextlib.closing(open_store(screen_dir)) as connection:
        connection.execute(
            "INSERT INTO thresholds (threshold, reviewer, adopted_at, target_precision, reviewed) VALUES (?, ?, ?, ?, ?)",
            (float(threshold), reviewer.strip(), runs.now(), target_precision, reviewed),
        )


def adopted_threshold(screen_dir: str | Path) -> Adopted | None:
    """The threshold last adopted for the job, or None while it uses its model's own (reading creates no store)."""
    if not (Path(screen_dir) / DATABASE).is_file():
        return None
    with contextlib.closing(open_store(screen_dir)) as connection:
        row = connection.execute("SELECT threshold, reviewer, adopted_at, target_precision, reviewed FROM thresholds ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else Adopted(*row)
