"""What a background process runs: `python -m wildvision.worker RUN_DIR...` trains the run folders in turn.

The dashboard and `grid` start it in a detached process (launch.spawn), and every SLURM array task
starts it on its run folder (slurm.batch_script). It is not the user-facing command line, so that
what a process in the background runs can change without changing a command people type, and the
other way round; `python -m wildvision resume` calls the same `train_queue`, so a run resumed by hand
trains exactly as one started from the dashboard.

A run that fails records why in its folder (status.json, train.log) and the queue goes on with the
next; SIGTERM (the dashboard's cancel, `scancel`, a SLURM time limit) cancels the run in training and
the runs after it. Whatever is printed goes to the run's console.log, where the process was started.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from wildvision import catalog, runs
from wildvision.jobs import CANCELLED_EXIT, Cancelled
from wildvision.training.train import execute_run
from wildvision.wording import error_text


def log_to_console() -> None:
    """Log records on standard error, time-stamped as launch.without_tracebacks recognises them in console.log."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


def print_results(run_dir: Path) -> None:
    """The finished run's test results at 0.5 and at its decision threshold, one line per test set."""
    record = catalog.read_model(run_dir)
    if record.problem:
        raise runs.RunError(f"run {run_dir.name}: {record.problem}")
    target = f"{record.target_precision:g}" if record.target_precision is not None else "?"
    print(f"run folder: {run_dir}")
    print(
        f"best epoch {record.best_epoch} of {record.epochs_run}; metrics at 0.5 as in the paper, and at the "
        f"decision threshold {record.threshold:.4f} chosen for precision {target} on test_in"
    )
    print(f"{'test set':<16}{'images':>8}{'accuracy':>10}{'F':>8}{'precision':>11}{'recall':>8}{'pos. prec.':>12}{'prec. @thr':>12}{'recall @thr':>13}")
    for name, m in record.results.items():
        print(
            f"{name:<16}{m.n_images:>8}{m.accuracy:>10.4f}{m.f_score:>8.4f}{m.precision:>11.4f}{m.recall:>8.4f}"
            f"{m.positive_precision:>12.4f}{m.precision_at_threshold:>12.4f}{m.recall_at_threshold:>13.4f}"
        )


def train_one(run_dir: Path) -> bool:
    """Train one run and print its results, or print why it failed (its folder keeps the state); True if it completed.

    Cancelled propagates: the caller decides what a cancel means for the runs after this one."""
    try:
        execute_run(run_dir)
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - every failure is recorded in the run folder; say so in one line
        print(
            f"error: run {run_dir.name} failed: {error_text(error, 'cli')} (traceback in {run_dir / runs.LOG}; "
            f"`python -m wildvision resume {run_dir}` continues after its last completed epoch)",
            file=sys.stderr,
        )
        return False
    print_results(run_dir)
    return True


def train_queue(run_dirs: Sequence[Path]) -> int:
    """Train (or continue) the runs one after another; the exit status: 0, 1 if any failed, 130 if cancelled.

    Completed runs are skipped, and so are cancelled ones when several are given (a queue resumed as a
    whole leaves alone what someone cancelled on purpose). Refuses, before training anything, when one
    of them is still running in another process.
    """
    found = [runs.read_run(run_dir) for run_dir in run_dirs]
    for run in found:
        if run.state == "running":
            raise runs.RunError(f"run {run.path} is still running (pid {run.status.get('pid')}); cancel it before resuming")
    skipped = ("completed", "cancelled") if len(run_dirs) > 1 else ("completed",)
    queue = [run.path for run in found if run.state not in skipped]
    for run_dir in queue:  # claim the queue: a reader can tell that this process will train them
        runs.write_status(run_dir, "queued", pid=os.getpid(), host=socket.gethostname())
    failed = 0
    for position, run_dir in enumerate(queue):
        try:
            failed += not train_one(run_dir)
        except Cancelled:
            for later in queue[position + 1 :]:
                runs.write_status(later, "cancelled", message="the queue was cancelled before this run started", hint="resume")
            print(f"cancelled {run_dir}", file=sys.stderr)
            return CANCELLED_EXIT
    if not queue:
        print("nothing to resume: " + ", ".join(f"{run.name} is {run.state}" for run in found))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wildvision.worker",
        description="Train the given run folders one after another, as background processes and SLURM tasks do "
        "(people resume runs with `python -m wildvision resume`).",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders made by start_run, trained in this order")
    args = parser.parse_args(argv)
    log_to_console()
    try:
        return train_queue([d.resolve() for d in args.run_dirs])
    except (ValueError, OSError) as error:  # runs.RunError is a ValueError: a folder that is not a run, or one still running
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
