"""The run folder: the contract between a training process and everything that reads it.

runs/<run-id>/
  config.json     all that is needed to re-run it (TrainConfig, data fingerprint, code version)
  status.json     state (queued, running, completed, failed, cancelled), epoch, message and its hint code, timestamps, pid, host
  split.json      which files went to train and to test_in, so the split can be audited and reused
  metrics.jsonl   one JSON object per epoch
  results.json    metrics per test set (at 0.5, as the paper; and at the decision threshold)
  scores.json     label and positive-class probability of every test image, to recompute any threshold
  comparison.json the run's test sets scored with the default model and the model it replaces (wildvision.training.compare)
  checkpoint.pt   the best model and what is needed to rebuild it (loads with weights_only=True)
  novelty.npz     the training photos' features, so predictions say how unlike them an image is (wildvision.novelty)
  last.pt         the latest epoch's full training state, for `resume`
  train.log       the process's log

Every file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file. A run whose status says running but whose process is gone reads as
'interrupted'.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from wildvision import jobs

CONFIG, STATUS, SPLIT, METRICS, RESULTS = "config.json", "status.json", "split.json", "metrics.jsonl", "results.json"
SCORES, COMPARISON = "scores.json", "comparison.json"
CHECKPOINT, LAST, LOG = "checkpoint.pt", "last.pt", "train.log"


def default_runs_dir() -> Path:
    """The dashboard's runs folder: $WILDVISION_RUNS_DIR, else runs/ (read on every call, so tests can point it elsewhere)."""
    return Path(os.environ.get("WILDVISION_RUNS_DIR", "runs"))


STATES = ("queued", "running", "completed", "failed", "cancelled")
INTERRUPTED = "interrupted"  # derived, never written: running, but the process is gone


class RunError(ValueError):
    """A run folder that is missing or does not follow the contract."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def seconds_since(stamp: str | None, at: datetime | None = None) -> float | None:
    """Seconds from a time stamp that now() wrote to `at` (default: now), never negative; None if it cannot be read."""
    try:
        return max(0.0, ((at or datetime.now(UTC)) - datetime.fromisoformat(str(stamp))).total_seconds())
    except ValueError:
        return None


def write_atomic(path: Path, write) -> None:
    """Write to a temporary name and rename, so readers never see half a file; a failed write says where and why."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a failed write as a RuntimeError
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip().splitlines()[0]
        try:
            free = f"{shutil.disk_usage(path.parent).free / 1e9:.1f} GB free there"
        except OSError:
            free = "free space unknown"
        raise RunError(f"could not write {path} ({reason}; {free}): is the disk full or the folder read-only?") from error
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(out: Path) -> Path:
    """Remove what writers of `out` killed before they finished left beside it: write_atomic's (and the training
    export's, and the decision store's) `.<name>.<pid>.<8 hex>.tmp`, with SQLite's -journal, -wal and -shm files of
    it, when process <pid> no longer runs on this machine (a running writer keeps its own). Returns `out`."""
    pattern = re.compile(re.escape(f".{out.name}.") + r"(\d+)\.[0-9a-f]{8}\.tmp(-journal|-wal|-shm)?")
    for leftover in out.parent.iterdir():
        found = pattern.fullmatch(leftover.name)
        if found is None or jobs.process_alive(int(found.group(1))):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return out


def write_text_atomic(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    write_atomic(path, write)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_torch_atomic(path: Path, data: Any) -> None:
    write_atomic(path, lambda tmp: torch.save(data, tmp))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} does not exist") from None
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON ({error})") from None


