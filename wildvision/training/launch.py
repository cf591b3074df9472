"""Start training runs, follow them and cancel them, on this machine or on a SLURM cluster.

A run is always trained by a `python -m wildvision.worker RUN...` process (worker.py): here, in its own
session, so closing the dashboard tab, re-running its script or restarting Streamlit never stops it; on
a cluster, as one task of a job array (slurm.py). Everything the dashboard shows comes from the run
folders (see runs.py), joined for cluster runs with Slurm's own view of their tasks.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import socket
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from wildvision import job_queue, jobs, roots, runs, slurm
from wildvision.models import ARCHITECTURES
from wildvision.training.config import TrainConfig
from wildvision.training.progress import EVALUATION, NOVELTY
from wildvision.training.run_data import check_folders
from wildvision.training.train import create_run, start_run

# Package data (pyproject.toml), so an installed wildvision has the paper's 24 configurations too.
PAPER_GRID = Path(__file__).resolve().parents[1] / "paper_grid.toml"
WEIGHTS_EXAMPLE = "squeezenet1_0=/path/to/squeezenet1_0-imagenet.pth"


def accelerator() -> str | None:
    """A short description of the GPU that training will use, or None when it runs on the CPU."""
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.get_device_name(0)} (CUDA, mixed precision)"


def page_path(text: str) -> str:
    """A file or folder typed into a page, resolved, if it lies under the server's data roots and is a regular file or
    folder: else roots.OutsideRoots (a ValueError), in the same words whether or not it exists. Pages check every
    typed path with it before saying anything else about it (that it does not exist, what it holds)."""
    return str(roots.regular(roots.readable(text.strip())))


def parse_named_folder(text: str, within_roots: bool = False) -> tuple[str, str]:
    """One test set written as NAME=DIR, the folder made absolute; `within_roots` (a page's input): through page_path."""
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise ValueError(f"expected NAME=DIR (e.g. test_out_pet=data/test_out_pet), got {text!r}")
    return name.strip(), page_path(folder) if within_roots else str(Path(folder.strip()).expanduser().resolve())


def named_folder_argument(text: str) -> tuple[str, str]:
    """parse_named_folder as an argparse type: a malformed NAME=DIR is argparse's usage error, not a traceback."""
    try:
        return parse_named_folder(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_named_folders(lines: str, within_roots: bool = False) -> dict[str, str]:
    """Test sets written one per line as NAME=DIR (blank lines ignored), as the dashboard takes them (`within_roots`)."""
    return dict(parse_named_folder(line, within_roots) for line in lines.splitlines() if line.strip())


def parse_weights(lines: Iterable[str], within_roots: bool = False) -> dict[str, str]:
    """Pretrained weights per architecture, as `grid --weights` and the Train page's grid take them, one per line:
    ARCH=WEIGHTS for one architecture, *=WEIGHTS for every architecture not named, and a bare imagenet or none as
    short for *=imagenet or *=none. WEIGHTS is imagenet, none or a state dict file (made absolute). Blank lines
    are ignored; a malformed line, an unknown architecture or one named twice is a ValueError quoting the line.
    `within_roots` (a page's input): each file through page_path."""
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
            raise ValueError(f"weights {line!r}: {'every architecture' if arch == '*' else arch} already has weights ({resolve_weights(weights[arch])})")
        weights[arch] = value
    # every line's form first, then the files: a malformed line is named before a path is judged
    return {arch: page_path(value) if within_roots and value not in ("imagenet", "none") else resolve_weights(value) for arch, value in weights.items()}


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


def spawn(run_dirs: Sequence[Path], owner: str = "") -> int:
    """Start one detached process that trains the given runs one after another, once the background queue lets it
    (wildvision.job_queue: at most settings.max_background_jobs at once); returns its pid. `owner`: whose job it is."""
    run_dirs = [Path(d).resolve() for d in run_dirs]
    pid = job_queue.start("wildvision.worker", [str(d) for d in run_dirs], run_dirs[0] / jobs.CONSOLE, owner=owner, folder=run_dirs[0])
    for run_dir in run_dirs:  # the pid of the process that will train it, while it waits for its turn
        runs.write_status(run_dir, "queued", pid=pid, host=socket.gethostname())
    return pid


def _record_owner(run_dirs: Sequence[Path], owner: str) -> None:
    """Whose runs these are, in status.json (`owner`, kept by every later status update; RunSummary.owner reads it)."""
    for run_dir in run_dirs:
        runs.write_status(run_dir, "queued", owner=owner)


def launch_run(config: TrainConfig, runs_dir: str | Path, name: str | None = None, *, owner: str = "") -> Path:
    """Check the folders, create the run folder and start training it in the background, without waiting: the
    photos are split and checked for copies by the run's process (train.prepare_run), not here.

    `owner`: the person starting it (access.Person.identity; "" from the command line); a person who already has
    settings.max_jobs_per_person jobs waiting or running is refused with jobs.TooManyJobs before anything is made."""
    job_queue.check_room(owner)
    run_dir = start_run(config, runs_dir, name, prepare=False)
    _record_owner([run_dir], owner)
    spawn([run_dir], owner)
    return run_dir


def launch_grid(configs: Sequence[TrainConfig], runs_dir: str | Path, cluster: slurm.SlurmSettings | None = None, *, owner: str = "") -> list[Path]:
    """Create a run folder per configuration (the folders of all checked before any starts), then train them: in
    turn in one background process here (one job of `owner`'s, refused with jobs.TooManyJobs as launch_run's), or,
    given SLURM settings, as one job array with a task per run (SLURM queues it). The photos are split and checked
    for copies by the process that trains each run."""
    if cluster is None:
        job_queue.check_room(owner)
    for config in {(c.data, c.positive, c.with_background, c.split, tuple(c.tests.items())): c for c in configs}.values():
        check_folders(config)  # once per set of folders: the grid's 24 configurations share two
    run_dirs = [create_run(config, runs_dir) for config in configs]
    _record_owner(run_dirs, owner)
    if cluster is None:
        spawn(run_dirs, owner)
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


def resume_run(run_dir: Path, *, owner: str = "") -> None:
    """Continue an interrupted, failed or cancelled run in the background (a job of `owner`'s, the person resuming it,
    refused with jobs.TooManyJobs as launch_run's; the run stays its starter's), or on SLURM as it was submitted."""
    run = read_state(run_dir)
    if run.state in ("running", "completed") or (run.state == "queued" and jobs.alive_here(run.status)):
        raise runs.RunError(f"run {run.name} is {run.state}; only interrupted, failed, cancelled or queued runs can be resumed")
    task = slurm.read_task(run.path)
    if task is None:
        job_queue.check_room(owner)
        spawn([run.path], owner)
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
        jobs.stop(int(run.status["pid"]))
    elif run.state in ("queued", runs.INTERRUPTED):
        if run.state == "queued" and jobs.alive_here(run.status):  # waiting for its turn, or just starting: stop it
            jobs.stop(int(run.status["pid"]))
        runs.write_status(run_dir, "cancelled", message="cancelled before it finished", hint="resume")
    else:
        raise runs.RunError(f"run {run_dir.name} is {run.state}; there is nothing to cancel")


@dataclass(frozen=True)
class Progress:
    """Where a queued or running run stands: status.json's `progress`, as its process wrote it (wildvision.training.progress)."""

    words: str  # what it is doing: "epoch 3 of at most 10", "evaluating test_out_pet: 400 of 1,250 photos"
    fraction: float  # how far into that, 0..1
    step: int | None  # which of the run's phases, of `steps`
    steps: int | None
    phase_seconds_left: float | None  # None: not yet known
    seconds_left: float | None  # of the whole run; None: not yet known
    epochs_to_come: bool  # the time left counts epochs, which early stopping may cut short


def progress(run: runs.RunSummary) -> Progress:
    """Where a run stands. The times left were estimated when status.json was written and count down from then;
    one that has run out while the run goes on is not known any more."""
    recorded = run.status.get("progress") or {}
    since = runs.seconds_since(run.status.get("updated_at")) or 0.0

    def left(key: str) -> float | None:
        value = recorded.get(key)
        return value - since if value is not None and value - since > 0 else None

    done, total = recorded.get("done"), recorded.get("total")
    words = recorded.get("words") or f"{run.epoch or 0} of at most {run.config['train']['epochs']} epochs done"
    return Progress(
        words=words,
        fraction=min(1.0, max(0.0, done / total)) if done is not None and total else 0.0,
        step=recorded.get("step"),
        steps=recorded.get("steps"),
        phase_seconds_left=left("phase_seconds_left"),
        seconds_left=left("seconds_left"),
        epochs_to_come=recorded.get("phase") not in (EVALUATION, NOVELTY),
    )


def progress_line(run: runs.RunSummary, p: Progress | None = None) -> str:
    """One line on where a queued or running run stands and how long it may still take, over all its phases."""
    if run.state == "queued":
        waiting = job_queue.waiting_line(run.status.get("pid")) if jobs.alive_here(run.status) else None
        epochs = run.config["train"]["epochs"]
        return f"queued: {waiting or 'waiting to start'} (at most {epochs} epoch{'s' if epochs != 1 else ''})"
    p = p or progress(run)
    step = f"step {p.step} of {p.steps}: " if p.step and p.steps else ""
    return f"{run.state}: {step}{p.words}; {time_left(p)}"


def time_left(p: Progress) -> str:
    """The time left in words: an upper bound while epochs are to come, "not yet known" rather than a guess."""
    if p.seconds_left is not None and p.epochs_to_come:
        return f"time left: at most {jobs.format_duration(p.seconds_left)} (early stopping usually ends it sooner)"
    if p.seconds_left is not None:
        return f"time left: about {jobs.format_duration(p.seconds_left)}"
    this_step = f" (this step: about {jobs.format_duration(p.phase_seconds_left)} left)" if p.phase_seconds_left is not None else ""
    return f"time left: not yet known{this_step}"


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
    for name in (runs.LOG, jobs.CONSOLE):
        path = Path(run_dir) / name
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            if not tracebacks:
                text = without_tracebacks(text, traceback_note(name))
            return "\n".join(text[-lines:])
    return ""
