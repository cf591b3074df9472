"""What a screening job's report says: every fact and number, in words, gathered once for its HTML and PDF alike.

The report is for the people who act on a job (an NGO's board, a platform's trust-and-safety team, an agency): what
was screened, with which model and line, how much trade the market holds and how much the flags miss (from the
audit sample, with intervals; without one, the precision people measured on what they reviewed, with its caveat),
the confirmed cases with their photos, maps, scores and listings, who decided how many, and what the model cannot
show. Numbers come from the functions the Review page calls (review.counts, estimates.in_words, precision_view), so
the report and the page cannot disagree; both renderings (job_render.py) lay out this one record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from wildvision import runs, wording
from wildvision.screening import audit, decisions, estimates, export, rescore, review
from wildvision.screening.config import read_config
from wildvision.screening.listings import is_web_url

MAX_CASES = 60  # confirmed photos shown with their picture and map; the rest are counted and named in the CSV export
PICTURE_SIDE = 360  # pixels of a case's photo and map in the report: clear when printed, small enough to send
MAP_METHOD = export.SALIENCY_METHOD  # the map a non-expert reads best, as in the evidence pack
DATE_TAKEN = 36867  # EXIF DateTimeOriginal, in the Exif sub-IFD
EXIF_IFD = 0x8769

LIMITS = (
    (
        "The model gives each photo a score: how likely it shows a live wild animal captive or for sale. A flag is a score at "
        "or above the line; it is a lead for a person to check, not a finding."
    ),
    (
        "Only the photos people decided are confirmed cases. Decisions are people's judgement of the photo; they say nothing "
        "of where the animal came from or whether a sale was legal."
    ),
    (
        "A map shows where in the photo the model's score came from. It shows where the model looked, not proof of what the "
        "photo shows: a bright cage or price tag means the model used it, not that it is there for the reason it seems."
    ),
    (
        "The model learnt from its own training photos. On photos unlike them (another market, another kind of animal) it "
        "can be wrong more often than its test figures say; the estimates here measure this job only."
    ),
    (
        "Estimates from a random audit sample hold for the whole job within their intervals; precision measured on the photos "
        "people chose to review holds only for those photos."
    ),
)


@dataclass(frozen=True)
class CaseRow:
    """One confirmed distinct photo: its name, score, decision, listing and pictures (JPEG bytes, or None and why)."""

    name: str
    score: str
    copies: int  # files that are this photo (reposts)
    decided: str  # "by ana@ngo.org on 2026-11-30"
    note: str
    listing_url: str
    listing: str  # title · platform · seller · listed on, where known
    taken: str  # the photo's own capture date (EXIF), where it has one
    photo: bytes | None
    map: bytes | None
    map_problem: str = ""


@dataclass(frozen=True)
class JobReport:
    """Everything a job's report says, in words, in the order it says it."""

    job: str
    made_at: str
    made_by: str
    sources: tuple[str, ...]
    listings: str  # platforms and listing dates, or "" for a job with no manifest of listings
    counts: dict[str, int]
    model: str  # a sentence, ending with its full stop
    line: str
    market_title: str
    market: tuple[str, ...]  # sentences: the audit's estimates, or the measured precision and its caveat
    market_table: tuple[tuple[str, str, str], ...]  # (measure, estimate, 95% interval) where the audit gives them
    confirmed_photos: int
    confirmed_files: int
    cases: tuple[CaseRow, ...]
    deciders: tuple[tuple[str, int, int, int, int], ...]  # who, decided, positive, negative, unsure (distinct photos)
    positive_words: str
    negative_words: str
    limits: tuple[str, ...] = LIMITS
    notes: tuple[str, ...] = field(default_factory=tuple)  # what the report had to leave out, and why


