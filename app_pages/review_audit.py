"""Review page, monitoring a market: the audit sample and its estimates, models retrained from the decisions, and
adopting one for the job. The numbers come from wildvision.screening (audit, estimates, candidates, rescore); this
file lays them out in plain words."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages import team
from app_pages.widgets import md
from wildvision import jobs, runs, wording
from wildvision.screening import audit, candidates, decisions, estimates, rescore, review
from wildvision.screening.decision_store import DecisionsUnreadable, DecisionsUnwritable

AUDIT_QUEUE = "Audit: photos chosen at random, so the estimates are fair"
REVIEW_QUEUE = "Review queue: the highest scores first"
DEFAULT_SIZE = 150


def audit_queue(job: review.Job, items: pd.DataFrame) -> pd.DataFrame:
    """The audit sample's photos still to decide, in the order they were drawn, as review items."""
    photos = review.queue(items, job.threshold, review.Filters(bands=(), decided="any"), job.unusual_level).set_index("path", drop=False)
    return photos.loc[[path for path in audit.to_decide(job.path) if path in photos.index]].reset_index(drop=True)


def _draw(screen_dir: str, size: int) -> None:
    try:
        drawn = audit.draw(screen_dir, size, person=team.person().identity, unit=st.session_state.get("audit-unit"))
    except (ValueError, DecisionsUnreadable, DecisionsUnwritable) as error:
        st.session_state["review-problem"] = f"No photos were added to the audit: {error}"
        return
    st.session_state["review-saved"] = f"The audit sample now holds {len(drawn):,} {audit.UNIT_WORDS[audit.design(screen_dir)['unit']]} chosen at random."
    st.session_state["review-queue"] = AUDIT_QUEUE


def _interval(interval: estimates.Interval, count: bool = False) -> str:
    estimate, bounds = estimates.interval_words(interval, count=count)
    return f"{estimate} ({bounds})" if bounds else estimate


def audit_section(job: review.Job, items: pd.DataFrame) -> None:
    """How much trade the job holds and how much the line misses, from photos chosen at random: the sample, its
    estimates in words, and the line a target precision needs."""
    st.subheader("How much trade is here, and how much do the flags miss?")
    st.caption(
        "Photos reviewed from the top of the queue say how right the highest scores are, not how many trade photos the "
        "job holds or how many the line misses. An audit decides photos chosen at random from every score band, so "
        "its estimates hold for the whole job; decisions on other photos never enter them."
    )
    sample = audit.sample(job.path)
    may = team.person().may("decide") and bool(team.person().identity)
    if sample is None and "listing_key" in items:  # a job screened from a manifest of listings
        st.radio(
            "Count",
            [audit.PHOTO, audit.LISTING],
            format_func=lambda unit: audit.UNIT_WORDS[unit],
            horizontal=True,
            key="audit-unit",
            help="Listings: each listing is chosen as a whole, and shows trade when one of its photos does.",
        )
    columns = st.columns([1, 3], vertical_alignment="bottom")
    size = columns[0].number_input("Photos to add", 10, 1000, DEFAULT_SIZE if sample is None else 50, 10, key="audit-size")
    label = "Choose photos at random for an audit" if sample is None else "Add photos to the audit"
    columns[1].button(label, on_click=_draw, args=(str(job.path), int(size)), disabled=not may or job.partial)
    if job.partial:
        st.caption("An audit is drawn once the job has finished: a sample of part of it would say nothing of the rest.")
    if sample is None:
        return
    decided = int((sample["decision"] != "").sum())
    st.markdown(
        f"The audit sample holds **{len(sample):,} {audit.UNIT_WORDS[audit.design(job.path)['unit']]}** chosen at random; **{decided:,}** are decided and "
        f"{len(sample) - decided:,} are still to decide (choose the audit queue above to decide them)."
    )
    found = estimates.job_estimates(job.path)
    for sentence in estimates.in_words(found):
        st.markdown(md(sentence))
    st.caption(f"At the line {wording.line_text(job.threshold)}; 95% intervals from the stratified sample (docs/monitoring-a-market.md says how).")
    target = st.session_state.get("target-precision", 0.9)
    line = estimates.job_line_for_target(job.path, target)
    if line.line is None:
        st.markdown(md(f"A line for {target:.0%} precision: {line.reason}."))
        return
    st.markdown(
        f"To be {target:.0%} sure that at least {target:.0%} of the flags are right, flag from **{wording.line_text(line.line)}**: "
        + md(" ".join(estimates.in_words(line.estimates)[1:3]))
    )
    st.button(
        f"Adopt {wording.line_text(line.line)} for this job",
        key="audit-adopt",
        on_click=_adopt,
        args=(str(job.path), line.line, target, line.estimates.n),
        disabled=not (team.person().may("adopt a flagging line") and team.person().identity),
    )


