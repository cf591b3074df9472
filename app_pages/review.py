"""Review page: screen a folder of scraped photos in the background, then check the flagged ones and keep the decisions.

For NGO staff and researchers alike: plain words, one click (or key) per decision, and the precision of the flags as
people measured it. The numbers come from wildvision.screening.review, the decisions live in the job's SQLite store
(screening.decisions) and the jobs are background processes (screening.background); this file lays them out.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import team
from app_pages.review_audit import AUDIT_QUEUE, REVIEW_QUEUE, audit_queue, audit_section, retrain_section
from app_pages.review_export import export_section
from app_pages.review_jobs import LIVE, jobs_section
from app_pages.review_listing import listing_banner, listing_card, listing_filters
from app_pages.widgets import code, md, run_page
from wildvision import catalog, runs, wording
from wildvision.explain import saliency
from wildvision.predict import LoadedModel
from wildvision.screening import background, decisions, review
from wildvision.screening.config import default_screens_dir
from wildvision.screening.job import load_screen_model

GRID_PAGE = 12
GRID_COLUMNS = 4
THUMBNAIL_SIDE = 320
LARGE_SIDE = 720
SHORTCUTS = ("1", "2", "3", "4", "5", "6", "7", "8", "9")  # each label's key in the one-at-a-time view, in button order


# --- cached reads --------------------------------------------------------------------------------


@st.cache_data(max_entries=4, show_spinner=False)
def _items(screen_dir: str, version: int) -> pd.DataFrame:
    """The job's scored files (`version`, review.items_version, changes when they do)."""
    return review.read_items(screen_dir)


@st.cache_data(max_entries=600, show_spinner=False)
def _thumbnail(file: str, side: int) -> bytes | None:
    return review.thumbnail_jpeg(file, side)


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def _model(screen_dir: str) -> LoadedModel:
    return load_screen_model(Path(screen_dir), device="auto")


@st.cache_data(max_entries=200, show_spinner="Working out where the model looked…")
def _saliency(screen_dir: str, file: str, side: int) -> tuple[bytes | None, str]:
    """Grad-CAM over the photo as JPEG bytes, and its caption (or None and why not)."""
    examined = saliency.examine(_model(screen_dir), [file], "gradcam", display_max=side)[0]
    if examined.explanation is None:
        return None, f"No map: {examined.error}"
    shown = saliency.overlay(examined.image, examined.explanation.heatmap)
    return review.jpeg_bytes(shown), wording.map_caption("gradcam", examined.explanation.blank, examined.explanation.target == "score difference")


# --- decisions (button callbacks: they run before the page, so the queue drawn next already has them) ------------


def reviewer() -> str:
    """Who decides: the signed-in person, or in single-user mode the name typed ("" before one is)."""
    return team.person().identity


def may_decide() -> bool:
    who = team.person()
    return who.may("decide") and bool(who.identity)


def _decide(screen_dir: str, path: str, label: str, note_key: str, shown: dict) -> None:
    note = st.session_state.get(note_key) or None
    items = _items(screen_dir, review.items_version(screen_dir))
    try:
        job = review.read_job(screen_dir, unfinished=True)
        count = review.decide_photo(job, items, path, label, reviewer(), note, shown=shown)
    except decisions.DecidedMeanwhile as error:
        st.session_state["review-problem"] = f"That decision was not saved: this photo was {error}. Here it is again with their decision."
        st.session_state["review-group"] = items.loc[items["path"] == path, "group"].iloc[0]  # shown whatever the filters
        return
    except (ValueError, runs.RunError) as error:
        st.session_state["review-problem"] = f"That decision was not saved: {error}"
        return
    st.session_state["review-saved"] = f"Saved: {wording.label_words(label)}" + (f" for all {count} copies of this photo." if count > 1 else ".")
    st.session_state.pop("note-current", None)


