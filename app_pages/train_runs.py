"""The Train page's list of runs, followed live: progress over every phase, the log, cancel and resume, and each
finished run beside the default model (and the model it replaces) on the same test sets."""

import functools
from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.widgets import code, learning_curves_chart, md
from wildvision import catalog, runs
from wildvision.analysis.export import chart_config
from wildvision.slurm import SlurmError, read_task
from wildvision.training import compare
from wildvision.training.launch import cancel_run, list_runs_shown, log_tail, progress, progress_line, resume_run
from wildvision.wording import error_text, with_hint

ACTIVE = ("running", "queued")


def status_words(run: runs.RunSummary) -> str:
    """The run's status message with the advice its hint code gives, in this page's words ("" if none)."""
    return with_hint(run.message, run.hint, "page")


def action_button(label: str, run_dir: Path, action) -> None:
    if st.button(label, key=f"{label}_{run_dir.name}"):
        try:
            action(run_dir)
            st.toast(f"{label}: {run_dir.name}")
        except (runs.RunError, OSError, SlurmError, ValueError) as error:  # ValueError: jobs.TooManyJobs
            st.error(md(error_text(error, "page")))


def run_details(run: runs.RunSummary, slurm_note: str | None) -> None:
    record = catalog.from_run(run)
    if slurm_note:
        task = read_task(run.path)
        st.caption(f"{md(slurm_note)}; batch script and Slurm's output in {code(task['submission'])}")
    if run.state in ACTIVE:
        p = progress(run)
        st.progress(p.fraction, text=progress_line(run, p))
    lr = f"learning rate {record.learning_rate:g}" if record.learning_rate else "Table S5's learning rate"
    started_by = f"; started by {md(run.owner)}" if run.owner else ""
    st.caption(f"{md(record.description)}, {lr}; data: {code(record.data)}{started_by}")  # a folder's name is data, never Markdown
    if status_words(run):
        (st.info if run.state in ACTIVE else st.warning)(md(status_words(run)))
    for warning in run.warnings:
        st.warning(md(warning))
    if run.state == "completed":
        comparison(record)
    figure = learning_curves_chart(run.path, title=f"Learning curves of {record.arch} (run {run.name})", demo=record.demo)
    if figure:
        st.plotly_chart(figure, key=f"curves_{run.name}", config=chart_config(f"wildvision-{run.name}-learning-curves"))
    log = log_tail(run.path)
    st.caption(f"The end of the run's log ({code(run.path / runs.LOG)}; Python tracebacks are left out here, the file keeps them):")
    st.code(log or "(no log yet)", language=None, wrap_lines=True)
    who = team.person()
    if not who.may_manage(run.owner):
        return
    if run.state in ACTIVE:
        action_button("Cancel", run.path, cancel_run)
    elif run.state in ("failed", "cancelled", runs.INTERRUPTED):
        action_button("Resume", run.path, functools.partial(resume_run, owner=who.identity))


def comparison(record: catalog.ModelRecord) -> None:
    """The run beside the default model (and the model it replaces) on its own test sets, and where it is worse."""
    frame, worse, notes = compare.table(record)
    if frame is not None:
        st.markdown("**Beside the models it should beat, on the same test sets**")
        st.dataframe(frame, hide_index=True, key=f"comparison_{record.key}")
        st.caption(
            "Precision: of the photos each model flags at its own flagging line, the share that really are the class to flag. "
            "F-score: the paper's, at 0.5, over both classes."
        )
    for sentence in worse:
        st.warning(md(sentence))
    for note in notes:
        st.caption(md(note))


def finish_notice(run: runs.RunSummary) -> str:
    message = status_words(run)
    return f"Run {run.name} finished: {run.state}" + (f" ({message})" if message else "") + ". It is selected below."


def follow_runs() -> None:
    """The runs: refreshed every 3 s while one is queued or running, drawn once when none is."""
    summaries, notes, slurm_problem = list_runs_shown(runs.default_runs_dir())
    if any(run.state in ACTIVE for run in summaries):
        live_runs()
    else:
        show_runs(summaries, notes, slurm_problem)


@st.fragment(run_every=3)
def live_runs() -> None:
    """The runs while one is active; once none is, the whole page is drawn again, without this fragment, so the
    refreshing stops (and a run that has just finished is announced there)."""
    summaries, notes, slurm_problem = list_runs_shown(runs.default_runs_dir())
    if not any(run.state in ACTIVE for run in summaries):
        st.rerun()
    show_runs(summaries, notes, slurm_problem)


def show_runs(summaries: list[runs.RunSummary], notes: dict[str, str], slurm_problem: str | None) -> None:
    # Runs that were active when this page last looked and are not now have just finished: say so, and select them below.
    active_before = st.session_state.get("train_active_runs")
    st.session_state["train_active_runs"] = {run.name for run in summaries if run.state in ACTIVE}
    just_finished = [run for run in summaries if active_before is not None and run.name in active_before and run.state not in ACTIVE]
    for run in just_finished:
        st.toast(finish_notice(run), icon=":material/check_circle:" if run.state == "completed" else ":material/warning:")
    if just_finished:
        st.session_state["train_notices"] = [(run.state, finish_notice(run)) for run in just_finished] + st.session_state.get("train_notices", [])[:4]
        st.session_state["finished_run"] = just_finished[0].name
    st.subheader("Runs")
    for state, notice in st.session_state.get("train_notices", []):
        (st.success if state == "completed" else st.warning)(md(notice))
    if not summaries:
        st.info("No runs yet. Start one above; it will appear here and update by itself.")
        return
    if slurm_problem:
        st.warning(md(slurm_problem))
    active = [run for run in summaries if run.state in ACTIVE]
    for run in active:
        with st.expander(f"{run.name}: **{run.state}**" + (f" · {notes[run.name]}" if run.name in notes else ""), expanded=True):
            run_details(run, notes.get(run.name))
    finished = [run for run in summaries if run.state not in ACTIVE]
    if finished:
        st.dataframe(
            [
                {
                    "run": r.name,
                    "state": r.state,
                    **({"SLURM": notes.get(r.name, "")} if notes else {}),
                    "architecture": r.arch,
                    "regime": r.regime,
                    "dataset": r.dataset,
                    "epochs": r.epoch,
                    "message": status_words(r),
                }
                for r in finished
            ],
            hide_index=True,
        )
        names = [r.name for r in finished]
        if st.session_state.get("finished_run") not in names:
            st.session_state.pop("finished_run", None)
        chosen = st.selectbox("Look at a finished run", names, key="finished_run")
        run_details(next(r for r in finished if r.name == chosen), notes.get(chosen))