def market_words(job: review.Job, items: pd.DataFrame) -> tuple[str, tuple[str, ...], tuple[tuple[str, str, str], ...]]:
    """The report's market section: the audit sample's estimates where the job has enough decided, else the precision
    people measured on what they reviewed, with what it cannot say."""
    found = estimates.job_estimates(job.path)  # None without an audit sample
    if found is not None:
        sample = audit.sample(job.path)
        decided = int((sample["decision"] != "").sum())
        units = audit.UNIT_WORDS[audit.design(job.path)["unit"]]
        sentences = (
            f"The audit sample holds {len(sample):,} {units} chosen at random; {decided:,} are decided and {len(sample) - decided:,} are still to decide.",
            *estimates.in_words(found),
            f"At the line {wording.line_text(job.threshold)}; 95% intervals from the stratified sample.",
        )
        table = ()
        if found.n >= estimates.MIN_DECIDED:
            table = (
                (f"{units.capitalize()} that show trade", *estimates.interval_words(found.prevalence_count, count=True)),
                ("Share that show trade", *estimates.interval_words(found.prevalence)),
                ("Precision: share of flags that show trade", *estimates.interval_words(found.precision)),
                ("Recall: share of trade the line flags", *estimates.interval_words(found.recall)),
                ("F-score of the flags (0 to 1)", *estimates.interval_words(found.f_score, decimals=True)),
            )
        return "How much trade is here, and how much the flags miss", sentences, table
    view = review.precision_view(job, items, 0.9, None)
    measured = view.measured
    caveat = (
        "No audit sample has been drawn, so how much trade the job holds and how much the flags miss cannot be estimated. "
        "This precision is measured on the flagged photos people chose to review, usually the highest scores first: it says "
        "how right those flags were, may be higher than across all flags, and says nothing of the trade photos below the line."
    )
    if measured.n:
        first = (
            f"Measured precision of the flags: {measured.precision:.0%} (95% interval {measured.low:.0%} to {measured.high:.0%}, Wilson), "
            f"from {measured.n} of {view.flagged:,} flagged photos reviewed."
        )
    else:
        first = f"None of the {view.flagged:,} flagged photos has been decided yet, so the precision of the flags is not measured."
    return "How right the flags are", (first, caveat), ()


def _taken(file: str | None) -> str:
    """The photo's capture date from its EXIF (YYYY-MM-DD), or ""."""
    if not file:
        return ""
    try:
        with Image.open(file) as opened:
            stamp = opened.getexif().get_ifd(EXIF_IFD).get(DATE_TAKEN, "")
    except (OSError, UnidentifiedImageError, ValueError):
        return ""
    text = str(stamp).strip()
    return text[:10].replace(":", "-") if len(text) >= 10 and text[:4].isdigit() else ""


def _listing_text(row: pd.Series) -> tuple[str, str]:
    if "listing_key" not in row or not row.get("listing_key"):
        return "", ""
    parts = [
        row.get("title", ""),
        row.get("platform", ""),
        row.get("seller", "") and f"seller {row['seller']}",
        row.get("listing_date", "") and f"listed {row['listing_date']}",
    ]
    url = row.get("listing_url", "")
    return (url if is_web_url(url) else ""), " · ".join(wording.plain_name(p) for p in parts if p)


def _maps(screen_dir: Path, files: list[str]) -> tuple[dict[str, bytes], str]:
    """Grad-CAM overlays of `files` from the model that scored the job now, or none and why."""
    if not files:
        return {}, ""
    from wildvision.explain.saliency import examine, overlay  # captum and the network only when maps are drawn
    from wildvision.predict import load_model

    try:
        loaded = load_model(str(rescore.current(screen_dir)["model_file"]), device="cpu")
    except (OSError, ValueError, RuntimeError, runs.RunError) as error:
        return {}, f"no maps: the job's model could not be loaded ({error})"
    maps = {}
    for start in range(0, len(files), export.CHUNK):
        for examined in examine(loaded, files[start : start + export.CHUNK], MAP_METHOD, PICTURE_SIDE):
            if examined.explanation is not None:
                maps[examined.path] = review.jpeg_bytes(overlay(examined.image, examined.explanation.heatmap), quality=82)
    return maps, ""


def _deciders(decided: pd.DataFrame, job: review.Job) -> tuple[tuple[str, int, int, int, int], ...]:
    """Who decided how many distinct photos, and how; `decided`: the latest decision on each photo, by its group."""
    rows = []
    for who, part in decided.groupby("reviewer"):
        labels = part["decision"]
        negative = job.labels[1]
        rows.append(
            (
                wording.plain_name(who) or "(no name)",
                len(part),
                int((labels == job.positive).sum()),
                int((labels == negative).sum()),
                int((labels == decisions.UNSURE).sum()),
            )
        )
    return tuple(sorted(rows, key=lambda row: -row[1]))


