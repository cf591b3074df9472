"""What the Review page shows of a screening job: its photos in review order, people's decisions beside the model's
scores, and the precision of the flags as people measured it.

No Streamlit here, so the page only lays this out and the tests and the render benchmark read the same numbers.

A review item is a distinct photo: the files of one duplicate group (byte-identical or near-identical reposts, see
photos.duplicate_group_ids) are shown once, by the member the model scored highest, and a decision on it is a decision on every member.
Measured precision counts each photo once too, so a photo reposted twenty times weighs no more than one posted once.

A job that stopped before it finished (cancelled, failed, interrupted) can be reviewed as far as it was scored: its
rows come from the part files written so far, with duplicate groups among them, and decisions are kept by path as for
a finished job, so they stay valid when it is resumed and completed.

The order is the issue's: highest probability first, which puts the flagged photos first and then the uncertain band
just below the job's threshold; unreadable files come last. The job's threshold is the model's own until someone adopts
another from the reviewed sample (decisions.adopt_threshold); scores.csv is never rewritten, its `label` column keeps
the model's verdicts, and the bands are drawn at the job's threshold when read.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from wildvision import catalog, classes, model_card, novelty, photos, runs, wording
from wildvision.images import ImageError, open_image
from wildvision.screening import decisions, listings, rescore
from wildvision.screening.config import FILES, PARTS, SCORES, read_config
from wildvision.screening.merge import SCORES_COLUMNS, check_columns, part_rows
from wildvision.screening.scoring import PART_COLUMNS, rows_done

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
STOPPED = ("cancelled", "failed", runs.INTERRUPTED)  # unfinished jobs whose scored photos can be reviewed
#: Reviewed flagged photos a line is moved on, and that must stay flagged above a new line: below 20, one decision
#: moves the measured precision by more than 5 points, as much as the gap between the targets people pick (90%, 95%).
MIN_REVIEWED = 20
NAME_LENGTH = 24  # characters of a file name a grid card shows: what fits a quarter of a 1400-pixel window beside the sidebar


@dataclass(frozen=True)
class Filters:
    """Which review items to show. bands: a subset of BANDS' keys (empty: all); folder: one source folder or None."""

    bands: tuple[str, ...] = (FLAGGED, UNCERTAIN)
    folder: str | None = None
    decided: str = "undecided"
    unusual_only: bool = False
    group: str | None = None  # one duplicate group's members, each on its own
    platform: str | None = None  # a job with listings (listings.py): one platform's photos
    date_from: str | None = None  # ISO dates, inclusive: listings dated in this range (an undated one is left out)
    date_to: str | None = None
    listing: str | None = None  # one listing's photos (its listing_key)

    def __post_init__(self) -> None:
        if unknown := set(self.bands) - set(BANDS):
            raise ValueError(f"unknown score band {', '.join(sorted(unknown))}; choose from {', '.join(BANDS)}")
        if self.decided not in DECIDED_STATES:
            raise ValueError(f"decided must be one of {', '.join(DECIDED_STATES)}, not {self.decided!r}")


@dataclass(frozen=True)
class Job:
    """A screening job as review needs it: where, with which model and classes, at which line; for a job that stopped
    before it finished, how far it got."""

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
    scored: int | None = None  # files scored so far, for a job that stopped before it finished; None once completed
    total: int | None = None  # files listed

    @property
    def partial(self) -> bool:
        return self.scored is not None

    @property
    def positive(self) -> str:
        return classes.positive_class(self.class_names)

    @property
    def threshold(self) -> float:
        """The line flags are drawn at: the adopted one, else the model's."""
        return self.adopted.threshold if self.adopted else self.model_threshold

    @property
    def labels(self) -> tuple[str, ...]:
        """What a person may decide: the positive class, the negative one, or unsure."""
        return (self.positive, classes.negative_class(self.class_names), decisions.UNSURE)


