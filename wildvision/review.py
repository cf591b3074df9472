"""What the Review page shows of a screening job: its photos in review order, people's decisions beside the model's
scores, and the precision of the flags as people measured it.

No Streamlit here, so the page only lays this out and the tests and the render benchmark read the same numbers.

A review item is a distinct photo: the files of one duplicate group (byte-identical or near-identical reposts, see
screening) are shown once, by the member the model scored highest, and a decision on it is a decision on every member.
Measured precision counts each photo once too, so a photo reposted twenty times weighs no more than one posted once.

The order is the issue's: highest probability first, which puts the flagged photos first and then the uncertain band
just below the job's threshold; unreadable files come last. The job's threshold is the model's own until someone adopts
another from the reviewed sample (decisions.adopt_threshold); scores.csv is never rewritten, its `label` column keeps
the model's verdicts, and the bands are drawn at the job's threshold when read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from wildvision import catalog, decisions, model_card, novelty, runs
from wildvision.images import ImageError, open_image
from wildvision.screening import FILES, SCORES

UNCERTAIN_WIDTH = 0.2  # the uncertain band: this far below the job's threshold
FLAGGED, UNCERTAIN, BELOW, UNREADABLE = "flagged", "uncertain", "below", "unreadable"
BANDS = {
    FLAGGED: "Flagged (at or above the threshold)",
    UNCERTAIN: f"Uncertain (up to {UNCERTAIN_WIDTH:.0%} below the threshold)",
    BELOW: "Below the uncertain band",
    UNREADABLE: "Could not be read",
}
DECIDED_STATES = ("undecided", "decided", "any")
DECISION_COLUMNS = ("decision", "reviewer", "note", "decided_at")


@dataclass(frozen=True)
class Filters:
    """Which review items to show. bands: a subset of BANDS' keys (empty: all); folder: one source folder or None."""

    bands: tuple[str, ...] = (FLAGGED, UNCERTAIN)
    folder: str | None = None
    decided: str = "undecided"
    unusual_only: bool = False
    group: str | None = None  # one duplicate group's members, each on its own

    def __post_init__(self) -> None:
        if unknown := set(self.bands) - set(BANDS):
            raise ValueError(f"unknown score band {', '.join(sorted(unknown))}; choose from {', '.join(BANDS)}")
        if self.decided not in DECIDED_STATES:
            raise ValueError(f"decided must be one of {', '.join(DECIDED_STATES)}, not {self.decided!r}")


@dataclass(frozen=True)
class Job:
    """A completed screening job as review needs it: where, with which model and classes, at which line."""

    path: Path
    name: str
    model: str  # as given to `screen`
    model_file: str  # what predict.load_model takes: the checkpoint, or the default model's name
    architecture: str
    created_at: str | None
    model_threshold: float
    class_names: tuple[str, ...]  # negative first, positive last
    adopted: decisions.Adopted | None
    unusual_level: float | None  # unlike_training above this is unlike the training photos; None: no summary kept

    @property
    def positive(self) -> str:
        return self.class_names[-1]

    @property
    def threshold(self) -> float:
        """The line flags are drawn at: the adopted one, else the model's."""
        return self.adopted.threshold if self.adopted else self.model_threshold

    @property
    def labels(self) -> tuple[str, ...]:
        """What a person may decide: the positive class, the negative one, or unsure."""
        return (self.positive, *self.class_names[:-1], decisions.UNSURE)


def read_job(screen_dir: str | Path) -> Job:
    """The completed screening job in `screen_dir`: its model, classes and thresholds. ValueError for a folder that is
    not a screening job, RunError for one that has not finished (its scores.csv is not whole yet)."""
    screen_dir = Path(screen_dir)
    if not (screen_dir / runs.CONFIG).is_file() or not (screen_dir / FILES).is_file():
        raise ValueError(f"{screen_dir} is not a screening folder (it has no {runs.CONFIG} and {FILES})")
    state = runs.effective_state(runs.read_json(screen_dir / runs.STATUS)) if (screen_dir / runs.STATUS).is_file() else "unknown"
    if state != "completed" or not (screen_dir / SCORES).is_file():
        raise runs.RunError(f"screening job {screen_dir.name} is {state}, not completed: its photos can be reviewed and exported once it has finished")
    config = runs.read_json(screen_dir / runs.CONFIG)
    return Job(
        path=screen_dir,
        name=screen_dir.name,
        model=str(config["model"]),
        model_file=str(config["model_file"]),
        architecture=str(config.get("architecture") or ""),
        created_at=config.get("created_at"),
        model_threshold=float(config["threshold"]),
        class_names=tuple(config.get("class_names") or decisions.DEFAULT_CLASSES),
        adopted=decisions.adopted_threshold(screen_dir),
        unusual_level=_warning_level(str(config["model_file"])),
    )


