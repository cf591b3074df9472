"""Screening jobs started, followed, cancelled and resumed: in the background on this machine, or on a SLURM cluster.

job.py scores; this module runs its jobs as the dashboard and `screen --slurm-tasks` need them. Every process it
starts runs the one command, `python -m wildvision screen --resume SCREEN_DIR ...`.

In the background (launch_screen): the job folder is made at once, with config.json naming the model's checkpoint
(found, not loaded) and no file list yet (files: null), and status queued. One detached process in its own session
(jobs.spawn), `python -m wildvision screen --resume SCREEN_DIR`, waits for its turn in the background queue
(wildvision.job_queue: at most settings.max_background_jobs at once, the rest in the order started), then loads the
model, lists the files and scores them, appending its output to the job's console.log. So the dashboard's script run never waits for a
model to load or for 100,000 files to be listed, and closing the tab or restarting Streamlit never stops a job.

Cancelling (cancel_screen) sends that process SIGTERM: it records 'cancelled' itself and keeps every part it wrote,
so a resume (resume_screen_in_background: the same command again) scores only the rest, each file exactly once.
A job whose process has not started yet is marked cancelled here.

On SLURM (submit_screen, `python -m wildvision screen SOURCE... --slurm-tasks N`): the folder and its file list are
made first, where the command runs; then one job array of N tasks, task I running `python -m wildvision screen
--resume SCREEN_DIR --shard I/N`, which scores the parts whose number modulo N is I. Parts are fixed ranges of list
rows, each written whole by an atomic rename, so shards never overlap. A task that has written its parts merges
scores.csv if it finds every part there (merge.merge_when_complete, under a lock, so two finishing together
merge one after the other): the last task to finish completes the job, and no dependent job is needed. A
resubmission of a job whose tasks died (resume_screen_in_background) scores only the missing parts. status.json's
`done` counts the rows of every part on disk, whoever wrote it, and `images_per_second` is the joint rate.

Each submission has a folder SCREEN_DIR/slurm/JOBNAME-TIME-xxxx/ (batch.sh, submission.json, Slurm's output per task,
slurm-JOB_TASK.out); the batch script finds the job folder two levels above it, so it depends only on the task
count, the settings and the device, and `--dry-run` prints exactly what would be submitted. SCREEN_DIR/slurm.json
names the job: reading a job joins its folder's state with Slurm's states of its tasks (slurm.array_state), since a
folder cannot tell from another machine whether a task's process is still alive.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from wildvision import job_queue, jobs, runs, slurm
from wildvision.inference import default_batch_size
from wildvision.jobs import format_duration
from wildvision.predict import load_model
from wildvision.screening import job
from wildvision.screening.config import PART_BATCHES, SCORES, from_json, is_screen_config, read_config
from wildvision.screening.merge import counts_line

JOB_NAME = "wildvision-screen"  # SLURM's name for screening arrays (SlurmSettings.job_name)
UNREADABLE = "unreadable"  # ScreenSummary.state of a folder whose config.json or status.json cannot be read


@dataclass(frozen=True)
class ScreenSummary:
    """A screening job as a job list shows it, from its folder (and, for a SLURM job, Slurm's view of its tasks).

    state: queued, running, completed, failed, cancelled, interrupted (its process or tasks are gone; resume
    finishes it), or unreadable (then `problem` says why and the other fields are empty)."""

    path: Path
    name: str
    state: str
    done: int = 0  # list rows scored (in parts on disk)
    total: int | None = None  # files listed; None until the list is made
    images_per_second: float | None = None
    seconds_left: float | None = None
    message: str = ""
    model: str = ""  # as given: default, a run name or folder, a checkpoint
    architecture: str | None = None  # None until the job's process has loaded the model
    threshold: float | None = None
    positive_class: str | None = None  # what a flag means, e.g. captive
    sources: tuple[str, ...] = ()  # as given
    created_at: str = ""
    finished_at: str | None = None
    scores: Path | None = None  # scores.csv, once the job is completed
    flagged: int | None = None  # files labelled the positive class, once completed
    flagged_photos: int | None = None  # distinct photos with a flagged file, once completed (None for jobs from before it was counted)
    unreadable: int | None = None  # files that could not be scored, once completed
    distinct_photos: int | None = None  # duplicate groups of readable files, once completed
    slurm: str | None = None  # e.g. "SLURM job 12: 3 RUNNING, 1 PENDING", or why Slurm could not be asked
    owner: str = ""  # who started it (access.Person.identity); "" from the command line or before owners
    problem: str | None = None
    status: dict = field(default_factory=dict)


def _summary(screen_dir: Path) -> ScreenSummary | None:
    """The job as its folder tells it; None for a folder with a config.json that is not a screening job's."""
    name = screen_dir.name
    try:
        data = runs.read_json(screen_dir / runs.CONFIG)
        if not is_screen_config(data):
            return None
        config = from_json(data, screen_dir / runs.CONFIG)
        status = runs.read_json(screen_dir / runs.STATUS) if (screen_dir / runs.STATUS).exists() else {"state": "queued"}
        if not isinstance(status, dict):
            raise runs.RunError(f"{screen_dir / runs.STATUS} holds no status")
        counts = status.get("counts") or {}
        state = runs.effective_state(status)
        return ScreenSummary(
            path=screen_dir,
            name=name,
            state=state,
            done=int(status.get("done") or 0),
            total=config.files,
            images_per_second=status.get("images_per_second") if state == "running" else None,
            seconds_left=status.get("seconds_left") if state == "running" else None,
            message=str(status.get("message") or ""),
            model=config.model,
            architecture=config.architecture,
            threshold=config.threshold,
            positive_class=config.positive if config.class_names else None,
            sources=config.sources_as_given,
            created_at=str(config.created_at or status.get("created_at") or ""),
            finished_at=status.get("finished_at"),
            scores=screen_dir / SCORES if state == "completed" and (screen_dir / SCORES).is_file() else None,
            flagged=counts.get("flagged"),
            flagged_photos=counts.get("flagged_photos"),
            unreadable=counts.get("unreadable"),
            distinct_photos=counts.get("distinct_photos"),
            owner=str(status.get("owner") or ""),
            status=status,
        )
    except (runs.RunError, OSError, TypeError, ValueError, KeyError, IndexError) as error:
        return ScreenSummary(screen_dir, name, UNREADABLE, problem=str(error) or type(error).__name__)


def _with_slurm_states(summaries: list[ScreenSummary]) -> list[ScreenSummary]:
    """SLURM jobs' states from their folders joined with Slurm's states of their tasks (one squeue and sacct for all
    the jobs whose folders say queued or running: a folder that records an end is believed without asking)."""
    tasks, ended = {}, {}
    for summary in summaries:
        if summary.problem is None:
            try:
                task = slurm.read_task(summary.path)
            except runs.RunError:
                task = None
            if task and "tasks" in task and summary.status.get("state") in ("queued", "running"):
                tasks[summary.path] = task
            elif task and "tasks" in task:
                ended[summary.path] = f"SLURM job {task['job_id']}, {task['tasks']} tasks"
    summaries = [replace(summary, slurm=ended[summary.path]) if summary.path in ended else summary for summary in summaries]
    if not tasks:
        return summaries
    try:
        states = slurm.task_states([task["job_id"] for task in tasks.values()])
    except slurm.SlurmError as error:
        note = f"Cannot ask SLURM about its tasks, so this shows the job folder's own state: {error}"
        return [replace(summary, slurm=note) if summary.path in tasks else summary for summary in summaries]
    shown = []
    for summary in summaries:
        task = tasks.get(summary.path)
        if task is None:
            shown.append(summary)
            continue
        task_states = [states.get(f"{task['job_id']}_{index}", slurm.GONE)[0] for index in range(int(task["tasks"]))]
        state = slurm.array_state(str(summary.status.get("state", "queued")), task_states)
        note = f"SLURM job {task['job_id']}: " + ", ".join(f"{count} {name}" for name, count in Counter(task_states).most_common())
        live = state == "running"
        shown.append(
            replace(
                summary,
                state=state,
                slurm=note,
                images_per_second=summary.status.get("images_per_second") if live else None,
                seconds_left=summary.status.get("seconds_left") if live else None,
            )
        )
    return shown


def read_screen(screen_dir: Path) -> ScreenSummary:
    """One job as the dashboard shows it; a folder that cannot be read, or is not a screening job, has `problem` set."""
    screen_dir = Path(screen_dir)
    summary = _summary(screen_dir)
    if summary is None:
        return ScreenSummary(screen_dir, screen_dir.name, UNREADABLE, problem=f"{screen_dir} is not a screening job (its config.json names no sources)")
    return _with_slurm_states([summary])[0]


def list_screens(screens_dir: Path) -> list[ScreenSummary]:
    """Every screening job under `screens_dir`, newest first. Folders without config.json, or whose config.json is not
    a screening job's, are passed over; one whose JSON cannot be read is listed last, state unreadable, with its problem."""
    screens_dir = Path(screens_dir)
    if not screens_dir.is_dir():
        return []
    found = [summary for folder in screens_dir.iterdir() if (folder / runs.CONFIG).is_file() and (summary := _summary(folder)) is not None]
    found.sort(key=lambda summary: (summary.created_at, summary.name), reverse=True)
    return _with_slurm_states(found)


def screen_progress_line(summary: ScreenSummary) -> str:
    """Where a job stands, in plain words: "412 of 1,250 files, about 2 min 05 s left" (every listed file, the
    unreadable ones too); a completed job's counts as its log says them (merge.counts_line)."""
    if summary.problem:
        return f"cannot be read: {summary.problem}"
    files = f"{summary.done:,} of {summary.total:,} files" if summary.total is not None else f"{summary.done:,} files"
    if summary.state == "queued":
        waiting = job_queue.waiting_line(summary.status.get("pid")) if summary.slurm is None and jobs.alive_here(summary.status) else None
        if waiting:
            return waiting
        return "waiting to start" + (f": {summary.message}" if summary.message and summary.message != "waiting to start" else "")
    if summary.state == "running":
        if summary.total is None:
            return f"{summary.message or 'starting'}…"
        if summary.seconds_left is not None and summary.done < summary.total:
            return f"{files}, about {format_duration(summary.seconds_left)} left"
        return f"{files}; the time left is known once the first files are scored"
    if summary.state == "completed":
        try:
            return f"screened {counts_line(summary.status['counts'], summary.positive_class or 'positive')}"
        except (KeyError, TypeError):  # completed by a wildvision that did not count
            return f"{summary.total or 0:,} files screened"
    if summary.state == "cancelled":
        return f"cancelled after {files}; resume scores the rest"
    if summary.state == runs.INTERRUPTED:
        return f"stopped after {files} (its process ended without finishing); resume scores the rest"
    return f"failed after {files}: {summary.message}" if summary.message else f"failed after {files}"


# ---------------------------------------------------------------------------------------------
# Starting, cancelling, resuming
# ---------------------------------------------------------------------------------------------


def _start(screen_dir: Path, owner: str) -> None:
    """One detached process that, once the background queue lets it (wildvision.job_queue), loads the model, lists
    the files if need be, and scores what is missing, on this machine's GPU when it has one."""
    screen_dir = Path(screen_dir).resolve()
    arguments = ["screen", "--resume", str(screen_dir), "--device", "auto"]
    pid = job_queue.start("wildvision", arguments, screen_dir / jobs.CONSOLE, owner=owner, folder=screen_dir)
    runs.write_status(screen_dir, "queued", message="waiting to start", pid=pid, host=socket.gethostname())


def launch_screen(
    sources: list[str],
    model: str,
    screens_dir: Path,
    name: str | None = None,
    *,
    part_batches: int = PART_BATCHES,
    owner: str = "",
    read_roots: tuple[str, ...] | None = None,
) -> Path:
    """Check the sources and the model's checkpoint, create the job folder and start screening it in the background;
    returns the folder at once. A missing source is a ValueError, a model that cannot be found a CheckpointError
    (a ValueError too), each with a plain message. `part_batches`: batches per part file (tests make it small).

    `owner`: the person starting it (access.Person.identity; "" from the command line), kept in status.json and shown
    as ScreenSummary.owner; a person who already has settings.max_jobs_per_person jobs waiting or running is refused
    with jobs.TooManyJobs before anything is made. `read_roots`: the page's data roots (roots.read_roots), which the
    files found in the sources (links in folders, lines of list files) must not lead out of."""
    job_queue.check_room(owner)
    screen_dir = job.new_screen(list(sources), model, Path(screens_dir), name, part_batches=part_batches, read_roots=read_roots)
    runs.write_status(screen_dir, "queued", owner=owner)
    _start(screen_dir, owner)
    return screen_dir


def resume_screen_in_background(screen_dir: Path, *, owner: str = "") -> None:
    """Continue an interrupted, failed or cancelled job (each file still scored once): in the background here (a job
    of `owner`'s, the person resuming it, refused with jobs.TooManyJobs as launch_screen's; the job stays its
    starter's), or, for a job submitted to SLURM, as a new job array with the same tasks and settings. Any other
    job, or a SLURM that cannot be reached, is a RunError saying why."""
    summary = read_screen(screen_dir)
    if summary.problem:
        raise runs.RunError(f"screening job {summary.name} cannot be read: {summary.problem}")
    waiting = summary.state == "queued" and (summary.status.get("pid") is not None or summary.slurm is not None)
    if summary.state in ("running", "completed") or waiting:
        raise runs.RunError(f"screening job {summary.name} is {summary.state}; only interrupted, failed or cancelled jobs can be resumed")
    task = slurm.read_task(summary.path)
    if task and "tasks" in task:
        try:
            submit_array(summary.path, int(task["tasks"]), slurm.submission_settings(task))
        except slurm.SlurmError as error:
            raise runs.RunError(f"screening job {summary.name} could not be submitted to SLURM again: {error}") from error
    else:
        job_queue.check_room(owner)
        _start(summary.path, owner)


def cancel_screen(screen_dir: Path) -> None:
    """Stop a running job (SIGTERM: it records 'cancelled' itself, keeping the parts it wrote), or mark a queued one
    cancelled; for a SLURM job, scancel its array. Any other job, or a SLURM that cannot be reached, is a RunError saying why."""
    summary = read_screen(screen_dir)
    if summary.problem:
        raise runs.RunError(f"screening job {summary.name} cannot be read: {summary.problem}")
    if summary.state not in ("queued", "running"):
        raise runs.RunError(f"screening job {summary.name} is {summary.state}; only a queued or running job can be cancelled")
    task = slurm.read_task(summary.path)
    if task and "tasks" in task:
        try:
            slurm.cancel(summary.path)
        except slurm.SlurmError as error:
            raise runs.RunError(f"screening job {summary.name} could not be cancelled: {error}") from error
        return
    status, pid = summary.status, summary.status.get("pid")
    if pid is not None and status.get("host") != socket.gethostname():
        raise runs.RunError(f"screening job {summary.name} runs on {status.get('host')} (pid {pid}): cancel it there")
    if pid is not None:
        try:
            jobs.stop(int(pid))
        except ProcessLookupError:
            pass  # it has just ended: its status says how
    if status.get("state") == "queued":  # not started, or starting: it may end before it can record anything
        runs.write_status(summary.path, "cancelled", message=job.CANCELLED_MESSAGE)


# ---------------------------------------------------------------------------------------------
# SLURM
# ---------------------------------------------------------------------------------------------


def shard_task(tasks: int, device: str = "cpu") -> slurm.ArrayTask:
    """What array task I of a screening job runs: `python -m wildvision screen --resume SCREEN_DIR --shard I/N`."""
    return slurm.ArrayTask(
        f"wildvision screen: array task I scores the parts whose number modulo {tasks} is I of the screening job two folders "
        "above this one (SCREEN_DIR/slurm/SUBMISSION/, where sbatch ran); the last task to finish merges scores.csv.",
        ('screen_dir=$(cd "$SLURM_SUBMIT_DIR/../.." && pwd)',),
        (
            "# every task's console output goes to the job's console.log, as for a job started on this machine",
            (
                f'exec {slurm.python_module("wildvision")} screen --resume "$screen_dir" --shard "$SLURM_ARRAY_TASK_ID/{tasks}" '
                f'--device {shlex.quote(device)} >> "$screen_dir/console.log" 2>&1'
            ),
        ),
    )


def _check_device(device: str) -> torch.device:
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r}: use cpu, cuda or cuda:N") from None