def read_job(screen_dir: str | Path, unfinished: bool = False) -> Job:
    """The completed screening job in `screen_dir`: its model, classes and thresholds. ValueError for a folder that is
    not a screening job, RunError for one that has not finished (its scores.csv is not whole yet). With `unfinished`,
    a job that stopped before it finished (STOPPED) is read too, as far as it was scored (Job.partial)."""
    screen_dir = Path(screen_dir)
    if not (screen_dir / runs.CONFIG).is_file() or not (screen_dir / FILES).is_file():
        raise ValueError(f"{screen_dir} is not a screening folder (it has no {runs.CONFIG} and {FILES})")
    state = runs.effective_state(runs.read_json(screen_dir / runs.STATUS)) if (screen_dir / runs.STATUS).is_file() else "unknown"
    config = read_config(screen_dir)
    scored = None
    if state != "completed" or not (screen_dir / SCORES).is_file():
        if not unfinished or state not in STOPPED:
            raise runs.RunError(f"screening job {screen_dir.name} is {state}, not completed: its photos can be reviewed and exported once it has finished")
        scored = rows_done(screen_dir, config.part_size, int(config.files or 0)) if config.part_size else 0
        if not scored:
            raise runs.RunError(f"screening job {screen_dir.name} is {state} and had not scored any photo yet: resume it to score them")
    return Job(
        path=screen_dir,
        name=screen_dir.name,
        model=config.model,
        model_file=str(config.model_file),
        architecture=config.architecture or "",
        created_at=config.created_at,
        model_threshold=float(config.threshold or 0),
        class_names=config.class_names or decisions.DEFAULT_CLASSES,
        adopted=rescore.adopted_threshold(screen_dir),  # one adopted before another model re-scored the job no longer applies
        unusual_level=_warning_level(str(config.model_file)),
        scored=scored,
        total=config.files,
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
    and `group_size`. A job with no scores.csv yet (one that stopped before it finished) gives the rows scored so far.
    A job screened from a manifest of listings has its listings' columns too (listings.with_listings)."""
    screen_dir = Path(screen_dir)
    with open(screen_dir / FILES, encoding="utf-8", errors="surrogateescape") as handle:
        files = [json.loads(line)[1] for line in handle]
    if (screen_dir / SCORES).is_file():
        items = pd.read_csv(screen_dir / SCORES, dtype=str, keep_default_na=False, encoding_errors="surrogateescape")  # names as listed
        check_columns(items.columns, screen_dir / SCORES)
        if len(files) != len(items):
            raise runs.RunError(f"{screen_dir / FILES} lists {len(files):,} files but {SCORES} has {len(items):,} rows: the job's folder was changed")
        items["file"] = files
        rows = list(range(len(files)))
    else:
        items = _scored_so_far(screen_dir)
        rows = items.pop("index").astype(int).tolist()
        items["file"] = [files[index] for index in rows]
    items["probability"] = pd.to_numeric(items["probability"], errors="coerce")
    items["unlike_training"] = pd.to_numeric(items["unlike_training"], errors="coerce")
    items["folder"] = items["path"].map(lambda path: str(Path(path).parent))
    items["group"] = items["duplicate_group"].where(items["duplicate_group"] != "", items["path"])
    items["group_size"] = items.groupby("group")["path"].transform("size")
    return listings.with_listings(items, screen_dir, rows)


def _scored_so_far(screen_dir: Path) -> pd.DataFrame:
    """An unfinished job's part files as scores.csv's rows plus each row's list `index`: duplicate groups are found
    among the rows scored so far, each named by the list row number (from 1) of its first scored member, as scores.csv
    names them among all rows."""
    rows = pd.DataFrame(list(part_rows(screen_dir)), columns=PART_COLUMNS, dtype=str)
    phashes = [int(phash, 16) if phash else None for phash in rows["phash"]]
    first = photos.duplicate_group_ids(rows["sha256"].tolist(), phashes)
    rows["duplicate_group"] = [str(int(rows["index"].iloc[group - 1]) + 1) if group is not None else "" for group in first]
    return rows[["index", *SCORES_COLUMNS]]


def items_version(screen_dir: str | Path) -> int:
    """What changes when the job's rows do (a cache key for read_items): scores.csv's time, else the parts folder's,
    which a new part renamed into it changes."""
    path = Path(screen_dir) / SCORES
    return (path if path.is_file() else Path(screen_dir) / PARTS).stat().st_mtime_ns


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
    if filters.listing is not None:
        return frame[frame["listing_key"] == filters.listing] if "listing_key" in frame else frame.iloc[:0]
    keep = pd.Series(True, index=frame.index)
    if filters.bands:
        keep &= frame["band"].isin(filters.bands)
    if filters.folder is not None:
        keep &= frame["folder"] == filters.folder
    if filters.decided != "any":
        keep &= (frame["group_decision"] != "") == (filters.decided == "decided")
    if filters.unusual_only and unusual_level is not None:
        keep &= frame["unlike_training"] > unusual_level
    if filters.platform is not None or filters.date_from is not None or filters.date_to is not None:
        keep &= listings.listing_filter(frame, filters.platform, filters.date_from, filters.date_to)
    return frame[keep]


def counts(items: pd.DataFrame, threshold: float) -> dict[str, int]:
    """The job's numbers, each in its unit, as the job's log counts them: files listed; distinct photos (duplicate
    groups of readable files: an unreadable file is no photo, and reposts count once); distinct photos flagged at
    `threshold` and decided; files that could not be read. `items` as with_decisions returns them."""
    photos = queue(items, threshold, Filters(bands=(), decided="any"))
    photos = photos[photos["probability"].notna()]
    return {
        "files": len(items),
        "distinct_photos": len(photos),
        "flagged_photos": int((photos["band"] == FLAGGED).sum()),
        "decided_photos": int((photos["group_decision"] != "").sum()),
        "unreadable_files": int((items["error"] != "").sum()),
    }


def group_paths(items: pd.DataFrame, path: str) -> list[str]:
    """Every readable file of `path`'s duplicate group (just `path` for a photo seen once)."""
    group = items.loc[items["path"] == path, "group"]
    if group.empty:
        raise ValueError(f"{path} is not in this screening job")
    members = items[(items["group"] == group.iloc[0]) & (items["error"] == "")]
    return members["path"].tolist() or [path]


def shown_decisions(items: pd.DataFrame, path: str) -> dict[str, decisions.Decision | None]:
    """Each file of `path`'s duplicate group with its decision as `items` (with_decisions, as the page drew it) holds
    it, None where undecided: what decide_photo compares with the store, so a decision someone made since is not
    overwritten unseen."""
    group = items.loc[items["path"] == path, "group"]
    if group.empty:
        raise ValueError(f"{path} is not in this screening job")
    members = items[items["group"] == group.iloc[0]]
    return {
        row.path: decisions.Decision(row.path, row.decision, row.reviewer, row.note or None, row.decided_at) if row.decision else None
        for row in members.itertuples()
    }


def decide_photo(
    job: Job,
    items: pd.DataFrame,
    path: str,
    label: str,
    reviewer: str,
    note: str | None = None,
    shown: Mapping[str, decisions.Decision | None] | None = None,
) -> int:
    """Decide a photo and every repost of it in one transaction; returns how many files that decided.

    shown: the group's decisions as the person saw them (shown_decisions); when any changed since, nothing is saved
    and decisions.DecidedMeanwhile says who decided what, to show the photo again with it. None: not compared."""
    paths = group_paths(items, path)
    rows = items.set_index("path").loc[paths, ["sha256", "duplicate_group"]].to_dict("index")
    checked = decisions.UNCHECKED if shown is None else shown
    decisions.decide(job.path, paths, label, reviewer, note, allowed_labels=job.class_names, items=rows, shown=checked)
    return len(paths)


@dataclass(frozen=True)
class LineSuggestion:
    """A higher flagging line that the reviewed flagged photos show reaches a target precision, or why the line stays.

    People review what was flagged, so the reviewed photos can only tell whether to raise the line, and only as far as
    MIN_REVIEWED of them stay flagged above it; they never lower it."""

    threshold: float | None  # the line to adopt; None: keep the job's line (`reason` says why)
    reason: str  # why the line stays; "" when a line is suggested
    reviewed: int = 0  # flagged photos decided positive or negative, at the job's line
    right: int = 0  # of them, decided positive
    precision: float = math.nan  # on the reviewed photos at `threshold`
    kept: int = 0  # reviewed photos at or above `threshold`
    right_kept: int = 0  # of them, decided positive


def suggest_line(scores: Sequence[float], right: Sequence[bool], line: float, target: float, positive: str, flagged: int | None = None) -> LineSuggestion:
    """The lowest line above `line` at which the reviewed photos (their `scores`, and whether people decided each one
    the `positive` class) reach `target` precision with at least MIN_REVIEWED of them still at or above it.

    No line is suggested while the flags already meet the target at `line`, while fewer than MIN_REVIEWED flagged
    photos are reviewed (`flagged`, the photos flagged in all, says when there are not that many), or when none of them
    was decided positive (nothing shows where the flags start being right)."""
    reviewed = sorted(((score, bool(yes)) for score, yes in zip(scores, right) if score >= line), reverse=True)
    n, positives = len(reviewed), sum(yes for _, yes in reviewed)
    words = wording.positive_words(positive)
    if not n:
        return LineSuggestion(None, f"Decide some flagged photos ({words} or not) to see whether the line should move.")
    if positives / n >= target:
        reason = f"Keep the line: {positives} of the {n} reviewed flagged photos were {words} ({positives / n:.0%}), which meets the {target:.0%} you need."
        return LineSuggestion(None, reason, n, positives)
    if n < MIN_REVIEWED and flagged is not None and flagged < MIN_REVIEWED:
        reason = f"Only {flagged} photos are flagged in this job, fewer than the {MIN_REVIEWED} a line is moved on: the line stays."
        return LineSuggestion(None, reason, n, positives)
    if n < MIN_REVIEWED:
        reason = (
            f"The line stays until at least {MIN_REVIEWED} flagged photos are decided ({n} so far): with fewer, one decision moves "
            "the measured precision by more than 5 points."
        )
        return LineSuggestion(None, reason, n, positives)
    if not positives:
        reason = f"All {n} reviewed flagged photos were decided not {words}, so they show no score above which the flags are right: the line stays."
        return LineSuggestion(None, reason, n, positives)
    best, kept_right = None, 0
    for kept, (score, yes) in enumerate(reviewed, 1):
        kept_right += yes
        tied = kept < n and reviewed[kept][0] == score  # a line at this score also keeps the photos tied with it
        if not tied and kept >= MIN_REVIEWED and kept_right / kept >= target:
            best = LineSuggestion(score, "", n, positives, kept_right / kept, kept, kept_right)
    if best is None:
        reason = (
            f"No higher line reaches {target:.0%} on the reviewed photos while leaving at least {MIN_REVIEWED} of them flagged: "
            "decide more flagged photos, or choose a lower precision."
        )
        return LineSuggestion(None, reason, n, positives)
    return best


@dataclass(frozen=True)
class PrecisionView:
    """The precision of the job's flags as people judged them, beside the model's test-set precision."""

    measured: decisions.Precision  # over distinct flagged photos decided positive or negative
    flagged: int  # distinct photos flagged at the job's threshold
    test_sets: dict[str, float]  # the model's positive-class precision at its threshold, by test set
    suggestion: LineSuggestion
    flagged_at_suggestion: int  # distinct photos that stay flagged at the suggested line (0 when none is suggested)


def _photo_decisions(photos: pd.DataFrame) -> list[decisions.Decision]:
    decided = photos[photos["group_decision"] != ""]
    return [decisions.Decision(path, label, "", None, "") for path, label in zip(decided["path"], decided["group_decision"])]


def precision_view(job: Job, items: pd.DataFrame, target: float, record: catalog.ModelRecord | None) -> PrecisionView:
    """Measured precision of the flags at the job's threshold, with its Wilson interval, the model's test-set figures,
    and the higher line (if any) that the reviewed photos show `target` precision needs (suggest_line)."""
    photos = queue(items, job.threshold, Filters(bands=(), decided="any"))
    flagged = photos[photos["band"] == FLAGGED]
    measured = decisions.measured_precision(_photo_decisions(flagged), job.positive)
    test_sets = {}
    if record is not None:
        test_sets = {name: e.precision_at_threshold for name, e in record.results.items() if e.precision_at_threshold is not None}
    reviewed = flagged[flagged["group_decision"].isin(job.class_names)]
    suggestion = suggest_line(
        reviewed["probability"].tolist(), (reviewed["group_decision"] == job.positive).tolist(), job.threshold, target, job.positive, len(flagged)
    )
    still = 0 if suggestion.threshold is None else int((flagged["probability"] >= suggestion.threshold).sum())
    return PrecisionView(measured, len(flagged), test_sets, suggestion, still)


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


def short_name(path: str, length: int = NAME_LENGTH) -> str:
    """A file's name cut to `length` characters in the middle ("flickr8k-1000…cb0e.jpg"), so a narrow card shows its
    start and its end instead of breaking it mid-word; the full path belongs beside it."""
    name = Path(path).name
    if len(name) <= length:
        return name
    tail = (length - 1) // 2
    return name[: length - 1 - tail] + "…" + name[-tail:]


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
