"""Widgets that more than one page shows (layout only; the numbers come from wildvision)."""

import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from wildvision import compare, runs
from wildvision.evaluate import tradeoff


def md(text: str) -> str:
    """Text (a file name, an error) shown literally inside Markdown: no accidental bold, links or HTML."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$-])", r"\\\1", text)


def threshold_tradeoff(scores: dict[str, dict], threshold: float, model: str, key: str, as_percent: bool = False) -> float:
    """A threshold slider starting at `model`'s own threshold, and what it costs on each stored test set.

    The widget key names the model, so switching models starts the slider at the new model's own threshold
    instead of keeping the previous model's. `as_percent` shows it as the Predict page shows scores (0-100%).
    """
    help_text = ("The lowest score that kept precision for 'captive / for sale' at the target (0.95 by default) on the "
                 "model's held-back photos. Higher: fewer false alarms, more missed cases.")
    if as_percent:
        chosen = st.slider(
            "Flagging line: a photo is flagged 'captive / for sale' when its score is at least this",
            0.0, 100.0, float(round(threshold * 100, 1)), 0.1, format="%.1f%%", key=f"{key}:{model}", help=help_text,
        ) / 100
    else:
        chosen = st.slider(
            "Decision threshold: a photo is flagged 'captive / for sale' when its score is at least this",
            0.0, 1.0, float(round(threshold, 3)), 0.001, format="%.3f", key=f"{key}:{model}", help=help_text,
        )
    rows = pd.DataFrame(tradeoff(scores, chosen))
    st.dataframe(rows, hide_index=True, column_config={
        "precision (captive)": st.column_config.NumberColumn(format="%.3f", help="Of the flagged photos, the share that really show the positive class"),
        "recall (captive)": st.column_config.NumberColumn(format="%.3f", help="Of the positive photos, the share flagged"),
    })
    shown = f"{chosen:.1%}" if as_percent else f"{chosen:.3f}"
    st.caption(f"At {shown}, measured on the test sets stored with the model (test_in is optimistic: it also chose the model).")
    return chosen


def learning_curves_chart(run_dir: Path, title: str | None = None) -> go.Figure | None:
    """A run's losses and validation F-score per epoch, side by side on their own axes; None before the first epoch."""
    curves = compare.learning_curves(run_dir)
    if curves.empty:
        return None
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Cross-entropy loss per epoch", "Validation (test_in) F-score per epoch"))
    for series, colour, column in (("training loss", "#4c78a8", 1), ("validation loss", "#f58518", 1), ("validation F-score", "#54a24b", 2)):
        part = curves[curves["series"] == series]
        figure.add_trace(go.Scatter(x=part["epoch"], y=part["value"], mode="lines+markers", name=series, line={"color": colour}), row=1, col=column)
    figure.update_xaxes(title_text="epoch", dtick=1 if curves["epoch"].max() <= 20 else None)
    figure.update_yaxes(title_text="loss", row=1, col=1)
    figure.update_yaxes(title_text="F-score (weighted)", range=[0, 1.02], dtick=0.2, row=1, col=2)
    figure.update_layout(title=title, height=380, margin={"t": 90}, legend={"orientation": "h", "yanchor": "bottom", "y": 1.12, "x": 0})
    return figure


@st.cache_data(show_spinner="Reading results...")
def _combined(folder: str, fingerprint: tuple) -> tuple[pd.DataFrame, list[str]]:
    """Paper + own runs; `fingerprint` (the runs folder's state) makes new or finished runs show up."""
    return compare.combined_results_with_problems(folder)


def paper_and_run_results() -> tuple[pd.DataFrame, Path]:
    """The paper's and own results (cached), with a warning for each run that could not be read, and the runs folder."""
    folder = runs.default_runs_dir()  # read on every script run, so a changed WILDVISION_RUNS_DIR applies
    frame, problems = _combined(str(folder), compare.runs_fingerprint(folder))
    for problem in problems:
        st.warning(problem)
    return frame, folder
