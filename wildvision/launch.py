"""Start training runs, follow them and cancel them, on this machine or on a SLURM cluster.

A run is always trained by a `python -m wildvision.worker RUN...` process (worker.py): here, in its own
session, so closing the dashboard tab, re-running its script or restarting Streamlit never stops it; on
a cluster, as one task of a job array (slurm.py). Everything the dashboard shows comes from the run
folders (see runs.py), joined for cluster runs with Slurm's own view of their tasks.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from wildvision import runs, slurm
from wildvision.config import TrainConfig
from wildvision.models import ARCHITECTURES
from wildvision.train import STORED_FEATURES_MESSAGE, start_run

# Package data (pyproject.toml), so an installed wildvision has the paper's 24 configurations too.
PAPER_GRID = Path(__file__).resolve().parent / "paper_grid.toml"
WEIGHTS_EXAMPLE = "squeezenet1_0=/path/to/squeezenet1_0-imagenet.pth"


def accelerator() -> str | None:
    """A short description of the GPU that training will use, or None when it runs on the CPU."""
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.get_device_name(0)} (CUDA, mixed precision)"


def parse_named_folder(text: str) -> tuple[str, str]:
    """One test set written as NAME=DIR, the folder made absolute."""
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise ValueError(f"expected NAME=DIR (e.g. test_out_pet=data/test_out_pet), got {text!r}")
    return name.strip(), str(Path(folder.strip()).expanduser().resolve())


def named_folder_argument(text: str) -> tuple[str, str]:
    """parse_named_folder as an argparse type: a malformed NAME=DIR is argparse's usage error, not a traceback."""
    try:
        return parse_named_folder(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_named_folders(lines: str) -> dict[str, str]:
    """Test sets written one per line as NAME=DIR (blank lines ignored), as the dashboard takes them."""
    return dict(parse_named_folder(line) for line in lines.splitlines() if line.strip())


def parse_weights(lines: Iterable[str]) -> dict[str, str]:
    """Pretrained weights per architecture, as `grid --weights` and the Train page's grid take them, one per line:
    ARCH=WEIGHTS for one architecture, *=WEIGHTS for every architecture not named, and a bare imagenet or none as
    short for *=imagenet or *=none. WEIGHTS is imagenet, none or a state dict file (made absolute). Blank lines
    are ignored; a malformed line, an unknown architecture or one named twice is a ValueError quoting the line."""
    weights: dict[str, str] = {}
    for line in (line.strip() for line in lines):
        if not line:
            continue
        arch, sep, value = (part.strip() for part in line.partition("="))
        if not sep and arch in ("imagenet", "none"):
            arch, value = "*", arch
        elif not sep or not arch or not value:
            raise ValueError(f"weights {line!r}: write ARCH=FILE (e.g. {WEIGHTS_EXAMPLE}), *=FILE for every architecture, imagenet or none")
        if arch != "*" and arch not in ARCHITECTURES:
            raise ValueError(f"weights {line!r}: unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}, or * for all")
        if arch in weights:
            raise ValueError(f"weights {line!r}: {'every architecture' if arch == '*' else arch} already has weights ({weights[arch]})")
        weights[arch] = resolve_weights(value)
    return weights


def resolve_weights(value: str) -> str:
    """Weights as TrainConfig keeps them: imagenet, none, or a file's absolute path (a run may train in another folder)."""
    return value if value in ("imagenet", "none") else str(Path(value).expanduser().resolve())


def grid_name(entry: dict) -> str:
    """The configuration's name, ARCH-REGIME-bg|no_bg: its runs' name, which --only and the Train page select by."""
    return TrainConfig.from_grid_entry(entry, data="").name


def load_grid(path: str | Path = PAPER_GRID) -> list[dict]:
    """The [[run]] tables of a grid file, each with arch, regime and background."""
    try:
        entries = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("run", [])
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read grid file {path}: {error}") from None
    for entry in entries:
        missing = {"arch", "regime", "background"} - set(entry)
        if missing:
            raise ValueError(f"grid file {path}: entry {entry} lacks {', '.join(sorted(missing))}")
    return entries


def select_grid(entries: list[dict], patterns: Sequence[str]) -> list[dict]:
    """Entries whose name (ARCH-REGIME-bg|no_bg) matches any shell pattern; all of them if no pattern."""
    chosen = [e for e in entries if not patterns or any(fnmatch.fnmatch(grid_name(e), p) for p in patterns)]
    if not chosen:
        raise ValueError(f"{' '.join(patterns)} matches none of the {len(entries)} configurations")
    return chosen


def spawn_module(module: str, arguments: Sequence[str], folder: Path) -> int:
    """Start `python -m MODULE ARGUMENTS...` as one detached process, its output appended to FOLDER/console.log; returns its pid."""
    with open(Path(folder) / "console.log", "ab") as console:  # the child keeps its own copy of the file descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the dashboard's process group: survives Streamlit restarts
            cwd=Path(__file__).resolve().parents[1],
        )
    threading.Thread(target=process.wait, daemon=True).start()  # reap it, so a finished process is not a zombie
    return process.pid


