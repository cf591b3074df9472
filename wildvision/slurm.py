"""The SLURM launcher: a grid as one `sbatch` job array, followed through squeue, sacct and the run folders.

Every run folder is created (queued) before submission, exactly as for the local launcher; array task i
then runs `python -m wildvision.worker` (worker.py) on the i-th of them, so a cluster task trains a run
the same way a local background process does. The run folders must live on a filesystem that the compute nodes share.

Each submission gets a folder under RUNS_DIR/slurm/ holding the batch script as submitted (`batch.sh`),
the run folders in task order (`runs.txt`, which the script reads), `submission.json` (job id and
settings) and Slurm's own output per task (`slurm-JOB_TASK.out`). Each run folder gets `slurm.json`
naming its task, so a reader can join the task's Slurm state with the run folder's state.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wildvision import runs

TASK_FILE, SCRIPT, RUN_LIST, SUBMISSION = "slurm.json", "batch.sh", "runs.txt", "submission.json"
# Slurm states in which a task may still start or is running; any other state means it has ended.
LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT")
GONE = ("ENDED", "no longer listed by squeue, and sacct does not know it")  # accounting off, or the record purged


class SlurmError(RuntimeError):
    """A Slurm command failed (not installed, no controller, rejected job); the message says which and why."""


@dataclass(frozen=True)
class SlurmSettings:
    """What the job array asks the cluster for; None leaves a setting to the cluster's defaults."""

    partition: str | None = None
    account: str | None = None
    time_limit: str | None = None  # per task, as sbatch takes it: MINUTES, HH:MM:SS or DAYS-HH:MM:SS
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    memory: str | None = None  # per task, as sbatch takes it, e.g. 16G
    extra: tuple[str, ...] = ()  # more #SBATCH options, e.g. "--qos=short"
    job_name: str = "wildvision"

    def __post_init__(self) -> None:
        # Every value lands in a shell script, so nothing may break out of its #SBATCH line.
        for name in ("partition", "account", "time_limit", "memory", "job_name"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[A-Za-z0-9_.,:+=@-]+", value):
                raise ValueError(f"SLURM {name.replace('_', ' ')} {value!r}: use letters, digits and _.,:+=@- only")
        for line in self.extra:
            if "\n" in line or "\r" in line or not line.startswith("-"):
                raise ValueError(f"extra #SBATCH line {line!r}: write one sbatch option per line, e.g. --qos=short")
        if self.gpus_per_task < 0 or (self.cpus_per_task is not None and self.cpus_per_task < 1):
            raise ValueError("GPUs per task must be 0 or more, CPUs per task 1 or more")


def add_settings_arguments(group) -> None:
    """SlurmSettings' command-line options (`grid --launcher slurm`, `screen --slurm-tasks`), on an argparse parser or group."""
    group.add_argument("--partition", help="partition (queue) to submit to (default: the cluster's)")
    group.add_argument("--account", help="account to charge (default: yours)")
    group.add_argument("--time", help="time limit per task: MINUTES, HH:MM:SS or DAYS-HH:MM:SS (default: the partition's)")
    group.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per task, requested as --gres=gpu:N (default: 0)")
    group.add_argument("--cpus-per-task", type=int, help="CPUs per task; give --workers a value below it (default: the cluster's)")
    group.add_argument("--mem", help="memory per task, e.g. 32G (default: the cluster's)")
    group.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION", help="one more #SBATCH option without its dashes, e.g. qos=short; repeat for more"
    )


def settings_from_arguments(args, job_name: str = "wildvision") -> SlurmSettings:
    """The settings given with add_settings_arguments' options (a ValueError names a value that cannot go in the script)."""
    return SlurmSettings(
        partition=args.partition,
        account=args.account,
        time_limit=args.time,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        memory=args.mem,
        extra=extra_options(args.sbatch),
        job_name=job_name,
    )


def extra_options(lines: Sequence[str]) -> tuple[str, ...]:
    """Extra #SBATCH options as people write them: `#SBATCH --qos=short`, `--qos=short` or `qos=short`."""
    options = (re.sub(r"^#SBATCH\s+", "", line.strip()) for line in lines if line.strip())
    return tuple(option if option.startswith("-") else f"--{option}" for option in options)


@dataclass(frozen=True)
class ArrayTask:
    """What every task of a job array runs: a comment saying so, shell lines before `cd` into the code (they may
    read files beside the script, in $SLURM_SUBMIT_DIR) and the lines after it, which start Python."""

    description: str
    setup: tuple[str, ...]
    run: tuple[str, ...]


