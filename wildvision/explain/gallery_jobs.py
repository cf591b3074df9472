"""Explanation galleries as background jobs for the dashboard: start one, find the stored ones, read their checks.

A gallery (wildvision.explain.gallery) takes from seconds to minutes, so the Explanations page never makes one in
its own script run: `start_gallery` launches `python -m wildvision explain ... --out FOLDER` as a detached
process that waits for its turn in the background queue (wildvision.job_queue) and notes its pid and owner in
FOLDER/job.json; `stored_galleries` reads every
gallery folder of a model as ready, being made or failed. The tables the page shows (the sanity test, the
deletion curves, the border-heavy maps) are built here from the gallery's files, so the page only lays
them out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from wildvision import job_queue, jobs, runs
from wildvision.explain import gallery
from wildvision.explain.gallery import CONSOLE, FAITHFULNESS, JOB, JSON, PDF, PNG, PREVIEW, SANITY
from wildvision.explain.saliency import CONTROL_METHODS, METHODS
from wildvision.jobs import format_duration

READY, BEING_MADE, FAILED = "ready", "being made", "failed"


@dataclass(frozen=True)
class StoredGallery:
    test_name: str
    method: str
    folder: Path
    state: str  # READY, BEING_MADE or FAILED
    png: Path | None = None  # the one tall figure of a gallery made before the pages; None since
    pdf: Path | None = None  # the 16:9 pages as one PDF (before the pages: the tall figure's)
    preview: Path | None = None  # what the page shows of a gallery made before the pages: a smaller JPEG, else its PNG
    message: str = ""  # the last line of the background process's output, while being made or after it failed
    waiting: str = ""  # while it waits for its turn in the background queue: "waiting: 2nd in line; at most 2 ..."
    owner: str = ""  # who asked for it (access.Person.identity, in job.json); "" from the command line or before owners
    started_at: str = ""  # job.json's ISO time, while being made or after it failed
    images: int | None = None  # pictures in the gallery, when ready
    summary: dict = field(default_factory=dict)  # gallery.json's summary: counts per section, the border scan
    sanity: dict = field(default_factory=dict)  # sanity.json's "methods", when the checks ran
    faithfulness: dict = field(default_factory=dict)  # faithfulness.json, when the checks ran
    model: str = ""  # the model's name as the gallery's title gives it (gallery.json)
    pages: tuple[Path, ...] = ()  # the 16:9 pages' PNGs, for a slide; none for a gallery made before there were pages

    def download_name(self, suffix: str) -> str:
        """A download's file name that says what it shows, so galleries of two models never collide in a Downloads
        folder: wildvision-MODEL-TEST-METHOD plus `suffix` ("-page-1.png", ".pdf")."""
        stem = f"wildvision-{self.model or self.folder.parent.parent.name}-{self.test_name}-{self.method}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip(".-") + suffix

    @property
    def scanned(self) -> int:
        """Images of the test set that were scored and explained (the readable ones)."""
        return int(self.summary.get("images", 0)) - int(self.summary.get("unreadable", 0))

    @property
    def flagged(self) -> int:
        """Images scored at or above the model's line: those searched for maps drawn to the border."""
        return int(self.summary.get("true_positive", 0)) + int(self.summary.get("false_positive", 0))

    @property
    def border_threshold(self) -> float:
        """The share of a map in the border from which its photo is listed."""
        return float(self.summary.get("border_scan", {}).get("threshold", gallery.BORDER_THRESHOLD))