def spawn(run_dirs: Sequence[Path]) -> int:
    """Start one detached process that trains the given runs one after another; returns its pid."""
    run_dirs = [Path(d).resolve() for d in run_dirs]
    return spawn_module("wildvision.worker", [str(d) for d in run_dirs], run_dirs[0])


def launch_run(config: TrainConfig, runs_dir: str | Path, name: str | None = None) -> Path:
    """Check the data, create the run folder and start training it in the background."""
    run_dir = start_run(config, runs_dir, name)
    spawn([run_dir])
    return run_dir


def launch_grid(configs: Sequence[TrainConfig], runs_dir: str | Path, cluster: slurm.SlurmSettings | None = None) -> list[Path]:
    """Create a run folder per configuration (all checked before any starts), then train them: in turn in
    one background process here, or, given SLURM settings, as one job array with a task per run."""
    run_dirs = [start_run(config, runs_dir) for config in configs]
    if cluster is None:
        spawn(run_dirs)
    else:
        slurm.submit(run_dirs, cluster)
    return run_dirs


def list_runs_shown(runs_dir: str | Path) -> tuple[list[runs.RunSummary], dict[str, str], str | None]:
    """Every run as the dashboard and `runs` show it: SLURM runs' states corrected by their tasks', a note
    per SLURM run (task id and Slurm state), and why Slurm could not be asked (None if it could, or was not needed)."""
    summaries = runs.list_runs(runs_dir)
    try:
        shown, notes = slurm.with_task_states(summaries)
    except slurm.SlurmError as error:
        return summaries, {}, f"Cannot ask SLURM about its tasks, so SLURM runs show their run folders' own state: {error}"
    return shown, notes, None


def read_state(run_dir: Path) -> runs.RunSummary:
    """The run as the dashboard shows it: for a SLURM run, a task that ended early makes it interrupted."""
    return slurm.with_task_states([runs.read_run(Path(run_dir))])[0][0]


def resume_run(run_dir: Path) -> None:
    """Continue an interrupted, failed or cancelled run in the background, or on SLURM as it was submitted."""
    run = read_state(run_dir)
    if run.state in ("running", "completed"):
        raise runs.RunError(f"run {run.name} is {run.state}; only interrupted, failed, cancelled or queued runs can be resumed")
    task = slurm.read_task(run.path)
    if task is None:
        spawn([run.path])
        return
    # The folder of a task killed on another node may still say running; the new task must be allowed to claim it.
    runs.write_status(run.path, "queued", message=f"resubmitted to SLURM after task {task['task_id']}")
    slurm.submit([run.path], slurm.submission_settings(task))


