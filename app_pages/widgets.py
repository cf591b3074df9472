"""Widgets that more than one page shows (layout only; the numbers come from wildvision)."""

import logging
import re
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from wildvision import catalog, runs, wording
from wildvision.analysis.export import export_ready, trained_on_words
from wildvision.analysis.run_detail import learning_curves
from wildvision.analysis.tidy import combined_results, has_own_runs
from wildvision.evaluate import tradeoff

ERROR_LOG = "dashboard-errors.log"  # in the runs folder: where a page's unexpected error keeps its traceback


def run_page(page: Callable[[], None], title: str) -> None:
    """Run a page's `page()` behind the last line of defence: an unexpected error becomes one short line saying where its
    traceback was written, never a traceback on the page (the people checking flags must not see one)."""
    try:
        page()
    except Exception as error:
        logging.getLogger(f"wildvision.pages.{title.lower()}").exception("%s page failed", title)
        log_file = runs.default_runs_dir() / ERROR_LOG
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(log_file, "a", encoding="utf-8") as handle:
                handle.write(f"{runs.now()} {title} page\n{''.join(traceback.format_exception(error))}\n")
            where = f"the details are in {code(log_file.resolve())}"
        except OSError:
            where = "the details are in the dashboard's console"
        summary = md(str(error).splitlines()[0]) if str(error) else "no details"
        st.error(
            f"Something went wrong on this page ({type(error).__name__}: {summary}). Try again; if it keeps happening, tell whoever runs this dashboard: {where}."
        )


def own_runs_notice(frame: pd.DataFrame, folder: Path, none_yet: str, warning: str) -> None:
    """What an analysis page says first: that there are no runs yet in `folder` (and what it shows until then, `none_yet`),
    or `warning` that the runs' numbers are not the paper's."""
    if has_own_runs(frame):
        st.warning(warning)
    else:
        st.info(f"No completed runs yet in {code(folder)}: start one on the Train page{none_yet}")


