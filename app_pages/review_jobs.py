"""The Review page's jobs: start a screening job, follow the running ones, cancel or resume, pick one to review."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.widgets import code, md, model_label
from wildvision import catalog, roots, runs
from wildvision.screening import background, review

LIVE = ("running", "queued")  # job states followed live


def jobs_section(screens_dir: Path) -> background.ScreenSummary | None:
    """Start a job, follow the running ones, pick one to review."""
    jobs = background.list_screens(screens_dir)
    with st.expander("Screen a new folder of photos", expanded=not jobs):
        if team.allowed("screen") and new_job_form(screens_dir):
            jobs = background.list_screens(screens_dir)
    if not jobs:
        st.info(f"No screening jobs in {code(screens_dir)} yet: start one above.")
        return None
    if any(job.state in LIVE for job in jobs):
        live_jobs(screens_dir)
    for job in jobs:
        if job.state not in (*LIVE, "completed"):
            job_line(job)
    names, labels = [job.name for job in jobs], {job.name: job_label(job) for job in jobs}
    if st.session_state.get("review-job") not in names:  # a new session (the address may name the job), or a job deleted since
        st.session_state["review-job"] = st.query_params.get("job") if st.query_params.get("job") in names else names[0]
    chosen = st.selectbox(
        "Screening job to review",
        names,
        index=names.index(st.session_state["review-job"]),
        # a widget keyed by name alone keeps showing the labels of its first run ("not finished" for a job done since)
        key=f"review-job-{hash(tuple(labels.values()))}",
        format_func=labels.__getitem__,
    )
    st.session_state["review-job"] = st.query_params["job"] = chosen  # kept for the session, like the reviewer's name
    return next(job for job in jobs if job.name == chosen)


def job_label(job: background.ScreenSummary) -> str:
    """The job as the picker lists it (progress of unfinished jobs is shown above the picker, live)."""
    if job.state == "completed":
        return f"{job.name} · {job.total or 0:,} files"
    if job.state in review.STOPPED and job.total:
        return f"{job.name} · partial: {job.done:,} of {job.total:,} files scored"
    return f"{job.name} · not finished"


def new_job_form(screens_dir: Path) -> bool:
    """The form that starts a screening job; True when one was started."""
    models = catalog.usable_models(runs.default_runs_dir())
    if not models:
        st.warning("There is no model to screen with: the default model is missing and no training run has finished.")
        return False
    with st.form("new-screen"):
        sources = st.text_area(
            "Folders, zip files or lists of photo paths on this computer, one per line",
            placeholder="/data/marketplace/2026-11-28",
            help="Folders are searched with all their sub-folders. A text file lists one photo path per line. A .csv or .jsonl manifest of scraped listings names each photo with its listing (URL, post id, title, date, seller, platform): see docs/cli.md.",
        )
        model = st.selectbox("Model", models, format_func=model_label)
        name = st.text_input("Name for this job (optional)", placeholder="marketplace-november")
        started = st.form_submit_button("Start screening", type="primary")
    if not started:
        return False
    lines = [line.strip() for line in sources.splitlines() if line.strip()]
    if not lines:
        st.error("Give at least one folder, zip file, list of photo paths or manifest of listings.")
        return False
    try:
        lines = [str(roots.regular(roots.readable(line))) for line in lines]
    except roots.OutsideRoots as error:
        st.error(f"The job was not started: {md(str(error))}")
        return False
    try:
        screen_dir = background.launch_screen(
            lines, model.model, screens_dir, name.strip() or None, owner=team.person().identity, read_roots=roots.read_roots()
        )
    except (ValueError, runs.RunError, OSError) as error:
        st.error(f"The job was not started: {md(str(error))}")
        return False
    st.session_state["review-job"] = screen_dir.name  # the picker below shows the new job
    st.success(f"Started screening job {md(screen_dir.name)}. It runs in the background; you can leave this page.")
    return True


def job_line(job: background.ScreenSummary) -> None:
    """A job that has not finished: its progress in words, who started it, and Cancel or Resume for whoever may."""
    who = team.person()
    columns = st.columns([5, 1])
    started_by = f" · started by {md(job.owner)}" if job.owner else ""
    columns[0].markdown(f"**{md(job.name)}** · {md(background.screen_progress_line(job))}{started_by}")
    manage = who.may_manage(job.owner)
    if job.state in LIVE:
        if manage:
            columns[1].button("Cancel", key=f"cancel-{job.name}", on_click=_job_action, args=(background.cancel_screen, job.path))
        if job.total:
            st.progress(min(1.0, job.done / job.total))
    elif job.state != background.UNREADABLE and manage:
        resume = functools.partial(background.resume_screen_in_background, owner=who.identity)
        columns[1].button("Resume", key=f"resume-{job.name}", on_click=_job_action, args=(resume, job.path))


@st.fragment(run_every=3)
def live_jobs(screens_dir: Path) -> None:
    """The running jobs, refreshed every few seconds; when the last one ends the whole page is drawn again."""
    running = [job for job in background.list_screens(screens_dir) if job.state in LIVE]
    if not running:
        st.rerun()
    for job in running:
        job_line(job)


def _job_action(action, screen_dir: Path) -> None:
    try:
        action(screen_dir)
    except (runs.RunError, OSError, ValueError) as error:
        st.session_state["review-problem"] = str(error)