def decision_buttons(job: review.Job, items: pd.DataFrame, path: str, key: str, note_key: str, shortcuts: bool = False) -> None:
    """A button per label; each carries the decisions this run showed (review.shown_decisions), so a decision someone
    made since is not overwritten unseen."""
    reviewer_missing = not may_decide()
    shown = review.shown_decisions(items, path)
    places = st.columns(len(job.labels)) if shortcuts else [st.container() for _ in job.labels]  # a grid card is narrow: one under another
    for index, (place, label) in enumerate(zip(places, job.labels)):
        place.button(
            wording.label_words(label),
            key=f"{key}-{label}",
            on_click=_decide,
            args=(str(job.path), path, label, note_key, shown),
            disabled=reviewer_missing,
            shortcut=SHORTCUTS[index] if shortcuts and index < len(SHORTCUTS) else None,
            type="primary" if index == 0 else "secondary",
            width="stretch",
        )


# --- page sections -------------------------------------------------------------------------------


def summary_section(job: review.Job, items: pd.DataFrame) -> None:
    """The job's numbers, each naming its unit: reposts of one photo count once as a distinct photo."""
    counts = review.counts(items, job.threshold)
    columns = st.columns(5)
    columns[0].metric("Files", f"{counts['files']:,}", help="Every file listed, readable or not.")
    columns[1].metric("Distinct photos", f"{counts['distinct_photos']:,}", help="Readable files, with the copies of one photo counted once.")
    columns[2].metric("Distinct photos flagged", f"{counts['flagged_photos']:,}")
    columns[3].metric("Distinct photos decided", f"{counts['decided_photos']:,}")
    columns[4].metric("Files that could not be read", f"{counts['unreadable_files']:,}")
    line = f"Flags are drawn at a score of **{wording.line_text(job.threshold)}**"
    if job.adopted:
        line += f", adopted by {md(job.adopted.reviewer)} on {job.adopted.adopted_at[:10]} (the model's own line is {wording.line_text(job.model_threshold)})."
    else:
        line += ", the model's own line."
    st.markdown(line)


def filters_section(job: review.Job, items: pd.DataFrame) -> review.Filters:
    bands = st.pills(
        "Score bands",
        list(review.BANDS),
        selection_mode="multi",
        default=[review.FLAGGED, review.UNCERTAIN],
        format_func=lambda band: review.BANDS[band].split(" (")[0],
        help=" ".join(f"{text}." for text in review.BANDS.values()),
    )
    columns = st.columns([4, 2, 3])
    folders = sorted(items["folder"].unique())
    folder = columns[0].selectbox("Source folder", ["all folders", *folders]) if len(folders) > 1 else None
    decided = columns[1].selectbox("Decided", review.DECIDED_STATES, format_func=lambda state: {"any": "decided or not"}.get(state, state))
    columns[2].write("")  # lines the checkbox up with the boxes beside it
    unusual = columns[2].checkbox(
        "Only photos unlike the training photos",
        disabled=job.unusual_level is None,
        help=wording.UNLIKE_TRAINING_HOW,
    )
    group = st.session_state.get("review-group")
    return review.Filters(tuple(bands), None if folder in (None, "all folders") else folder, decided, unusual, group, **listing_filters(items))


def card(job: review.Job, items: pd.DataFrame, row: pd.Series, key: str, side: int, shortcuts: bool = False) -> None:
    """One photo: the picture (or where the model looked), its score, its reposts, its decision and the buttons.
    `key` is the card's own (its row in the job): copies of one photo shown side by side are separate cards."""
    looked = st.toggle("Where the model looked", key=f"map-{key}", value=False) if row["error"] == "" else False
    if looked:
        picture, caption = _saliency(str(job.path), row["file"], side)
    else:
        picture, caption = _thumbnail(row["file"], side) if row["error"] == "" else None, ""
    if picture is not None:
        st.image(picture, caption=caption or None, width="stretch")
    st.markdown(item_words(job, row))
    listing_card(row, key)
    # a long name is cut in the middle rather than broken mid-word; the full path is in the tooltip
    st.caption(md(review.short_name(row["path"], review.NAME_LENGTH * (2 if shortcuts else 1))), help=f"Full path: {code(row['path'])}")
    if row["group_size"] > 1 and st.session_state.get("review-group") is None:
        st.button(f"See all {row['group_size']} copies", key=f"group-{key}", on_click=st.session_state.__setitem__, args=("review-group", row["group"]))
    if row["error"] == "":
        note_key = "note-current" if shortcuts else f"note-{key}"
        st.text_input("Note (optional)", key=note_key, label_visibility="collapsed", placeholder="Note (optional)")
        decision_buttons(job, items, row["path"], key, note_key, shortcuts)