def md(text: str) -> str:
    """Text (a file name, an error) shown literally inside Markdown: no accidental bold, colour, links, LaTeX or HTML,
    and as one line (wording.plain_name: line breaks, bidi overrides and undecodable bytes shown as escapes)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$-]|:(?=\w))", r"\\\1", wording.plain_name(str(text)))  # ":red[": a colour


def code(path) -> str:
    """A path as inline code in Markdown (where backslash escapes would show), or escaped text if it holds a backtick."""
    text = wording.plain_name(str(path))
    return md(text) if "`" in text else f"`{text}`"


def model_label(record: catalog.ModelRecord) -> str:
    """A model as a picker lists it: the shipped default by name, a run by its folder name and what it is."""
    if record.is_default:
        return f"Default model — {record.arch}, shipped with wildvision"
    return f"{record.key} — {record.description}"


def threshold_tradeoff(scores: dict[str, dict], threshold: float, model: str, key: str, as_percent: bool = False) -> float:
    """A threshold slider starting at `model`'s own threshold, and what it costs on each stored test set.

    The widget key names the model, so switching models starts the slider at the new model's own threshold
    instead of keeping the previous model's. Left where it starts, the model's exact threshold is returned, not the
    slider's rounded one, so labels agree with the command line's. `as_percent` speaks to people checking flags
    (the Predict page): percentages and test sets in plain words; otherwise researchers' terms (Generalisation).
    """
    if as_percent:
        start = round(threshold * 100, 1)
        chosen = st.slider(
            "Flagging line: a photo is flagged 'captive / for sale' when its score is at least this",
            0.0,
            100.0,
            start,
            0.1,
            format="%.1f%%",
            key=f"{key}:{model}",
            help="Where the model's makers put it: the lowest score at which, on photos held back from its training, "
            "at least 95 of every 100 flagged photos really were captive or for sale, but never below 50% (those photos are "
            "easier than photos from elsewhere). Higher: fewer false alarms, more missed cases.",
        )
        chosen = threshold if chosen == start else chosen / 100
    else:
        start = round(threshold, 3)
        chosen = st.slider(
            "Decision threshold: a photo is flagged 'captive / for sale' when its score is at least this",
            0.0,
            1.0,
            start,
            0.001,
            format="%.3f",
            key=f"{key}:{model}",
            help="The model's own threshold: the lowest that kept precision for 'captive / for sale' at the target (0.95 by default) "
            "on test_in but never below 0.5, or on the test set it was calibrated on. Higher: fewer false alarms, more missed cases.",
        )
        chosen = threshold if chosen == start else chosen
    rows = pd.DataFrame(tradeoff(scores, chosen))
    if as_percent:
        rows = pd.DataFrame(
            {
                "photos": [wording.TEST_SET_WORDS.get(name, name) for name in rows["test set"]],
                "checked": rows["images"],
                "flagged": rows["flagged"],
                "flags that were right": rows["precision (captive)"] * 100,
                "captive photos found": rows["recall (captive)"] * 100,
            }
        )
        st.dataframe(
            rows,
            hide_index=True,
            column_config={
                "photos": st.column_config.TextColumn(width="large"),
                "flags that were right": st.column_config.NumberColumn(
                    format="%.0f%%", help="Of the flagged photos, the share that really were captive or for sale"
                ),
                "captive photos found": st.column_config.NumberColumn(format="%.0f%%", help="Of the photos that were captive or for sale, the share flagged"),
            },
        )
        st.caption(
            f"At a flagging line of {wording.line_text(chosen)}, on the test photos kept with the model. "
            "Its own held-back photos flatter it: they also chose the model."
        )
    else:
        st.dataframe(
            rows,
            hide_index=True,
            column_config={
                "precision (captive)": st.column_config.NumberColumn(
                    format="%.3f", help="Of the flagged photos, the share that really show the positive class"
                ),
                "recall (captive)": st.column_config.NumberColumn(format="%.3f", help="Of the positive photos, the share flagged"),
            },
        )
        st.caption(f"At {chosen:.3f}, measured on the test sets stored with the model (test_in is optimistic: it also chose the model).")
    return chosen


def learning_curves_chart(run_dir: Path, title: str = "", demo: bool = False) -> go.Figure | None:
    """A run's losses and validation F-score per epoch, side by side on their own axes, with a title (``title``, or
    one naming the run) and a caption inside the picture, so its PNG names the run and says when it trained on the
    demo proxy data (``demo``); None before the first epoch."""
    curves = learning_curves(run_dir)
    if curves.empty:
        return None
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Cross-entropy loss per epoch", "Validation (test_in) F-score per epoch"))
    for series, colour, column in (("training loss", "#4c78a8", 1), ("validation loss", "#f58518", 1), ("validation F-score", "#54a24b", 2)):
        part = curves[curves["series"] == series]
        figure.add_trace(go.Scatter(x=part["epoch"], y=part["value"], mode="lines+markers", name=series, line={"color": colour}), row=1, col=column)
    figure.update_xaxes(title_text="epoch", dtick=1 if curves["epoch"].max() <= 20 else None)
    figure.update_yaxes(title_text="loss", row=1, col=1)
    figure.update_yaxes(title_text="F-score (weighted)", range=[0, 1.02], dtick=0.2, row=1, col=2)
    figure.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.12, "x": 0}, height=380, margin={"t": 90})
    name = Path(run_dir).name
    data = trained_on_words(demo)
    caption = (
        f"Run {name}, trained on {data}. Left: the cross-entropy loss (lower is better) on the training photos and on the validation "
        "photos (test_in, held out of training) after each epoch; right: the F-score on test_in (precision and recall in one number, "
        "1 is perfect). The run keeps its epoch with the best F-score."
    )
    return export_ready(figure, caption, title=title or f"Learning curves of run {name}")


@st.cache_data(show_spinner="Reading results...")
def _models(folder: str, fingerprint: tuple) -> tuple[list[catalog.ModelRecord], pd.DataFrame]:
    """Every model and the paper + own results table; `fingerprint` (the runs folder's state) makes new or finished runs show up."""
    records = catalog.list_models(folder)
    return records, combined_results(records)


def models_and_results() -> tuple[list[catalog.ModelRecord], pd.DataFrame, Path]:
    """Every model (catalog records, cached), the paper's and own results as one tidy frame, and the runs folder;
    with a warning for each run whose numbers could not be read."""
    folder = runs.default_runs_dir()  # read on every script run, so a changed WILDVISION_RUNS_DIR applies
    records, frame = _models(str(folder), catalog.runs_fingerprint(folder))
    for problem in catalog.problems(records):
        st.warning(problem)
    return records, frame, folder


def request_lines(read: Callable[[], list], show: Callable) -> None:
    """Requests made in the background (exports, reports, decks), each drawn by `show`; while one is being made they
    are read again every 3 s (live_requests), and once none is the page is drawn without the checking."""
    requests = read()
    if any(request.state == "running" for request in requests):
        live_requests(read, show)
    else:
        for request in requests:
            show(request)


@st.fragment(run_every=3)
def live_requests(read: Callable[[], list], show: Callable) -> None:
    requests = read()
    if not any(request.state == "running" for request in requests):
        st.rerun()  # the whole page, without this fragment, so the checking stops
    for request in requests:
        show(request)