def safe_name(name: str) -> str:
    """A run name reduced to characters that cannot leave the runs folder or confuse a shell."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-")
    return cleaned[:80] or "run"


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new, unique run folder: name, UTC time and a random suffix, created exclusively."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"cannot create run folders in {runs_dir}: {error.strerror or error}") from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    while True:
        run_dir = runs_dir / f"{safe_name(name)}-{stamp}-{secrets.token_hex(2)}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
        except OSError as error:
            raise RunError(f"cannot create a run folder in {runs_dir}: {error.strerror or error}") from None


def write_status(run_dir: Path, state: str, **fields: Any) -> dict:
    """Replace status.json, keeping earlier fields (started_at, ...) that this update does not name.

    `hint` (a wildvision.wording reason code) belongs to `message`: a new message without one clears it."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    if "message" in fields:
        fields.setdefault("hint", None)
    path = Path(run_dir) / STATUS
    status = read_json(path) if path.exists() else {"created_at": now()}
    status.update(fields, state=state, updated_at=now())
    if state == "running":
        status.update(pid=os.getpid(), host=socket.gethostname())
        status.setdefault("started_at", now())
    if state in ("completed", "failed", "cancelled"):
        status["finished_at"] = now()
    write_json_atomic(path, status)
    return status


def effective_state(status: dict) -> str:
    """The stored state, except that running or queued with a dead process on this host is 'interrupted'."""
    state = status.get("state", "queued")
    if state in ("running", "queued") and "pid" in status and status.get("host") == socket.gethostname() and not jobs.process_alive(int(status["pid"])):
        return INTERRUPTED
    return state


def append_metrics(run_dir: Path, row: dict) -> None:
    """Add one epoch's metrics; the whole file is rewritten atomically (it stays small)."""
    path = Path(run_dir) / METRICS
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text_atomic(path, existing + json.dumps(row, sort_keys=True) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Drop epochs after `last_epoch` (written before a kill but not covered by last.pt)."""
    rows = [row for row in read_metrics(run_dir) if row["epoch"] <= last_epoch]
    write_text_atomic(Path(run_dir) / METRICS, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def dataset_name(with_background: bool) -> str:
    """The paper's name for a training set: data_bg has the background images as extra negatives, data_no_bg not."""
    return "bg" if with_background else "no_bg"


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    state: str
    epoch: int | None
    config: dict
    status: dict

    @property
    def train(self) -> dict:
        """The run's TrainConfig fields as stored (arch, regime, data, with_background, ...)."""
        return self.config.get("train") or {}

    @property
    def arch(self) -> str:
        return str(self.train.get("arch", "?"))

    @property
    def regime(self) -> str:
        return str(self.train.get("regime", "?"))

    @property
    def dataset(self) -> str:
        return dataset_name(bool(self.train.get("with_background")))

    @property
    def message(self) -> str:
        return self.status.get("message") or ""

    @property
    def owner(self) -> str:
        """Who started the run (access.Person.identity, in status.json); "" from the command line or before owners."""
        return str(self.status.get("owner") or "")

    @property
    def hint(self) -> str | None:
        """The reason code of the message's advice (wording.HINTS words it for each place), or None."""
        return self.status.get("hint")

    @property
    def warnings(self) -> list[str]:
        """What start_run found worth saying about the data (duplicates across the split, ...)."""
        return list(self.config.get("warnings") or [])


def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A run given as a folder path or as a name inside `runs_dir`."""
    for candidate in (Path(run), Path(runs_dir) / str(run)):
        if (candidate / CONFIG).is_file():
            return candidate
    raise RunError(f"no run folder {run!r} (looked for {run}/{CONFIG} and {runs_dir}/{run}/{CONFIG})")


def read_run(run_dir: Path) -> RunSummary:
    config = read_json(run_dir / CONFIG)
    status = read_json(run_dir / STATUS) if (run_dir / STATUS).exists() else {"state": "queued"}
    return RunSummary(run_dir, run_dir.name, effective_state(status), status.get("epoch"), config, status)


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every readable run under `runs_dir`, newest first; folders that are not runs are passed over."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    summaries = []
    for run_dir in runs_dir.iterdir():
        if (run_dir / CONFIG).is_file():
            try:
                summaries.append(read_run(run_dir))
            except RunError:
                continue
    return sorted(summaries, key=lambda s: s.status.get("created_at", ""), reverse=True)
