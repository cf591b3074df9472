"""The one queue for the background work the dashboard starts: at most N processes work at once, the rest wait in
the order they were started, and whoever reads a job can say where it stands ("waiting: 2nd in line").

Eight screening jobs from one tab once made eight processes of about 1 GB each and slowed every page five-fold. There
is no daemon to keep the line: `start` launches `python -m wildvision.job_queue QUEUE_DIR SLOTS MODULE ARGS...`, a
process that imports nothing but the standard library (a waiting job costs a few MB and no CPU), waits for a slot,
and then replaces itself (exec, same pid) with `python -m MODULE ARGS...`, which does the heavy work. So the pid a
job folder records stays the job's pid from the first moment, and cancelling it (SIGTERM) works while it waits too.

The queue folder (WILDVISION_QUEUE_DIR, else `queue/` in the cache folder: one per server, since the dashboard runs
as one user) holds:
  waiting/TIME-PID.json  a ticket per waiting process: written by `start` the moment the process is started (TIME
                         is taken just before), so the line is first come, first served; a ticket whose process is
                         gone (killed while waiting) is passed over and removed by the next waiter.
  slot-I.lock            slot I of SLOTS, held with flock by the process doing the work; it holds that process's
                         ticket (pid, owner, what it works on). The kernel releases a flock when the process ends,
                         even by kill -9, so a slot is never lost to a dead job.
Only the first live ticket in the line tries for a slot, so nobody overtakes. SLOTS is settings.max_background_jobs
when the job was started: a changed setting applies to jobs started after it. SLURM jobs do not pass through here
(SLURM keeps its own queue), nor do commands people type (`python -m wildvision screen ...`).

The same tickets count a person's jobs: `jobs_of(owner)` is their waiting and working processes, which the launch
functions check against settings.max_jobs_per_person (`check_room`) before they create anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wildvision.jobs import CANCELLED_EXIT, CODE_ROOT, TooManyJobs, process_alive, spawn

QUEUE_DIR_ENV = "WILDVISION_QUEUE_DIR"
WAITING = "waiting"
POLL_SECONDS = 0.25  # how often the first in line tries the slots
TICKET_GRACE_SECONDS = 10.0  # how long a new process waits for the ticket `start` writes just after starting it


def queue_dir() -> Path:
    """$WILDVISION_QUEUE_DIR, else queue/ in the cache folder (read on every call, so tests can point it elsewhere)."""
    if os.environ.get(QUEUE_DIR_ENV):
        return Path(os.environ[QUEUE_DIR_ENV])
    from wildvision.cache import default_cache_dir  # here: the waiting process never needs it (nor numpy)

    return default_cache_dir() / "queue"


def _read(path: Path) -> dict | None:
    """A ticket or a slot's record; None when it is gone, empty (a slot never held) or half-written."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def waiting(folder: Path | None = None) -> list[dict]:
    """The live waiters' tickets, first in line first."""
    folder = (folder or queue_dir()) / WAITING
    try:
        names = sorted(os.listdir(folder), key=lambda name: tuple(int(part) for part in name.removesuffix(".json").split("-")[:2] if part.isdigit()))
    except OSError:
        return []
    tickets = [_read(folder / name) for name in names if name.endswith(".json")]
    return [ticket for ticket in tickets if ticket is not None and process_alive(ticket["pid"])]


def working(folder: Path | None = None) -> list[dict]:
    """The records of the processes that hold a slot now (a record whose process has ended is stale, and skipped)."""
    folder = folder or queue_dir()
    try:
        names = sorted(name for name in os.listdir(folder) if name.startswith("slot-"))
    except OSError:
        return []
    records = [_read(folder / name) for name in names]
    return [record for record in records if record is not None and process_alive(record["pid"])]


def place(pid: int | None, folder: Path | None = None) -> int | None:
    """Where process `pid` stands in the line, from 1; None when it is not waiting (working, ended, never queued)."""
    if pid is None:
        return None
    for number, ticket in enumerate(waiting(folder), 1):
        if ticket["pid"] == int(pid):
            return number
    return None


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def at_most(slots: int) -> str:
    """ "at most 2 background jobs run at once", "at most 1 background job runs at once"."""
    return f"at most {slots} background job{'s run' if slots != 1 else ' runs'} at once"


def waiting_words(number: int, slots: int) -> str:
    """What a waiting job's progress line says: "waiting: 2nd in line; at most 2 background jobs run at once"."""
    return f"waiting: {ordinal(number)} in line; {at_most(slots)}"


def waiting_line(pid: int | None, folder: Path | None = None) -> str | None:
    """waiting_words for process `pid`, or None when it is not waiting in the line. A job whose place is within the
    free slots is not waiting for anyone (it takes its slot within POLL_SECONDS), so it gets None too: a job started
    on an idle server never reads "waiting: 1st in line"."""
    if pid is None:
        return None
    for number, ticket in enumerate(waiting(folder), 1):
        if ticket["pid"] == int(pid):
            slots = int(ticket.get("slots") or 1)
            return None if number <= slots - len(working(folder)) else waiting_words(number, slots)
    return None


def jobs_of(owner: str, folder: Path | None = None) -> int:
    """How many background processes started for `owner` wait or work now (each process once)."""
    pids = {record["pid"] for record in [*waiting(folder), *working(folder)] if record.get("owner") == owner}
    return len(pids)


