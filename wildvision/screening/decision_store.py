"""The SQLite file behind a screening job's decisions (screens/<screen-id>/decisions.sqlite): creating, migrating and
opening it, and its failures in words. What the decisions mean, and the tables' rows, are decisions.py's.

WAL mode lets readers never wait for a writer and a writer never wait for readers; every change is one
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes a second writer wait its turn instead of failing.
``PRAGMA user_version`` holds the schema version, so a later wildvision can migrate an older store and an older one
refuses a newer store instead of misreading it.

Viewing opens the store read-only (reading) and never creates it: a job nobody decided yet reads as empty, even on a
full disk or in a folder the server may not write. Only a decision creates the store (open_store), built under a
temporary name and linked into place whole, so a failed creation leaves no empty file behind. A damaged store is
refused in words (DecisionsUnreadable) and left as it is; a write that fails (full disk) saves nothing and says so
(DecisionsUnwritable). A name that is not UTF-8 (held as surrogates, os.fsdecode) is kept as its bytes (key), which
SQLite keeps apart from text, so it reads back as it was (path_of).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from wildvision import runs

DATABASE = "decisions.sqlite"
SCHEMA_VERSION = 3
#: How long a writer waits for another's transaction before giving up; a decision takes milliseconds.
BUSY_TIMEOUT_S = 30.0
#: SQLite's primary result codes for a file that is not a database or is damaged (SQLITE_NOTADB, SQLITE_CORRUPT)
#: and for a store kept busy past the timeout (SQLITE_BUSY).
DAMAGED_CODES, BUSY_CODE = (26, 11), 5

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
#: The job's audit sample (audit.py): one design row (seed, line and stratum sizes at first draw), every unit's
#: stratum at first draw (audit_frame, so a job re-scored since grows its sample as drawn) and one row per sampled unit.
_SCHEMA_3 = (
    """CREATE TABLE audit_design (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seed INTEGER NOT NULL,
        line REAL NOT NULL,
        unit TEXT NOT NULL,
        flagged_size INTEGER NOT NULL,
        uncertain_size INTEGER NOT NULL,
        rest_size INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        reviewer TEXT NOT NULL
    )""",
    """CREATE TABLE audit (
        path TEXT PRIMARY KEY,
        stratum TEXT NOT NULL,
        stratum_size INTEGER NOT NULL,
        draw_order INTEGER NOT NULL UNIQUE
    )""",
    "CREATE TABLE audit_frame (path TEXT PRIMARY KEY, stratum TEXT NOT NULL)",
)
#: The statements that bring a store from version i to i + 1.
_MIGRATIONS = (_SCHEMA, _SCHEMA_2, _SCHEMA_3)


class DecisionsUnreadable(ValueError):
    """A job's decision store is damaged or cannot be read; nothing was read from it or changed in it."""


class DecisionsUnwritable(ValueError):
    """A decision could not be saved (full disk, folder not writable, store busy); nothing was saved."""


def _refusal(screen_dir: Path, error: sqlite3.DatabaseError, writing: bool) -> Exception:
    """The words for an SQLite failure: the job, what happened, and that nothing was changed."""
    job, code = Path(screen_dir).name, getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in DAMAGED_CODES:
        return DecisionsUnreadable(
            f"the decisions of screening job {job} cannot be read: its {DATABASE} is damaged ({error}), and nothing was changed. "
            "Move that file aside, or restore it from a backup, to review the job again"
        )
    if not isinstance(error, sqlite3.OperationalError):
        return error  # a mistake in this module, not a problem of the file: shown as it is
    if not writing:
        return DecisionsUnreadable(f"the decisions of screening job {job} cannot be read ({error}); nothing was changed")
    if code == BUSY_CODE:
        reason = f"another reviewer's save kept it busy for more than {BUSY_TIMEOUT_S:g} s; try again"
    else:
        reason = f"{error}: is the disk full or the folder read-only?"
    return DecisionsUnwritable(f"the decision was not saved in screening job {job}: its {DATABASE} could not be written ({reason}); nothing was saved")


@contextlib.contextmanager
def refusals(screen_dir: str | Path, writing: bool) -> Iterator[None]:
    """Turn SQLite's and the file system's failures inside the block into _refusal's words."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        raise _refusal(Path(screen_dir), error, writing) from None
    except OSError as error:
        if not writing:
            raise
        raise DecisionsUnwritable(
            f"the decision was not saved in screening job {Path(screen_dir).name}: its {DATABASE} could not be created "
            f"({error.strerror or error}: is the disk full or the folder read-only?); nothing was saved"
        ) from None


def key(path: str) -> str | bytes:
    """A path as the store keeps it: text, or the bytes of a name that was not UTF-8 (SQLite cannot hold surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")
    return path


def path_of(value: str | bytes) -> str:
    """A stored path read back as the name it was (key's inverse)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def open_store(screen_dir: str | Path) -> sqlite3.Connection:
    """A connection to write the screening folder's decision store, created (or migrated) on first use.

    The connection is in autocommit mode: writers open their own ``BEGIN IMMEDIATE`` transactions.
    """
    screen_dir = Path(screen_dir)
    if not screen_dir.is_dir():
        raise ValueError(f"{screen_dir} is not a screening folder")
    if not (screen_dir / DATABASE).exists():
        _create(screen_dir / DATABASE)
    connection = sqlite3.connect(screen_dir / DATABASE, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _use_wal(connection)
        connection.execute("PRAGMA synchronous = FULL")  # a decision reported as saved survives a power cut
        _migrate(connection, screen_dir / DATABASE)
    except BaseException:
        connection.close()
        raise
    return connection


def _create(database: Path) -> None:
    """Build a new store under a temporary name and link it into place whole: a full disk leaves no empty store (which
    later reads would take for a store), and of two processes creating it at once the later uses the earlier's."""
    runs.remove_stale_temporaries(database)  # a creation killed before it finished
    tmp = database.with_name(f".{database.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as connection:
            connection.execute("PRAGMA synchronous = FULL")
            _migrate(connection, database)
            connection.execute("PRAGMA journal_mode = WAL")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, database)
    finally:
        for leftover in ("", "-journal", "-wal", "-shm"):
            Path(f"{tmp}{leftover}").unlink(missing_ok=True)


@contextlib.contextmanager
def writing(screen_dir: str | Path) -> Iterator[sqlite3.Connection]:
    """open_store's connection, closed after the block, its failures in words (refusals)."""
    with refusals(screen_dir, writing=True), contextlib.closing(open_store(screen_dir)) as connection:
        yield connection


@contextlib.contextmanager
def reading(screen_dir: str | Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the store, or None when the job has none yet (or an empty file): viewing never
    creates or changes the store. A store in a folder where SQLite cannot make its shared-memory file (full disk,
    read-only folder) and with nothing in its write-ahead log is read as immutable."""
    database = Path(screen_dir) / DATABASE
    if not Path(screen_dir).is_dir():
        raise ValueError(f"{screen_dir} is not a screening folder")
    if not database.is_file():
        yield None
        return
    with refusals(screen_dir, writing=False):
        uri = database.resolve().as_uri()
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError:
                log = Path(f"{database}-wal")
                if log.exists() and log.stat().st_size:  # decisions not yet in the file itself: it cannot be read alone
                    raise
                connection.close()
                connection = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
                version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{database} was written by a newer wildvision (schema {version}, this one reads {SCHEMA_VERSION}): update wildvision")
            yield connection if version else None
        finally:
            connection.close()


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