def screen_script(tasks: int, settings: slurm.SlurmSettings, device: str = "cpu") -> str:
    """The batch script that submit_screen submits for `tasks` tasks: what `screen --slurm-tasks N --dry-run` prints."""
    if tasks < 1:
        raise ValueError(f"--slurm-tasks {tasks}: give 1 or more tasks")
    _check_device(device)
    return slurm.batch_script(tasks, settings, shard_task(tasks, device))


def submit_array(screen_dir: Path, tasks: int, settings: slurm.SlurmSettings) -> str:
    """Submit a job array of `tasks` shards on a job folder whose file list exists; returns the job id.

    If it cannot be submitted, the job is marked failed with the reason (a SlurmError is raised), so none waits forever."""
    screen_dir = Path(screen_dir).resolve()
    device = read_config(screen_dir).device or "cpu"
    # Before sbatch: a task may start at once. No pid: no process here stands for the job, its tasks do.
    runs.write_status(screen_dir, "queued", message=f"submitted to SLURM: {tasks} tasks", pid=None, host=None)
    try:
        job_id, folder = slurm.sbatch_array(screen_dir, screen_script(tasks, settings, device), settings, record={"screen": str(screen_dir), "tasks": tasks})
    except slurm.SlurmError as error:
        runs.write_status(screen_dir, "failed", message=str(error))
        raise
    runs.write_json_atomic(screen_dir / slurm.TASK_FILE, {"job_id": job_id, "task_id": job_id, "tasks": tasks, "submission": str(folder)})
    return job_id


def submit_screen(
    sources: list[str],
    model: str,
    screens_dir: Path,
    tasks: int,
    settings: slurm.SlurmSettings,
    name: str | None = None,
    device: str = "cpu",
    part_batches: int = PART_BATCHES,
) -> Path:
    """Create a job folder, list its files here, and submit `tasks` array tasks that score its shards on `device`."""
    batch_size = default_batch_size(_check_device(device))
    screen_script(tasks, settings, device)  # refuse bad arguments before anything is created
    loaded = load_model(model, runs.default_runs_dir(), "cpu")  # recorded now: every task checks it loads the same weights
    screen_dir = job.new_screen(list(sources), model, Path(screens_dir), name, loaded, batch_size, part_batches, device)
    runs.write_status(screen_dir, "queued", message="listing files", pid=os.getpid(), host=socket.gethostname())
    job.list_files(screen_dir)
    submit_array(screen_dir, tasks, settings)
    return screen_dir