def item_words(job: review.Job, row: pd.Series) -> str:
    if row["error"]:
        return f"**Could not be read:** {md(wording.problem_text(row['error']))}"
    score = wording.percent_text(wording.shown_percents(row["probability"], job.threshold)[0])  # never contradicts the band
    words = f"**{score}** {wording.label_words(job.positive).lower()} · {review.BANDS[row['band']].split(' (')[0].lower()}"
    if job.unusual_level is not None and not math.isnan(row["unlike_training"]) and row["unlike_training"] > job.unusual_level:
        words += f"  \n:orange[{wording.UNLIKE_TRAINING}]"
    if row["group_decision"]:
        words += f"  \nDecided: **{wording.label_words(row['group_decision'])}**" + (f" by {md(row['reviewer'])}" if row["reviewer"] else "")
    return words


def grid_view(job: review.Job, items: pd.DataFrame, shown: pd.DataFrame) -> None:
    pages = max(1, math.ceil(len(shown) / GRID_PAGE))
    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"page-{job.name}") if pages > 1 else 1
    rows = shown.iloc[(page - 1) * GRID_PAGE : page * GRID_PAGE]
    for start in range(0, len(rows), GRID_COLUMNS):
        for column, (index, row) in zip(st.columns(GRID_COLUMNS), rows.iloc[start : start + GRID_COLUMNS].iterrows()):
            with column.container(border=True):
                card(job, items, row, key=f"g{index}", side=THUMBNAIL_SIDE)


def single_view(job: review.Job, items: pd.DataFrame, shown: pd.DataFrame) -> None:
    position = min(st.session_state.get("review-position", 0), len(shown) - 1)
    row = shown.iloc[position]
    left, right = st.columns([3, 2])
    with left:
        card(job, items, row, key="single", side=LARGE_SIDE, shortcuts=True)
    with right:
        st.markdown(f"Photo {position + 1:,} of {len(shown):,} shown")
        st.caption("Keys: " + ", ".join(f"**{key}** {wording.label_words(label)}" for key, label in zip(SHORTCUTS, job.labels)) + ".")
        back, skip = st.columns(2)
        back.button("Previous", disabled=position == 0, on_click=st.session_state.__setitem__, args=("review-position", position - 1))
        skip.button("Skip", disabled=position + 1 >= len(shown), on_click=st.session_state.__setitem__, args=("review-position", position + 1))
        st.caption("Full path")
        st.code(wording.plain_name(row["path"]), language=None, wrap_lines=True)


def precision_section(job: review.Job, items: pd.DataFrame, record: catalog.ModelRecord | None) -> None:
    st.subheader("How precise are the flags here?")
    target = st.slider("Precision you need (the share of flags that are right)", 0.5, 1.0, 0.9, 0.01, key="target-precision")
    view = review.precision_view(job, items, target, record)
    measured = view.measured
    columns = st.columns([2, 3])
    if measured.n:
        columns[0].metric(
            "Measured precision of the flags",
            f"{measured.precision:.0%}",
            help="Among the flagged photos people decided, the share they found captive or for sale.",
        )
        columns[0].caption(f"95% interval {measured.low:.0%} to {measured.high:.0%} (Wilson), from {measured.n} of {view.flagged:,} flagged photos reviewed.")
    else:
        columns[0].info(f"Decide some of the {view.flagged:,} flagged photos to measure how often the flags are right here.")
    if view.test_sets:
        table = pd.DataFrame({"Photos": list(view.test_sets), "Precision at the model's line": [f"{p:.0%}" for p in view.test_sets.values()]})
        columns[1].markdown("The model's precision on its test sets, for comparison:")
        columns[1].dataframe(table, hide_index=True, width="stretch")
    reviewer_missing = not (team.person().may("adopt a flagging line") and reviewer())
    line = view.suggestion
    if line.threshold is None:
        st.markdown(md(line.reason))
    else:
        positive = wording.label_words(job.positive).lower()
        st.markdown(
            f"Of the {line.reviewed} flagged photos reviewed, {line.right} were {positive} ({line.right / line.reviewed:.0%}), below the "
            f"{target:.0%} you need. A line at **{wording.line_text(line.threshold)}** reaches {line.precision:.0%} on the {line.kept} reviewed "
            f"photos at or above it and keeps {line.right_kept} of the {line.right} confirmed {positive}; {view.flagged_at_suggestion:,} of the "
            f"{view.flagged:,} distinct photos flagged now would stay flagged."
        )
        st.caption(
            f"People review what was flagged, so their decisions can only raise the line, and only as far as {review.MIN_REVIEWED} "
            "reviewed photos stay above it."
        )
        st.button(
            f"Adopt {wording.line_text(line.threshold)} for this job",
            on_click=_adopt,
            args=(str(job.path), line.threshold, target, line.reviewed),
            disabled=reviewer_missing,
        )
    if job.adopted:
        st.button("Go back to the model's line", on_click=_adopt, args=(str(job.path), job.model_threshold, None, None), disabled=reviewer_missing)