def python_module(module: str) -> str:
    """The shell words that run a wildvision module with the Python that submits: the same environment on every node.

    abspath, not resolve: a virtual environment's python is a symlink whose target would bypass the environment."""
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m {module}"


def grid_task() -> ArrayTask:
    """The grid's tasks: task i trains the run folder on line i+1 of runs.txt, with the worker (worker.py)."""
    return ArrayTask(
        "wildvision grid: array task i trains the run folder on line i+1 of runs.txt, in the folder sbatch ran in.",
        ('run_dir=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$SLURM_SUBMIT_DIR/runs.txt")',),
        (
            "# the run's console output goes beside its train.log, as for a run started on this machine",
            f'exec {python_module("wildvision.worker")} "$run_dir" >> "$run_dir/console.log" 2>&1',
        ),
    )


def batch_script(task_count: int, settings: SlurmSettings, task: ArrayTask | None = None) -> str:
    """The job array's batch script: the settings' #SBATCH lines, then what each task runs (by default the grid's).

    It depends only on the task count, the settings and the task, never on the folders that submitting creates,
    so `--dry-run` shows exactly what is submitted.
    """
    task = task or grid_task()
    options = [f"--job-name={settings.job_name}", f"--array=0-{task_count - 1}", "--ntasks=1", "--output=slurm-%A_%a.out"]
    options += [f"--partition={settings.partition}"] * bool(settings.partition)
    options += [f"--account={settings.account}"] * bool(settings.account)
    options += [f"--time={settings.time_limit}"] * bool(settings.time_limit)
    options += [f"--gres=gpu:{settings.gpus_per_task}"] * bool(settings.gpus_per_task)
    options += [f"--cpus-per-task={settings.cpus_per_task}"] * bool(settings.cpus_per_task)
    options += [f"--mem={settings.memory}"] * bool(settings.memory)
    options += list(settings.extra)
    code_root = Path(__file__).resolve().parents[1]
    return "\n".join(
        [
            "#!/bin/bash",
            f"# {task.description}",
            *(f"#SBATCH {option}" for option in options),
            "set -euo pipefail",
            *task.setup,
            f"cd {shlex.quote(str(code_root))}",
            *task.run,
            "",
        ]
    )


