"""Background jobs: how every long piece of work (a training run, a screening job, a gallery, an export) is started,
followed and stopped, so the dashboard never does it inside its own script run.

A job is an ordinary `python -m ...` process in its own session (closing the tab or restarting Streamlit never stops
it) whose output goes to its own log file: one log per job or per request, so two requests that fail together each
report their own error. What the job has done is in the folder it writes; here is only what every kind shares:
starting it, whether its process still lives, stopping it (SIGTERM, which the job turns into `Cancelled` and records
itself), and reading its log's last words. This module imports nothing heavy: starting a job never loads the trainer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

CONSOLE = "console.log"  # a job folder's log: what its process printed
CANCELLED_EXIT = 130  # a cancelled process's exit status, as for one stopped by Ctrl-C
CODE_ROOT = Path(__file__).resolve().parents[1]  # where `python -m wildvision...` finds this package


class Cancelled(Exception):
    """Raised inside a job when it is asked to stop (SIGTERM from the dashboard's cancel, `scancel`, a SLURM time
    limit), so that it records 'cancelled' itself before it exits."""


class TooManyJobs(ValueError):
    """A person who already has settings.max_jobs_per_person jobs waiting or running asked for another
    (wildvision.job_queue.check_room); the message says so in a page's words."""


def _raise_cancelled(signum, frame):
    raise Cancelled()


@contextlib.contextmanager
def sigterm_cancels() -> Iterator[None]:
    """Inside the block, SIGTERM raises Cancelled in the main thread; the previous handler comes back after it.

    Outside the main thread (where Python cannot handle signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_cancelled)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def spawn(module: str, arguments: Sequence[str], log: Path) -> int:
    """Start `python -m MODULE ARGUMENTS...` as one detached process, its output appended to `log`; returns its pid."""
    with open(log, "ab") as console:  # the child keeps its own copy of the file descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, arguments)],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the dashboard's process group: survives Streamlit restarts
            cwd=CODE_ROOT,
        )
    threading.Thread(target=process.wait, daemon=True).start()  # reap it, so a finished process is not a zombie
    return process.pid


def process_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs; a finished child not yet reaped (a zombie) counts as gone."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def alive_here(status: dict) -> bool | None:
    """Whether the process a status names still runs: None when it names none or runs on another host (unknowable here)."""
    if status.get("pid") is None or status.get("host", socket.gethostname()) != socket.gethostname():
        return None
    return process_alive(int(status["pid"]))


def stop(pid: int) -> None:
    """Ask a job's process to stop (SIGTERM: the job records 'cancelled' itself); a process that has just ended is fine."""
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        pass  # it has just ended: its own record says how


def _lines(log: Path) -> list[str]:
    try:
        return [line.strip() for line in Path(log).read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return []


def last_line(log: Path) -> str:
    """The last thing a job printed, or "" when its log is missing or empty."""
    lines = _lines(log)
    return lines[-1] if lines else ""


def last_error(log: Path) -> str:
    """Why a job that printed `error: ...` (the command line's way to report a failure) stopped, from its own log."""
    errors = [line for line in _lines(log) if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else "it stopped before it finished"


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