def cancel_run(run_dir: Path) -> None:
    """Stop a running run (SIGTERM: it records 'cancelled' itself) or mark a queued one cancelled; scancel on SLURM."""
    run = read_state(run_dir)
    if slurm.read_task(run.path) and run.state in ("queued", "running"):
        slurm.cancel(run.path)
    elif run.status.get("state") == "running" and run.state == "running":
        os.kill(int(run.status["pid"]), signal.SIGTERM)
    elif run.state in ("queued", runs.INTERRUPTED):
        runs.write_status(run_dir, "cancelled", message="cancelled before it finished", hint="resume")
    else:
        raise runs.RunError(f"run {run_dir.name} is {run.state}; there is nothing to cancel")


@dataclass(frozen=True)
class Progress:
    epoch: int
    max_epochs: int
    epoch_fraction: float  # how far into the current epoch, 0..1
    seconds_per_epoch: float | None
    seconds_left_at_most: float | None  # if early stopping does not end it sooner
    computing_features: bool = False  # the one-off computation of stored backbone features is under way


def progress(run: runs.RunSummary) -> Progress:
    """Where a run stands, from its status and per-epoch metrics."""
    metrics = runs.read_metrics(run.path)
    max_epochs = int(run.config["train"]["epochs"])
    done = len(metrics)
    batches = run.status.get("batches")
    fraction = (run.status.get("batch") or 0) / batches if batches else 0.0
    # The one-off computation of stored features is not an epoch's cost: leaving it in would overstate the time left.
    per_epoch = sum(row["epoch_time_s"] - row.get("feature_cache_s", 0.0) for row in metrics) / done if done else None
    left = per_epoch * (max_epochs - done - fraction) if per_epoch and run.state == "running" else None
    computing = run.state == "running" and str(run.status.get("message") or "").startswith(STORED_FEATURES_MESSAGE)
    return Progress(done, max_epochs, fraction, per_epoch, left, computing)


def format_duration(seconds: float) -> str:
    """A duration as people read it: 4.2 s, 42 s, 3 min 05 s, 42 min, 2 h 05 min."""
    if seconds < 0.05:
        return "under 0.1 s"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def progress_line(run: runs.RunSummary, p: Progress | None = None) -> str:
    """One line on where a queued or running run stands and how long it may still take."""
    p = p or progress(run)
    if run.state == "queued":
        return f"queued: waiting to start (at most {p.max_epochs} epochs, {p.epoch} done)"
    done = f"{p.epoch} of at most {p.max_epochs} epochs done"
    if p.computing_features:
        return f"{run.state}: {done}; computing stored features for epoch {p.epoch + 1} (once per run: later head-only epochs reuse them and are much faster)…"
    if p.seconds_per_epoch is None:
        batch = f", batch {run.status['batch']} of {run.status['batches']}" if run.status.get("batches") else ""
        return f"{run.state}: {done}; epoch {p.epoch + 1} under way{batch} (the time per epoch is known once it ends)"
    line = f"{run.state}: {done}; {format_duration(p.seconds_per_epoch)} per epoch"
    if p.seconds_left_at_most is not None:
        line += f"; at most {format_duration(p.seconds_left_at_most)} left (early stopping usually ends it sooner)"
    return line


_LOG_RECORD = re.compile(r"^(\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}")  # train.log's and the console's time stamps


def traceback_note(log_name: str = runs.LOG) -> str:
    return f"[Python traceback left out: the technical details are in this run's {log_name}]"


def without_tracebacks(lines: Sequence[str], note: str = traceback_note()) -> list[str]:
    """Log lines with each Python traceback (its chained tracebacks and final exception line included)
    replaced by one `note` line; a traceback ends where the next time-stamped log record starts."""
    kept: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            if not in_traceback:
                kept.append(note)
            in_traceback = True
        elif in_traceback and _LOG_RECORD.match(line):
            in_traceback = False
        if not in_traceback:
            kept.append(line)
    return kept


def log_tail(run_dir: Path, lines: int = 20, tracebacks: bool = False) -> str:
    """The last lines of the run's log (train.log, else the process's console output); Python tracebacks
    are replaced by a note unless `tracebacks`."""
    for name in (runs.LOG, "console.log"):
        path = Path(run_dir) / name
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            if not tracebacks:
                text = without_tracebacks(text, traceback_note(name))
            return "\n".join(text[-lines:])
    return ""