def _slurm(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)
    except FileNotFoundError:
        raise SlurmError(f"`{command[0]}` is not installed here: run this on a SLURM login node") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{' '.join(command)}` did not answer within 60 s: is the SLURM controller up?") from None


def sbatch_array(where: Path, script: str, settings: SlurmSettings, files: dict[str, str] | None = None, record: dict | None = None) -> tuple[str, Path]:
    """Submit `script` from a new submission folder WHERE/slurm/JOBNAME-TIME-xxxx/ holding it (batch.sh), `files`
    (read by the script) and, once sbatch accepted it, submission.json (job id, settings and `record`).

    Returns the job id and the folder; a SlurmError says why sbatch could not be run or refused the job."""
    folder = runs.create_run_dir(Path(where) / "slurm", settings.job_name)
    runs.write_text_atomic(folder / SCRIPT, script)
    for name, text in (files or {}).items():
        runs.write_text_atomic(folder / name, text)
    result = _slurm(["sbatch", "--parsable", SCRIPT], cwd=folder)
    if result.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {result.stderr.strip() or result.stdout.strip()}")
    job_id = result.stdout.strip().split(";")[0]  # --parsable prints JOBID or JOBID;CLUSTER
    runs.write_json_atomic(folder / SUBMISSION, {"job_id": job_id, "submitted_at": runs.now(), "settings": dataclasses.asdict(settings)} | (record or {}))
    return job_id, folder


def submit(run_dirs: Sequence[Path], settings: SlurmSettings) -> str:
    """Submit one array task per (already created) run folder; returns the array's job id.

    If the job cannot be submitted (sbatch missing or refusing it), the runs are marked failed with the reason, so none waits forever.
    """
    run_dirs = [Path(d).resolve() for d in run_dirs]
    try:
        job_id, folder = sbatch_array(
            run_dirs[0].parent,
            batch_script(len(run_dirs), settings),
            settings,
            {RUN_LIST: "".join(f"{d}\n" for d in run_dirs)},
            {"runs": [str(d) for d in run_dirs]},
        )
    except SlurmError as error:
        for run_dir in run_dirs:
            runs.write_status(run_dir, "failed", message=str(error))
        raise
    for index, run_dir in enumerate(run_dirs):
        runs.write_json_atomic(run_dir / TASK_FILE, {"job_id": job_id, "task_id": f"{job_id}_{index}", "submission": str(folder)})
    return job_id


def read_task(run_dir: Path) -> dict | None:
    """The run's slurm.json (job_id, task_id, submission folder), or None for a run started on this machine."""
    path = Path(run_dir) / TASK_FILE
    return runs.read_json(path) if path.exists() else None


def submission_settings(task: dict) -> SlurmSettings:
    """The settings a run's task was submitted with, to resubmit it alike."""
    settings = runs.read_json(Path(task["submission"]) / SUBMISSION)["settings"]
    return SlurmSettings(**settings | {"extra": tuple(settings["extra"])})


def _expand(task_ids: str) -> list[str]:
    """sacct's one record for array tasks not started separately, JOB_[1-3,5%2], as JOB_1, JOB_2, JOB_3, JOB_5."""
    job, _, indices = task_ids.partition("_[")
    if not indices:
        return [task_ids]
    expanded = []
    for part in indices.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        expanded += [f"{job}_{index}" for index in range(int(first), int(last or first) + 1)]
    return expanded


def task_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Slurm's (state, reason) of every array task of these jobs, keyed JOB_TASK: squeue for live tasks, else sacct.

    sacct needs Slurm's accounting (slurmdbd); where it is off, tasks that left the queue are simply
    missing here, and the run folders tell how they ended.
    """
    if not job_ids:
        return {}
    jobs = ",".join(sorted(set(job_ids)))
    states: dict[str, tuple[str, str]] = {}
    accounting = _slurm(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={jobs}", "--format=JobID,State"])
    if accounting.returncode == 0:
        records = [line.partition("|")[::2] for line in accounting.stdout.splitlines()]
        # A task's own record wins over the array's record of tasks never started, which may still name it.
        for task_ids, state in sorted(records, key=lambda record: "[" not in record[0]):
            for task_id in _expand(task_ids):
                states[task_id] = (state.split(" ")[0], "")  # "CANCELLED by 0" -> CANCELLED
    queue = _slurm(["squeue", "--noheader", "--array", f"--jobs={jobs}", "--format=%i|%T|%r"])
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:  # all of them gone is not an error
        raise SlurmError(f"squeue failed: {queue.stderr.strip()}")
    for line in queue.stdout.splitlines():
        task_id, state, reason = line.split("|", 2)
        states[task_id] = (state, "" if reason == "None" else reason)
    return states


def array_state(folder_state: str, slurm_states: Sequence[str]) -> str:
    """The state to show for a folder that SLURM tasks work on: the folder's, unless none of its tasks is live
    while the folder still says queued or running.

    Off this machine a folder cannot tell a dead process from a live one, but Slurm can: when no task is
    pending or running any more and the folder records no end, they were killed (time limit, node failure,
    out of memory, cancelled while pending).
    """
    if folder_state not in ("queued", "running") or any(state in LIVE for state in slurm_states):
        return folder_state
    if folder_state == "queued" and slurm_states and all(state == "CANCELLED" for state in slurm_states):
        return "cancelled"
    return runs.INTERRUPTED


def shown_state(run: runs.RunSummary, slurm_state: str) -> str:
    """The state to show for a SLURM run, from its one task's state (array_state)."""
    return array_state(run.state, [slurm_state])


def with_task_states(summaries: Sequence[runs.RunSummary]) -> tuple[list[runs.RunSummary], dict[str, str]]:
    """The runs with SLURM runs' states corrected by their tasks', and a note per SLURM run (task id, Slurm state)."""
    tasks = {run.name: task for run in summaries if (task := read_task(run.path))}
    states = task_states([task["job_id"] for task in tasks.values()])
    shown, notes = [], {}
    for run in summaries:
        task = tasks.get(run.name)
        if task is None:
            shown.append(run)
            continue
        state, reason = states.get(task["task_id"], GONE)
        notes[run.name] = f"SLURM task {task['task_id']}: {state}" + (f" ({reason})" if reason else "")
        shown.append(dataclasses.replace(run, state=shown_state(run, state)))
    return shown, notes


def cancel(folder: Path) -> None:
    """scancel the folder's task (or, for a screening job, its whole array); a folder whose work had not started
    yet is marked cancelled here, a started one records it itself."""
    task = read_task(folder)
    result = _slurm(["scancel", task["task_id"]])
    if result.returncode != 0:
        raise SlurmError(f"scancel {task['task_id']} failed: {result.stderr.strip()}")
    if runs.read_run(Path(folder)).state == "queued":
        what = "task" if "_" in task["task_id"] else "job"
        runs.write_status(Path(folder), "cancelled", message=f"SLURM {what} {task['task_id']} cancelled before it started", hint="resume")
