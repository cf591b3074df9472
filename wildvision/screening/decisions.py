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
How the file is created, versioned, opened read-only for viewing, and refused in words when damaged: decision_store.py.
"""

from __future__ import annotations

import csv
import math
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from scipy.stats import binomtest

from wildvision import runs, wording
from wildvision.screening import decision_store
from wildvision.screening.config import SCORES, read_config
from wildvision.screening.decision_store import key, path_of, reading, writing

#: The store's file in a screening folder, and its refusals, as callers of this module name them (decision_store's).
DATABASE = decision_store.DATABASE
DecisionsUnreadable, DecisionsUnwritable = decision_store.DecisionsUnreadable, decision_store.DecisionsUnwritable
UNSURE = "unsure"
#: The shipped model's class names, negative first (a checkpoint's class_names order; the last is the positive class).
DEFAULT_CLASSES = ("not_captive", "captive")


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


class DecidedMeanwhile(ValueError):
    """Someone else decided the photo after it was shown; nothing was saved. `decision` is theirs, to show again."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"decided meanwhile by {wording.plain_name(decision.reviewer)} as {wording.label_words(decision.label)}")
        self.decision = decision


def scored_items(screen_dir: str | Path) -> dict[str, dict[str, str]] | None:
    """scores.csv's rows by path, or None when the folder has no scores.csv (decisions are then not checked against it)."""
    path = Path(screen_dir) / SCORES
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:  # a name that was not UTF-8 reads back as written
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
            "the reviewer name or note is not UTF-8 text" if key(reviewer + (note or "")) != reviewer + (note or "") else None,
        ]
        problems += [prefix + problem for problem in found if problem]
        rows.append((path, label, reviewer.strip(), note or None))
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise ValueError("nothing was saved:\n  " + "\n  ".join(shown))
    if not rows:
        raise ValueError("no decisions were given")
    return rows


class _Unchecked:
    """decide()'s default for `shown`: the caller did not show the photo (a command, an import), so nothing is compared."""


UNCHECKED = _Unchecked()


def _same(a: Decision | None, b: Decision | None) -> bool:
    """Whether two decisions are one (or both None): the same label, by the same person, at the same time."""
    return (a is None) == (b is None) and (a is None or (a.label, a.reviewer, a.decided_at) == (b.label, b.reviewer, b.decided_at))


def _check_shown(connection: sqlite3.Connection, paths: Sequence[str], shown: Mapping[str, Decision | None]) -> None:
    """Refuse (DecidedMeanwhile) when any path's decision is no longer the one shown: inside the write transaction,
    so no other decision can land between this check and the save."""
    marks = ",".join("?" * len(paths))
    query = f"SELECT path, label, reviewer, note, decided_at, sha256, duplicate_group FROM decisions WHERE path IN ({marks})"
    now = {d.path: d for d in (Decision(path_of(row[0]), *row[1:]) for row in connection.execute(query, [key(p) for p in paths]))}
    changed = [path for path in paths if not _same(now.get(path), shown.get(path))]
    if changed:
        made = [now[path] for path in changed if path in now]
        if not made:
            raise ValueError("the decision shown on this photo is gone meanwhile; look at the photo again")
        raise DecidedMeanwhile(max(made, key=lambda d: d.decided_at))


def _record(
    screen_dir: str | Path,
    rows: Sequence[tuple[str, str, str, str | None]],
    items: Mapping[str, Mapping[str, str]] | None,
    shown: Mapping[str, Decision | None] | _Unchecked = UNCHECKED,
) -> None:
    """Write checked rows in one transaction: all of them or, on any failure, none."""
    decided_at = runs.now()
    with writing(screen_dir) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if not isinstance(shown, _Unchecked):
                _check_shown(connection, [path for path, *_ in rows], shown)
            for path, label, reviewer, note in rows:
                previous = connection.execute("SELECT label FROM decisions WHERE path = ?", (key(path),)).fetchone()
                item = (items or {}).get(path, {})
                connection.execute(
                    """INSERT INTO decisions (path, label, reviewer, note, decided_at, sha256, duplicate_group)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (path) DO UPDATE SET label = excluded.label, reviewer = excluded.reviewer, note = excluded.note,
                           decided_at = excluded.decided_at, sha256 = coalesce(excluded.sha256, sha256),
                           duplicate_group = coalesce(excluded.duplicate_group, duplicate_group)""",
                    (key(path), label, reviewer, note, decided_at, item.get("sha256") or None, item.get("duplicate_group") or None),
                )
                connection.execute(
                    "INSERT INTO history (path, label, reviewer, note, decided_at, previous_label) VALUES (?, ?, ?, ?, ?, ?)",
                    (key(path), label, reviewer, note, decided_at, previous[0] if previous else None),
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
    shown: Mapping[str, Decision | None] | _Unchecked = UNCHECKED,
) -> None:
    """Give every path the same label in one transaction (the Review page decides a near-duplicate group at once).

    `items` are scores.csv's rows by path (scored_items); when not given they are read from the folder, and a path
    that is not in them is refused, so a decision always names an item the model scored. `shown`: each path's decision
    as the person saw it (None, or left out: undecided); when any has changed since, nothing is saved and
    DecidedMeanwhile says whose decision it is, so two reviewers never overwrite each other unseen.
    """
    items = scored_items(screen_dir) if items is None else items
    _record(screen_dir, _checked((("", str(path), label, reviewer, note) for path in paths), items, allowed_labels), items, shown)


