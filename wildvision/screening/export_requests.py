"""Exports the Review page starts: background processes writing into the job's exports/ folder, one log each.

An evidence pack's saliency maps and a training folder's copies take minutes for thousands of photos, which the
dashboard never waits for: each request is `python -m wildvision export SCREEN_DIR ...` (or `report SCREEN_DIR ...`,
a report for the people who act on the job) in its own process, noted in exports/requests.jsonl with the log its output goes to (exports/export-<UTC time>-<suffix>.log). A failed request's
message is the last `error:` line of its own log: two exports that fail together each report their own error.
Requests from before each had a log share exports/console.log, and read their error from it as they always did.
The study deck is a request of the same kind in the runs folder (reports.deck.start_deck).
Exports wait their turn in the dashboard's queue (wildvision.job_queue) and count as their owner's jobs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wildvision import job_queue, jobs, runs
from wildvision.screening.training_export import MANIFEST, training_folder_summary

EXPORTS, REQUESTS = "exports", "requests.jsonl"


def exports_folder(screen_dir: str | Path) -> Path:
    """SCREEN_DIR/exports/: what the Review page exported, requests.jsonl and each request's log."""
    return Path(screen_dir) / EXPORTS


@dataclass(frozen=True)
class ExportRequest:
    """An export the Review page started: what it writes, and where it stands (written, running or failed)."""

    kind: str  # "evidence pack", "training folder", "report" or "study deck"
    output: Path
    state: str
    detail: str = ""  # why it failed; for a written training folder, what it holds; while it waits, its place in line


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def start_request(folder: Path, kind: str, output: str | Path, arguments: Sequence[str], *, owner: str = "") -> Path:
    """Run `python -m wildvision ARGUMENTS...` in the background, its output in a log of its own in `folder`, and note
    both in folder/requests.jsonl; returns the log. `output` is what the arguments write (a file, or a training folder).
    `owner` (access.Person.identity): whose job it is, refused with jobs.TooManyJobs at their cap."""
    job_queue.check_room(owner)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"export-{utc_stamp()}-{secrets.token_hex(3)}.log"
    pid = job_queue.start("wildvision", [str(a) for a in arguments], log, owner=owner, folder=output)
    request = {"kind": kind, "output": str(Path(output).resolve()), "pid": pid, "log": log.name, "started_at": runs.now()}
    with open(folder / REQUESTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(request) + "\n")
    return log


def start_export(screen_dir: str | Path, kind: str, output: str | Path, arguments: Sequence[str], *, owner: str = "", command: str = "export") -> Path:
    """`python -m wildvision COMMAND SCREEN_DIR ARGUMENTS...` (`export`, or `report`) as a request in the job's exports/
    folder (start_request)."""
    return start_request(exports_folder(screen_dir), kind, output, [command, str(Path(screen_dir).resolve()), *map(str, arguments)], owner=owner)


def requests_in(folder: Path) -> list[ExportRequest]:
    """The requests noted in folder/requests.jsonl, newest first, each written, running or failed (with the error it
    printed in its own log)."""
    if not (folder / REQUESTS).is_file():
        return []
    requests = []
    for line in reversed((folder / REQUESTS).read_text(encoding="utf-8").splitlines()):
        request = json.loads(line)
        output = Path(request["output"])
        if output.is_file() or (output / MANIFEST).is_file():
            requests.append(ExportRequest(request["kind"], output, "written", training_folder_summary(output) if output.is_dir() else ""))
        elif jobs.process_alive(int(request["pid"])):
            requests.append(ExportRequest(request["kind"], output, "running", job_queue.waiting_line(int(request["pid"])) or ""))
        else:
            log = folder / request.get("log", jobs.CONSOLE)  # requests from before each had its own log shared console.log
            requests.append(ExportRequest(request["kind"], output, "failed", jobs.last_error(log)))
    return requests


def export_requests(screen_dir: str | Path) -> list[ExportRequest]:
    """The exports the Review page started for the job, newest first (requests_in its exports/ folder)."""
    return requests_in(exports_folder(screen_dir))


def new_pack_path(screen_dir: str | Path) -> Path:
    """Where the next evidence pack of the job goes: exports/evidence-<UTC time>.zip."""
    return exports_folder(screen_dir) / f"evidence-{utc_stamp()}.zip"


def new_report_path(screen_dir: str | Path) -> Path:
    """Where the next report of the job goes: exports/report-<UTC time>.pdf, its HTML beside it (html_beside)."""
    return exports_folder(screen_dir) / f"report-{utc_stamp()}.pdf"


def html_beside(pdf: Path) -> Path:
    """A report's HTML, written before its PDF: the PDF's name ending .html."""
    return pdf.with_suffix(".html")