def _model_folder(model_file: str) -> Path:
    return model_card.DEFAULT_DIR if model_file == model_card.DEFAULT_NAME else Path(model_file).parent


def _warning_level(model_file: str) -> float | None:
    """The level of `unlike_training` above which the model's predictions carry a caution (novelty's summary)."""
    path = _model_folder(model_file) / novelty.FILE
    return novelty.load(path).warning_level if path.is_file() else None


def read_items(screen_dir: str | Path) -> pd.DataFrame:
    """scores.csv as a table, one row per listed file, with the file to show (`file`: zip members are read from the
    job's unpacked/ copy), its source `folder`, its `group` (its duplicate group, or the path of a photo seen once)
    and `group_size`."""
    screen_dir = Path(screen_dir)
    items = pd.read_csv(screen_dir / SCORES, dtype={"path": str, "sha256": str, "label": str, "duplicate_group": str, "error": str}, keep_default_na=False)
    items["probability"] = pd.to_numeric(items["probability"], errors="coerce")
    items["unlike_training"] = pd.to_numeric(items["unlike_training"], errors="coerce")
    with open(screen_dir / FILES, encoding="utf-8", errors="surrogateescape") as handle:
        files = [json.loads(line)[1] for line in handle]
    if len(files) != len(items):
        raise runs.RunError(f"{screen_dir / FILES} lists {len(files):,} files but {SCORES} has {len(items):,} rows: the job's folder was changed")
    items["file"] = files
    items["folder"] = items["path"].map(lambda path: str(Path(path).parent))
    items["group"] = items["duplicate_group"].where(items["duplicate_group"] != "", items["path"])
    items["group_size"] = items.groupby("group")["path"].transform("size")
    return items


def with_decisions(items: pd.DataFrame, decided: Mapping[str, decisions.Decision]) -> pd.DataFrame:
    """The items with each file's current decision (empty strings where undecided) and its group's: the latest
    decision on any member, since deciding a group decides them all and a shell user may decide one member."""
    rows = [(path, d.label, d.reviewer, d.note or "", d.decided_at) for path, d in decided.items()]
    frame = items.merge(pd.DataFrame(rows, columns=["path", *DECISION_COLUMNS], dtype=str), on="path", how="left")
    frame[list(DECISION_COLUMNS)] = frame[list(DECISION_COLUMNS)].fillna("")
    latest = frame[frame["decision"] != ""].sort_values("decided_at").groupby("group")["decision"].last()
    frame["group_decision"] = frame["group"].map(latest).astype(object).fillna("")
    return frame


def bands(probabilities: pd.Series, threshold: float) -> pd.Series:
    """Each probability's score band at `threshold` (NaN, an unreadable file, is UNREADABLE)."""
    conditions = [probabilities.isna(), probabilities >= threshold, probabilities >= threshold - UNCERTAIN_WIDTH]
    return pd.Series(np.select(conditions, [UNREADABLE, FLAGGED, UNCERTAIN], BELOW), index=probabilities.index, dtype=object)