def decide_each(
    screen_dir: str | Path, decided: Iterable[tuple[str, str, str]], reviewer: str, note: str | None = None, allowed_labels: Sequence[str] = DEFAULT_CLASSES
) -> int:
    """Give each (where it was asked, path, label) its own label in one transaction (the review command's --decide
    options); every bad entry is named by where it was asked, and then none is saved. Returns how many were saved."""
    items = scored_items(screen_dir)
    rows = _checked(((where, path, label, reviewer, note) for where, path, label in decided), items, allowed_labels)
    _record(screen_dir, rows, items)
    return len(rows)


#: The longest field `review --import` reads: a path, a label or a note is never this long, and a larger field is a
#: file that is not a list of decisions (Python's csv module stops at 131,072 characters with a traceback).
MAX_IMPORT_FIELD = 10_000


def _import_entries(csv_path: str | Path, reviewer: str) -> list[tuple[str, str, str, str, str | None]]:
    """A decisions CSV's rows as _checked's entries, decided by `reviewer`: refused, by line, when a field is oversized,
    and as a whole when it is not UTF-8, lacks path or label, names a column twice or has a reviewer column."""
    name = Path(csv_path).name
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets save UTF-8 with a byte-order mark
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            twice = sorted({column for column in header if header.count(column) > 1})
            if twice:
                raise ValueError(f"{name} names the column {', '.join(map(repr, twice))} twice: which one holds the decision is unclear")
            if "reviewer" in header:
                raise ValueError(
                    f"{name} has a reviewer column, but imported decisions are recorded as the person importing them ({reviewer}): "
                    "remove the column, or let each reviewer import their own decisions"
                )
            if {"path", "label"} - set(header):
                raise ValueError(f"{name} needs the columns path and label (it has: {', '.join(header) or 'none'})")
            entries = []
            for cells in reader:
                if any(len(cell) > MAX_IMPORT_FIELD for cell in cells):
                    raise csv.Error("oversized")
                row = dict(zip(header, cells))
                entries.append((f"line {reader.line_num}", row.get("path", "").strip(), row.get("label", "").strip(), reviewer, row.get("note")))
    except csv.Error:
        raise ValueError(
            f"{name}, line {reader.line_num}: a field of more than {MAX_IMPORT_FIELD:,} characters (or a broken quote); "
            "a path, label or note is never that long, so this is not a list of decisions; nothing was imported"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{name} is not UTF-8 text (byte {error.start:,} is not): save it as CSV UTF-8 and import it again; nothing was imported") from None
    return entries


def import_csv(screen_dir: str | Path, csv_path: str | Path, reviewer: str, allowed_labels: Sequence[str] = DEFAULT_CLASSES) -> int:
    """Apply a CSV of decisions (columns path, label and optionally note), all as decided by `reviewer` (who imports
    them: a column cannot say who decided, or anyone could decide as anyone), in one transaction, and return how
    many rows it held. Every bad row is named by its line number, and then nothing of the file is applied."""
    entries = _import_entries(csv_path, reviewer)
    items = scored_items(screen_dir)
    rows = _checked(entries, items, allowed_labels)
    _record(screen_dir, rows, items)
    return len(rows)


def current(screen_dir: str | Path) -> dict[str, Decision]:
    """The latest decision on each decided item, by path (empty when nobody decided yet; reading creates no store)."""
    with reading(screen_dir) as connection:
        rows = (
            []
            if connection is None
            else connection.execute("SELECT path, label, reviewer, note, decided_at, sha256, duplicate_group FROM decisions").fetchall()
        )
    decided = (Decision(path_of(row[0]), *row[1:]) for row in rows)
    return {d.path: d for d in sorted(decided, key=lambda d: d.path)}


def history(screen_dir: str | Path, path: str | None = None) -> list[Decision]:
    """Every decision in the order it was made, on one item or on all."""
    where, parameters = (" WHERE path = ?", (key(path),)) if path is not None else ("", ())
    with reading(screen_dir) as connection:
        query = f"SELECT path, label, reviewer, note, decided_at, previous_label FROM history{where} ORDER BY id"
        rows = [] if connection is None else connection.execute(query, parameters).fetchall()
    return [Decision(path_of(row[0]), *row[1:5], previous_label=row[5]) for row in rows]


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
    with writing(screen_dir) as connection:
        connection.execute(
            "INSERT INTO thresholds (threshold, reviewer, adopted_at, target_precision, reviewed) VALUES (?, ?, ?, ?, ?)",
            (float(threshold), reviewer.strip(), runs.now(), target_precision, reviewed),
        )


def adopted_threshold(screen_dir: str | Path) -> Adopted | None:
    """The threshold last adopted for the job, or None while it uses its model's own (reading creates no store)."""
    with reading(screen_dir) as connection:
        if connection is None or connection.execute("PRAGMA user_version").fetchone()[0] < 2:  # thresholds came with schema 2
            return None
        row = connection.execute("SELECT threshold, reviewer, adopted_at, target_precision, reviewed FROM thresholds ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else Adopted(*row)
