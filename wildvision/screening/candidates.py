"""Models retrained from a job's decisions, weighed against the job's own model on its audit sample, then adopted.

The Review page closes the loop of the paper's Fig S5 here: a retrain runs in the background (`python -m wildvision
retrain SCREEN_DIR`, one log each under SCREEN_DIR/retrains/), each finished one is compared with the model scoring the
job on the audit photos, which retraining held out, at each model's own line, and "use this model" re-scores the
job from its stored features (screening.rescore). The candidates are the completed runs whose config records this
job as the one they were retrained from.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from wildvision import catalog, job_queue, jobs, runs
from wildvision.screening import audit, decisions, estimates, job_features, rescore
from wildvision.screening.review import read_items, read_job

RETRAINS, REQUESTS = "retrains", "requests.jsonl"


@dataclass(frozen=True)
class RetrainRequest:
    """A retrain the Review page started: running (or waiting its turn, with its place), done or failed (why)."""

    state: str
    detail: str
    started_at: str
    owner: str


def start_retrain(screen_dir: str | Path, runs_dir: str | Path, *, owner: str = "") -> Path:
    """Run `python -m wildvision retrain SCREEN_DIR --runs-dir RUNS_DIR` in the background queue, its output in a log
    of its own noted in retrains/requests.jsonl; returns the log. jobs.TooManyJobs at the owner's cap."""
    job_queue.check_room(owner)
    folder = Path(screen_dir) / RETRAINS
    folder.mkdir(exist_ok=True)
    log = folder / f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}.log"
    arguments = ["retrain", str(Path(screen_dir).resolve()), "--runs-dir", str(Path(runs_dir).resolve())]
    pid = job_queue.start("wildvision", arguments, log, owner=owner, folder=screen_dir)
    with open(folder / REQUESTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"pid": pid, "log": log.name, "started_at": runs.now(), "owner": owner}) + "\n")
    return log


def retrain_requests(screen_dir: str | Path) -> list[RetrainRequest]:
    """The retrains started from the page, newest first; a finished one's detail is its run folder's name."""
    folder = Path(screen_dir) / RETRAINS
    if not (folder / REQUESTS).is_file():
        return []
    found = []
    for line in reversed((folder / REQUESTS).read_text(encoding="utf-8").splitlines()):
        request = json.loads(line)
        log, pid = folder / request["log"], int(request["pid"])
        if jobs.process_alive(pid):
            state, detail = "running", job_queue.waiting_line(pid) or "retraining"
        elif Path(last := jobs.last_line(log)).is_dir():
            state, detail = "done", Path(last).name
        else:
            state, detail = "failed", jobs.last_error(log)
        found.append(RetrainRequest(state, detail, request["started_at"], request.get("owner", "")))
    return found


@dataclass(frozen=True)
class Candidate:
    """A run retrained from the job's decisions: its catalog record, and how many decisions of each class it learnt from."""

    record: catalog.ModelRecord
    decisions_used: dict[str, int]


def candidates(screen_dir: str | Path, runs_dir: str | Path) -> list[Candidate]:
    """Completed runs retrained from this job's decisions, newest first."""
    job = str(Path(screen_dir).resolve())
    found = [
        Candidate(record, dict(lineage["decisions_used"]))
        for record in catalog.list_models(runs_dir, include_default=False)
        if record.state == "completed" and (lineage := record.config.get("retrain", {})).get("screening_job") == job
    ]
    return sorted(found, key=lambda candidate: candidate.record.key, reverse=True)


@dataclass(frozen=True)
class Comparison:
    """The job's model and a candidate on the same audit photos, each at its own line."""

    current: estimates.Estimates
    candidate: estimates.Estimates
    candidate_threshold: float


def compare(screen_dir: str | Path, run_dir: str | Path) -> Comparison | None:
    """Precision, recall and F of the job's current model and of the run's, on the audit sample's decided photos, with
    intervals (None without an audit sample). The run scores the sampled photos from the job's stored features; a
    unit's score is its highest-scored copy's, as for the job's model. RunError when the run cannot score the job."""
    frame = audit.sample(screen_dir)
    if frame is None:
        return None
    job = read_job(screen_dir)
    loaded, stored = rescore.usable_model(Path(screen_dir), Path(run_dir))
    items = read_items(screen_dir)
    groups = items.loc[items["path"].isin(frame["path"]), ["path", "group"]].set_index("path")["group"]
    members = items[items["group"].isin(set(groups))]
    rows = members.index.to_numpy()
    probabilities, _ = rescore.score_features(loaded, np.asarray(stored[rows]))
    best = members.assign(candidate=probabilities).groupby("group")["candidate"].max()
    candidate_scores = frame["path"].map(groups).map(best)
    decided = frame[(frame["decision"] != "") & (frame["decision"] != decisions.UNSURE)]
    is_trade = dict(zip(decided["path"], decided["decision"] == job.positive))
    total = sum(audit.design(screen_dir)["sizes"].values())
    current = estimates.estimate(frame, is_trade, dict(zip(frame["path"], frame["score"] >= job.threshold)), total, job.threshold)
    flagged = dict(zip(frame["path"], candidate_scores >= loaded.threshold))
    return Comparison(current, estimates.estimate(frame, is_trade, flagged, total, loaded.threshold), float(loaded.threshold))


def has_features(screen_dir: str | Path) -> bool:
    """Whether the job stored its photos' features (jobs screened before they were stored cannot be retrained)."""
    return (Path(screen_dir) / job_features.FEATURES).is_file()