def check_room(owner: str, limit: int | None = None, folder: Path | None = None) -> None:
    """Refuse (TooManyJobs) a new job for a person who already has `limit` (settings.max_jobs_per_person) jobs
    waiting or running. Owner "" (the command line, jobs from before owners) is not capped."""
    if not owner:
        return
    if limit is None:
        from wildvision.settings import load_settings  # here: settings imports torch (see start)

        limit = load_settings().max_jobs_per_person
    count = jobs_of(owner, folder)
    if count >= limit:
        raise TooManyJobs(
            f"You already have {count} job{'s' if count != 1 else ''} waiting or running (the most one person may); wait for one to finish or cancel one."
        )


def start(module: str, arguments: Sequence[str], log: Path, *, owner: str = "", folder: str | Path = "", slots: int | None = None) -> int:
    """Start `python -m MODULE ARGUMENTS...` as a detached job that waits for one of `slots` (default:
    settings.max_background_jobs) before it runs; returns its pid, which stays the job's pid once it runs.

    `owner` (access.Person.identity; "" for none) and `folder` (what it works on) go into its ticket."""
    from wildvision.settings import load_settings  # here: settings imports torch, which the waiting process never needs

    slots = slots or load_settings().max_background_jobs
    queue = queue_dir()
    (queue / WAITING).mkdir(parents=True, exist_ok=True)
    stamp = time.time_ns()  # before the process exists: the line keeps the order of the starts
    pid = spawn("wildvision.job_queue", [str(queue), str(slots), module, *arguments], log)
    _write_ticket(queue, stamp, {"pid": pid, "owner": owner, "folder": str(folder), "module": module, "slots": slots, "since": stamp})
    return pid


def _write_ticket(queue: Path, stamp: int, ticket: dict) -> Path:
    path = queue / WAITING / f"{stamp}-{ticket['pid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ticket), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a ticket
    return path


# --- the waiting process ----------------------------------------------------------------------------------------


def _my_ticket(queue: Path, me: int) -> Path:
    """This process's ticket, written by `start` just after it began; made here when none comes (started another way)."""
    deadline = time.monotonic() + TICKET_GRACE_SECONDS
    while True:
        found = sorted((queue / WAITING).glob(f"*-{me}.json"))
        if found:
            return found[0]
        if time.monotonic() > deadline:
            stamp = time.time_ns()
            return _write_ticket(queue, stamp, {"pid": me, "owner": "", "folder": "", "module": "", "slots": 1, "since": stamp})
        time.sleep(0.02)


def _prune(queue: Path) -> None:
    """Remove the tickets of processes that ended while they waited (killed, or cancelled before they could)."""
    for path in (queue / WAITING).glob("*.json"):
        ticket = _read(path)
        if ticket is not None and not process_alive(ticket["pid"]):
            path.unlink(missing_ok=True)


def _try_slots(queue: Path, slots: int) -> int | None:
    """A file descriptor holding one free slot's lock, or None when all `slots` are held."""
    for index in range(slots):
        fd = os.open(queue / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    return None


def wait_for_slot(queue: Path, slots: int) -> int:
    """Wait in line, first come first served, until a slot is free; returns the descriptor that holds it. The ticket
    moves into the slot's file, so the job still counts as its owner's while it works."""
    me = os.getpid()
    ticket_path = _my_ticket(queue, me)
    ticket = _read(ticket_path) or {"pid": me, "owner": "", "slots": slots}
    while True:
        _prune(queue)
        line = waiting(queue)
        if not ticket_path.exists():  # the queue folder was emptied under us: stand in line again
            ticket_path = _write_ticket(queue, time.time_ns(), ticket)
        elif line and line[0]["pid"] == me:
            fd = _try_slots(queue, slots)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(ticket).encode("utf-8"), 0)
                ticket_path.unlink(missing_ok=True)
                return fd
        time.sleep(POLL_SECONDS)


def _leave_line(queue: Path) -> None:
    """SIGTERM while waiting (a cancel): leave the line at once; the job's cancel records the job as cancelled."""
    for path in (queue / WAITING).glob(f"*-{os.getpid()}.json"):
        path.unlink(missing_ok=True)
    os._exit(CANCELLED_EXIT)


def main(argv: Sequence[str]) -> None:
    """`python -m wildvision.job_queue QUEUE_DIR SLOTS MODULE ARGS...`: wait for a slot, then become `python -m MODULE ARGS...`."""
    queue, slots, module, arguments = Path(argv[0]), int(argv[1]), argv[2], list(argv[3:])
    signal.signal(signal.SIGTERM, lambda signum, frame: _leave_line(queue))
    began = time.monotonic()
    fd = wait_for_slot(queue, slots)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the job sets its own handling (jobs.sigterm_cancels)
    waited = time.monotonic() - began
    if waited >= 1:
        print(f"waited {waited:.0f} s for its turn ({at_most(slots)})", flush=True)
    os.set_inheritable(fd, True)  # the job keeps the slot's lock through exec, until it ends
    os.chdir(CODE_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", module, *arguments])


if __name__ == "__main__":
    main(sys.argv[1:])