def gather(screen_dir: str | Path, made_by: str = "", maps: bool = True, progress: Callable[[str], None] = print) -> JobReport:
    """The report of a finished screening job, as the Review page shows it now. maps: draw a map per confirmed photo
    shown (about a second each on a CPU); without, the report says there are none."""
    job = review.read_job(screen_dir)
    items = review.with_decisions(review.read_items(job.path), decisions.current(job.path))
    counts = review.counts(items, job.threshold)
    photos = review.queue(items, job.threshold, review.Filters(bands=(), decided="any"))
    latest = items[items["decision"] != ""].sort_values("decided_at").groupby("group").last()
    confirmed = photos[photos["group_decision"] == job.positive].sort_values("probability", ascending=False)
    shown = confirmed.head(MAX_CASES)
    notes = []
    drawn, problem = _maps(job.path, [f for f in shown["file"] if f]) if maps else ({}, "maps were not asked for")
    if problem:
        notes.append(f"The cases have no maps: {problem}.")
    progress(f"laying out {len(shown)} of {len(confirmed)} confirmed distinct photos")
    cases = []
    for _, row in shown.iterrows():
        decision = latest.loc[row["group"]] if row["group"] in latest.index else None
        url, listing = _listing_text(row)
        cases.append(
            CaseRow(
                name=wording.plain_name(row["path"]),
                score=wording.percent_text(wording.shown_percents(row["probability"], job.threshold)[0]),
                copies=int(row["group_size"]),
                decided="" if decision is None else f"by {wording.plain_name(decision['reviewer'])} on {decision['decided_at'][:10]}",
                note="" if decision is None else wording.plain_name(decision["note"]),
                listing_url=url,
                listing=listing,
                taken=_taken(row["file"]),
                photo=review.thumbnail_jpeg(row["file"], PICTURE_SIDE),
                map=drawn.get(row["file"]),
                map_problem="" if row["file"] in drawn else (problem or "no map could be drawn for this photo"),
            )
        )
    if len(confirmed) > len(shown):
        notes.append(f"The {len(shown)} highest-scored of the {len(confirmed):,} confirmed distinct photos are shown; the confirmed cases CSV lists them all.")
    try:
        confirmed_files = export.cases_csv(job.path)[1]
    except export.NoConfirmedCases:
        confirmed_files = 0
    market_title, market, table = market_words(job, items)
    version = rescore.current(job.path)
    record = review.model_record(job)
    model = f"{job.architecture or job.model} ({job.model})" if record is None else f"{record.description} ({job.model}). {record.trained_on}"
    if version.get("adopted_by"):
        model = f"{version.get('architecture') or ''} ({version.get('model')}), used for this job since {str(version.get('made_at'))[:10]} by {version['adopted_by']}".strip()
    model = model if model.endswith(".") else model + "."
    line = f"Flags are drawn at a score of {wording.line_text(job.threshold)}"
    if job.adopted:
        evidence = ""
        if job.adopted.target_precision is not None and job.adopted.reviewed:
            evidence = f", aiming at {job.adopted.target_precision:.0%} precision on {job.adopted.reviewed:,} decided photos"
        line += f", adopted by {job.adopted.reviewer} on {job.adopted.adopted_at[:10]}{evidence} (the model's own line is {wording.line_text(job.model_threshold)})."
    else:
        line += ", the model's own line."
    return JobReport(
        job=wording.plain_name(job.name),
        made_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        made_by=made_by,
        sources=tuple(wording.plain_name(s) for s in read_config(job.path).sources_as_given),
        listings=_listings_summary(items),
        counts=counts,
        model=model,
        line=line,
        market_title=market_title,
        market=market,
        market_table=table,
        confirmed_photos=len(confirmed),
        confirmed_files=confirmed_files,
        cases=tuple(cases),
        deciders=_deciders(latest, job),
        positive_words=wording.label_words(job.positive),
        negative_words=wording.label_words(job.labels[1]),
        notes=tuple(notes),
    )


def _listings_summary(items: pd.DataFrame) -> str:
    """Platforms and the span of listing dates, for a job screened from a manifest of listings."""
    if "listing_key" not in items:
        return ""
    listed = items[items["listing_key"] != ""]
    platforms = sorted({p for p in listed.get("platform", []) if p})
    dates = sorted(d for d in listed.get("listing_date", []) if d[:4].isdigit())
    words = f"{listed['listing_key'].nunique():,} listings"
    if platforms:
        words += " on " + ", ".join(wording.plain_name(p) for p in platforms)
    if dates:
        words += f", listed {dates[0][:10]} to {dates[-1][:10]}"
    return words