def _adopt(screen_dir: str, threshold: float, target: float | None, reviewed: int | None) -> None:
    try:
        decisions.adopt_threshold(screen_dir, threshold, reviewer(), target, reviewed)
    except ValueError as error:
        st.session_state["review-problem"] = f"The threshold was not changed: {error}"


def review_section(summary: background.ScreenSummary) -> None:
    try:
        job = review.read_job(summary.path, unfinished=True)
        items = review.with_decisions(_items(str(summary.path), review.items_version(summary.path)), decisions.current(summary.path))
    except (runs.RunError, ValueError, OSError) as error:
        st.warning(f"This job cannot be reviewed: {error}")
        return
    if job.partial:
        st.info(
            f"**This job is partial: {job.scored:,} of {job.total:,} files scored so far** (it was {summary.state}). You can review "
            "them now; your decisions are kept when the job is resumed (above) and finished. Exports are made once it has finished."
        )
    for key, show in (("review-problem", st.error), ("review-saved", st.toast)):
        if message := st.session_state.pop(key, None):
            show(message)
    top = st.columns([2, 3], vertical_alignment="bottom")
    team.name_box(top[0])
    view = top[1].radio("View", ["Grid", "One at a time"], horizontal=True, key="review-view")
    which = st.radio("Photos to decide", [REVIEW_QUEUE, AUDIT_QUEUE], horizontal=True, key="review-queue")
    if view == "Grid":
        summary_section(job, items)
        filters = filters_section(job, items)
    else:  # the photo comes first, the numbers and filters folded above it
        with st.expander("Numbers and filters"):
            summary_section(job, items)
            filters = filters_section(job, items)
    shown = review.queue(items, job.threshold, filters, job.unusual_level)
    if which == AUDIT_QUEUE and filters.group is None:
        shown = audit_queue(job, items)
        st.caption(f"{len(shown):,} photos of the audit sample still to decide, in the order they were drawn (the filters above do not apply).")
    if filters.group is not None:
        st.info(f"Showing the {len(shown)} copies of one photo. Deciding any of them decides them all.")
        st.button("Back to all photos", on_click=st.session_state.pop, args=("review-group", None))
    listing_banner(filters, shown)
    who = team.person()
    if not who.may("decide"):
        st.info(md(who.refusal("decide")))
    elif not reviewer():
        st.caption("Type your name above to decide.")
    if shown.empty:
        st.success("Nothing left to review with these filters.")
    elif view == "Grid":
        grid_view(job, items, shown)
    else:
        single_view(job, items, shown)
    precision_section(job, items, review.model_record(job))
    audit_section(job, items)
    retrain_section(job)
    if not job.partial:  # the note above says exports wait for the job to finish
        export_section(job)


def page() -> None:
    st.title("Review")
    st.write(
        "Screen a folder of photos (for example, images saved from a marketplace) with a model, then check the photos it "
        "flags. Your decisions are kept beside the model's scores, show how often the flags are right, and can be exported "
        "as evidence or as training data."
    )
    summary = jobs_section(default_screens_dir())
    if summary is None:
        return
    if summary.state in LIVE:
        st.info(
            f"{md(summary.name)} is still {summary.state} (see above): its photos can be reviewed once it has finished, or cancel it to review those scored so far."
        )
        return
    review_section(summary)


run_page(page, "Review")
