"""Widgets that more than one page shows (layout only; the numbers come from wildvision)."""

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from wildvision import compare, runs
from wildvision.evaluate import tradeoff


def md(text: str) -> str:
    """Text (a file name, an error) shown literally inside Markdown: no accidental bold, links or HTML."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$-])", r"\\\1", text)


def threshold_tradeoff(scores: dict[str, dict], threshold: float, key: str) -> float:
    """A threshold slider starting at the model's own, and what it costs on each stored test set."""
    chosen = st.slider(
        "Decision threshold: a photo is flagged 'captive / for sale' when its score is at least this",
        0.0, 1.0, float(round(threshold, 3)), 0.005, key=key,
        help=f"The model's own threshold is {threshold:.3f}: the lowest that kept precision for 'captive / for sale' "
             "at the target (0.95 by default) on its held-back photos. Higher: fewer false alarms, more missed cases.",
    )
    rows = pd.DataFrame(tradeoff(scores, chosen))
    st.dataframe(rows, hide_index=True, column_config={
        "precision (captive)": st.column_config.NumberColumn(format="%.3f", help="Of the flagged photos, the share that really show the positive class"),
        "recall (captive)": st.column_config.NumberColumn(format="%.3f", help="Of the positive photos, the share flagged"),
    })
    st.caption(f"At threshold {chosen:.3f}, measured on the test sets stored with the model (test_in is optimistic: it also chose the model).")
    return chosen


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