def queue(items: pd.DataFrame, threshold: float, filters: Filters = Filters(), unusual_level: float | None = None) -> pd.DataFrame:
    """The review items to show, in review order: one row per photo (its highest-scored member), highest probability
    first, unreadable files last; `items` as with_decisions returns them. A `group` filter lists that group's members."""
    frame = items.assign(band=bands(items["probability"], threshold))
    frame = frame.sort_values("probability", ascending=False, na_position="last", kind="stable")
    if filters.group is not None:
        return frame[frame["group"] == filters.group]
    frame = frame.drop_duplicates("group")
    keep = pd.Series(True, index=frame.index)
    if filters.bands:
        keep &= frame["band"].isin(filters.bands)
    if filters.folder is not None:
        keep &= frame["folder"] == filters.folder
    if filters.decided != "any":
        keep &= (frame["group_decision"] != "") == (filters.decided == "decided")
    if filters.unusual_only and unusual_level is not None:
        keep &= frame["unlike_training"] > unusual_level
    return frame[keep]


def group_paths(items: pd.DataFrame, path: str) -> list[str]:
    """Every readable file of `path`'s duplicate group (just `path` for a photo seen once)."""
    group = items.loc[items["path"] == path, "group"]
    if group.empty:
        raise ValueError(f"{path} is not in this screening job")
    members = items[(items["group"] == group.iloc[0]) & (items["error"] == "")]
    return members["path"].tolist() or [path]


def decide_photo(job: Job, items: pd.DataFrame, path: str, label: str, reviewer: str, note: str | None = None) -> int:
    """Decide a photo and every repost of it in one transaction; returns how many files that decided."""
    paths = group_paths(items, path)
    rows = items.set_index("path").loc[paths, ["sha256", "duplicate_group"]].to_dict("index")
    decisions.decide(job.path, paths, label, reviewer, note, allowed_labels=job.class_names, items=rows)
    return len(paths)


@dataclass(frozen=True)
class PrecisionView:
    """The precision of the job's flags as people judged them, beside the model's test-set precision."""

    measured: decisions.Precision  # over distinct flagged photos decided positive or negative
    flagged: int  # distinct photos flagged at the job's threshold
    test_sets: dict[str, float]  # the model's positive-class precision at its threshold, by test set
    suggestion: dict | None  # threshold_for_reviewed_precision's answer for the target, None while it cannot be measured
    suggestion_problem: str | None


def _photo_decisions(photos: pd.DataFrame) -> list[decisions.Decision]:
    decided = photos[photos["group_decision"] != ""]
    return [decisions.Decision(path, label, "", None, "") for path, label in zip(decided["path"], decided["group_decision"])]


def precision_view(job: Job, items: pd.DataFrame, target: float, record: catalog.ModelRecord | None) -> PrecisionView:
    """Measured precision of the flags at the job's threshold, with its Wilson interval, the model's test-set figures,
    and the threshold `target` precision would need on the reviewed photos."""
    photos = queue(items, job.threshold, Filters(bands=(), decided="any"))
    flagged = photos[photos["band"] == FLAGGED]
    measured = decisions.measured_precision(_photo_decisions(flagged), job.positive)
    test_sets = {}
    if record is not None:
        test_sets = {name: e.precision_at_threshold for name, e in record.results.items() if e.precision_at_threshold is not None}
    reviewed = photos[photos["probability"].notna()]
    scores = dict(zip(reviewed["path"], reviewed["probability"]))
    try:
        suggestion, problem = decisions.threshold_for_reviewed_precision(scores, _photo_decisions(reviewed), target, job.positive), None
    except ValueError as error:
        suggestion, problem = None, str(error)
    return PrecisionView(measured, len(flagged), test_sets, suggestion, problem)


def model_record(job: Job) -> catalog.ModelRecord | None:
    """The catalog's record of the job's model (for its test-set figures), or None when it is gone or unreadable."""
    if job.model_file == model_card.DEFAULT_NAME:
        return catalog.default_model()
    run_dir = _model_folder(job.model_file)
    if not (run_dir / runs.CONFIG).is_file():
        return None
    record = catalog.read_model(run_dir)
    return None if record.problem else record


def thumbnail_jpeg(file: str | None, side: int = 320) -> bytes | None:
    """A JPEG of the photo at most `side` pixels across, decoded at reduced size where JPEG allows; None if unreadable."""
    if not file:
        return None
    try:
        image = open_image(file, draft=(side, side))
    except ImageError:
        return None
    image.thumbnail((side, side))
    return jpeg_bytes(image)


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