def start_gallery(
    model: str | Path,
    test_name: str,
    test_dir: str | Path,
    method: str = gallery.DEFAULT_METHOD,
    top: int = gallery.DEFAULT_TOP,
    runs_dir: str | Path | None = None,
    checks: bool = True,
    *,
    owner: str = "",
) -> Path:
    """Start `python -m wildvision explain` for one test set as a detached process that waits for its turn in the
    background queue (wildvision.job_queue); returns the gallery's folder.

    model: a run folder or "default". The folder's old gallery is removed first, so a reader never shows a
    gallery made for other settings while the new one is being made. `owner`: the person asking (access.Person.identity;
    "" from the command line), kept in job.json; one who already has settings.max_jobs_per_person jobs waiting or
    running is refused with jobs.TooManyJobs before anything is removed or started.
    """
    job_queue.check_room(owner)
    if not Path(test_dir).is_dir():
        raise ValueError(f"no test folder {test_dir}: give a folder with a sub-folder per class")
    folder = gallery.gallery_folder(model, test_name, method, runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for path in [*(folder / name for name in (JSON, PNG, PDF, PREVIEW, SANITY, FAITHFULNESS, CONSOLE)), *folder.glob("page-*.png")]:
        path.unlink(missing_ok=True)
    arguments = ["explain", str(model), "--test", f"{test_name}={Path(test_dir).resolve()}", "--method", method, "--top", str(top), "--out", str(folder)]
    if runs_dir is not None:
        arguments += ["--runs-dir", str(runs_dir)]
    if not checks:
        arguments.append("--no-checks")
    pid = job_queue.start("wildvision", arguments, folder / CONSOLE, owner=owner, folder=folder)
    record = {"pid": pid, "started_at": runs.now(), "test_name": test_name, "method": method, "arguments": arguments, "owner": owner}
    runs.write_json_atomic(folder / JOB, record)
    return folder


def _optional_json(path: Path) -> dict:
    """A check's file, or {} when it was skipped or cannot be read (the gallery itself is still worth showing)."""
    try:
        content = runs.read_json(path) if path.is_file() else {}
    except runs.RunError:
        return {}
    return content if isinstance(content, dict) else {}


def stored_galleries(model: str | Path, runs_dir: str | Path | None = None) -> list[StoredGallery]:
    """Every gallery of a model (a run folder or "default"), ready or not, by test set and method."""
    root = gallery.galleries_root(model, runs_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        job, stored = _optional_json(folder / JOB), _optional_json(folder / JSON)
        test_name = (stored or job).get("test_name") or folder.name.rsplit("-", 1)[0]
        method = (stored or job).get("method") or folder.name.rsplit("-", 1)[-1]
        pages = tuple(folder / name for name in stored.get("pages", []) if (folder / name).is_file())
        png = folder / PNG if (folder / PNG).is_file() else None
        if stored and (pages or png):
            found.append(
                StoredGallery(
                    test_name,
                    method,
                    folder,
                    READY,
                    png=png,
                    pdf=folder / PDF if (folder / PDF).is_file() else None,
                    preview=folder / PREVIEW if png and (folder / PREVIEW).is_file() else png,
                    images=len(stored.get("picks", [])),
                    summary=stored.get("summary", {}),
                    sanity=_optional_json(folder / SANITY).get("methods", {}),
                    faithfulness=_optional_json(folder / FAITHFULNESS),
                    owner=str(job.get("owner") or ""),
                    model=str(stored.get("model") or ""),
                    pages=pages,
                )
            )
        elif job:
            pid = int(job.get("pid", 0) or 0)
            state = BEING_MADE if jobs.process_alive(pid) else FAILED
            found.append(
                StoredGallery(
                    test_name,
                    method,
                    folder,
                    state,
                    message=jobs.last_line(folder / CONSOLE),
                    waiting=(job_queue.waiting_line(pid) or "") if state == BEING_MADE else "",
                    owner=str(job.get("owner") or ""),
                    started_at=job.get("started_at", ""),
                )
            )
    return found


def progress_text(item: StoredGallery, now: datetime | None = None) -> str:
    """How far a gallery being made has got, for a status line refreshed while it runs: "running for 1 min 05 s:
    scored and explained 96 of 690 images" (the process's last line, without its "[test set]" prefix); while it
    waits for its turn, where it stands in line ("waiting: 2nd in line; at most 2 background jobs run at once")."""
    if item.waiting:
        return item.waiting
    seconds = runs.seconds_since(item.started_at, now)
    elapsed = "" if seconds is None else format_duration(seconds)  # "": a job.json without a readable start time
    step = item.message.removeprefix(f"[{item.test_name}] ") or "starting"
    return f"running for {elapsed}: {step}" if elapsed else step


# --- what the page shows of a gallery's checks ------------------------------------------------------------

_ORDER = [*METHODS, *CONTROL_METHODS]  # the methods people pick, in the pickers' order, then the control


def _in_order(results: dict) -> list[tuple[str, dict]]:
    return sorted(results.items(), key=lambda item: _ORDER.index(item[0]) if item[0] in _ORDER else len(_ORDER))


def sanity_table(item: StoredGallery) -> pd.DataFrame:
    """Per method, the mean Spearman correlation with the trained model's maps at each randomisation stage, and the verdict."""
    rows = []
    for method, result in _in_order(item.sanity):
        row = {"Method": method}
        row.update(zip(result.get("stages", []), result.get("spearman", [])))
        row["Verdict"] = "passed" if result.get("passed") else "flagged"
        rows.append(row)
    return pd.DataFrame(rows)


def faithfulness_table(item: StoredGallery) -> pd.DataFrame:
    """Per method, the deletion curve's area against the random order's; lower than random = the map points at what drives the score."""
    rows = [
        {
            "Method": method,
            "Deletion AUC": result["auc"],
            "Random order AUC": result["random_auc"],
            "Photos": result["images"],
            "Drives the score?": "yes: lower than random" if result["lower_than_random"] else "no: not lower than random",
        }
        for method, result in _in_order(item.faithfulness.get("methods", {}))
    ]
    return pd.DataFrame(rows)


def border_table(item: StoredGallery) -> pd.DataFrame:
    """Every flagged image of the test set whose map lies mostly in the border, most border-heavy first."""
    images = item.summary.get("border_scan", {}).get("images", [])
    return pd.DataFrame(
        {
            "Photo": [Path(image["path"]).name for image in images],
            "Filed under": [image["true_class"] for image in images],
            "Score": [image["probability"] for image in images],
            "Border share": [image["border_share"] for image in images],
            "Path": [image["path"] for image in images],
        }
    )