def _adopt(screen_dir: str, threshold: float, target: float, decided: int) -> None:
    try:
        decisions.adopt_threshold(screen_dir, threshold, team.person().identity, target, decided)
    except ValueError as error:
        st.session_state["review-problem"] = f"The threshold was not changed: {error}"


def _retrain(screen_dir: str) -> None:
    try:
        candidates.start_retrain(screen_dir, runs.default_runs_dir(), owner=team.person().identity)
    except jobs.TooManyJobs as error:
        st.session_state["review-problem"] = f"The retrain was not started: {error}"
        return
    st.session_state["review-saved"] = "Retraining started in the background: it takes about a minute."


def _use(screen_dir: str, run_dir: str) -> None:
    try:
        entry = rescore.use_model(screen_dir, run_dir, team.person().identity)
    except (ValueError, runs.RunError, OSError) as error:
        st.session_state["review-problem"] = f"The job keeps its model: {error}"
        return
    st.session_state["review-saved"] = f"The job is now scored by the retrained model (version {entry['version']} of its scores; the old ones are kept)."


def _request_lines(found: list[candidates.RetrainRequest]) -> None:
    for request in found[:5]:
        who = f" by {md(request.owner)}" if request.owner else ""
        words = {"running": request.detail, "done": f"done: {request.detail}", "failed": f"failed: {request.detail}"}[request.state]
        st.caption(f"Retrain started{who} at {request.started_at[:16].replace('T', ' ')} UTC: {md(words)}")


@st.fragment(run_every=3)
def _live_requests(screen_dir: str) -> None:
    """The retrains started here, refreshed every few seconds; when none runs any more the whole page is drawn again
    (with the new model beside the job's)."""
    found = candidates.retrain_requests(screen_dir)
    if not any(request.state == "running" for request in found):
        st.rerun()
    _request_lines(found)


def retrain_section(job: review.Job) -> None:
    """A model retrained from the job's decisions, beside the job's model on the audit photos, and adopting it."""
    st.subheader("A better model from your decisions")
    if job.partial or not candidates.has_features(job.path):
        st.info("Retraining needs a finished job that kept its photos' features (jobs screened by wildvision from now on do).")
        return
    st.caption(
        "A new head is trained on the model's training photos plus the photos decided here (unsure ones and the audit "
        "sample left out), in about a minute. It is then compared with the job's model on the audit photos, which it "
        "never saw, each at its own line."
    )
    st.button("Retrain from the decisions", on_click=_retrain, args=(str(job.path),), disabled=not team.allowed("train"))
    found = candidates.retrain_requests(job.path)
    if any(request.state == "running" for request in found):
        _live_requests(str(job.path))
    else:
        _request_lines(found)
    for candidate in candidates.candidates(job.path, runs.default_runs_dir())[:3]:
        record, used = candidate.record, candidate.decisions_used
        with st.container(border=True):
            st.markdown(
                f"**{md(record.key)}**, retrained on " + ", ".join(f"{count:,} {md(wording.label_words(label)).lower()}" for label, count in used.items())
            )
            try:
                comparison = candidates.compare(job.path, record.path)
            except (runs.RunError, ValueError) as error:
                st.warning(f"It cannot score this job: {error}")
                continue
            if comparison is None:
                st.caption("Draw an audit sample and decide its photos to compare the two models fairly.")
            else:
                comparison_table(job, comparison)
            if rescore.current(job.path)["model"] == str(record.path.resolve()):
                st.success("This model scores the job now; its earlier scores are kept.")
                continue
            st.button(
                "Use this model for the job",
                key=f"use-{record.key}",
                on_click=_use,
                args=(str(job.path), str(record.path)),
                disabled=not (team.person().may("adopt a flagging line") and team.person().identity),
                help="Re-scores every photo of the job from its stored features; the old scores are kept, and so are the decisions.",
            )


def comparison_table(job: review.Job, comparison: candidates.Comparison) -> None:
    rows = []
    for name, found in (("The job's model", comparison.current), ("The retrained model", comparison.candidate)):
        rows.append(
            {
                "Model": name,
                "Line": wording.line_text(found.line),
                "Flags that are right (precision)": _interval(found.precision),
                "Trade photos caught (recall)": _interval(found.recall),
                "F-score": _interval(found.f_score),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(f"On the {comparison.current.n:,} decided photos of the audit sample (95% intervals).")
