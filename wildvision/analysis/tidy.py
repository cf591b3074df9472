"""The paper's reported numbers and own runs in one tidy table, and the order every analysis table follows.

Vocabulary shared by the analysis modules (and by ``wildvision.paper`` and ``wildvision.catalog``):

* tidy frame: one row per number, columns ``model, regime, dataset, test_set, metric, value, source, origin, data,
  demo``. ``origin`` is ``"paper"`` or ``"run"``; ``data`` says what the model was trained on and ``demo`` whether
  that is the shipped demo proxy.
* ``source``: ``"paper (Table S2)"`` for a paper number, the run folder's name for an own run.
* row label: in a grid a paper row spans several tables (test_in from S1, test_out_pet from S2, ...), so its row is
  labelled with all of them, ``"paper (Tables S1, S2, S3)"``; a run's row with the run's name.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import pandas as pd

from wildvision import catalog, paper
from wildvision.catalog import RUN, TIDY_COLUMNS

PAPER = "paper"
ORIGINS = (PAPER, RUN)
ROW_LEVELS = ("model", "regime", "origin", "source")
COLUMN_LEVELS = ("dataset", "test_set")

#: Metrics the grid can show, with the names the paper uses for them.
METRIC_LABELS: dict[str, str] = {
    "f_score": "F-score (weighted)",
    "accuracy": "Accuracy",
    "precision": "Precision (weighted)",
    "recall": "Recall (weighted)",
    "positive_precision": "Positive-class precision (Table 1)",
}
DATASET_LABELS = {"bg": "with background images (data_bg)", "no_bg": "no background images (data_no_bg)"}
REGIME_LABELS = {"transfer": "transfer (fine-tune head)", "scratch": "scratch", "combi": "combi (head, then all)"}
PAPER_DATA = "the paper's data (Kulkarni & Di Minin 2022)"
TEST_SET_LABELS = {
    "test_in": "test_in (20% held out of the training data)",
    "test_out_pet": "test_out_pet (out of distribution, with pets)",
    "test_out_nopet": "test_out_nopet (out of distribution, no pets)",
}
#: One colour per test set on every chart, so the pages read alike.
TEST_SET_COLOURS = {"test_in": "#4c78a8", "test_out_pet": "#f58518", "test_out_nopet": "#54a24b"}


def paper_source_label(table: str) -> str:
    """``"Table S1"`` -> ``"paper (Table S1)"``: a paper number names its table."""
    return f"{PAPER} ({table})"


def paper_frame() -> pd.DataFrame:
    """The paper's reported results as a tidy frame (Table S4's parameter counts are left out: they describe
    architectures, not results; see ``paper.paper_parameter_counts``)."""
    reference = paper.reference_results()
    reference = reference[reference["metric"] != "params"].copy()
    reference["source"] = reference["source"].map(paper_source_label)
    reference["origin"] = PAPER
    reference["data"] = PAPER_DATA
    reference["demo"] = False
    return reference.reset_index(drop=True)


def combined_results(records: Iterable[catalog.ModelRecord]) -> pd.DataFrame:
    """The paper's reported results and own completed runs' test metrics in one tidy frame.

    Paper rows come first (``source`` "paper (Table S1)" ...), then the runs among ``records`` in their order
    (``source`` = run name, ``data`` = what it was trained on). Runs whose files cannot be read are left out;
    ``catalog.problems`` says which.
    """
    own = catalog.results_frame(records)
    combined = pd.concat([paper_frame(), own], ignore_index=True) if not own.empty else paper_frame()
    combined["value"] = combined["value"].astype("float64")
    combined["demo"] = combined["demo"].astype(bool)
    return combined[list(TIDY_COLUMNS)]


def own_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a tidy frame that come from own runs."""
    return frame[frame["origin"] == RUN]


def has_own_runs(frame: pd.DataFrame) -> bool:
    return bool((frame["origin"] == RUN).any())


def run_data_notes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per own run in ``frame``: source, model, regime, dataset, the data it was trained on,
    and whether that is the demo data; for the caption that says own numbers are not the paper's."""
    own = own_runs(frame)
    return own.drop_duplicates("source")[["source", "model", "regime", "dataset", "data", "demo"]].reset_index(drop=True)


def model_rank(model: str) -> tuple[int, str]:
    from_registry = architecture_order()
    return (from_registry.index(model), "") if model in from_registry else (len(from_registry), str(model))


@functools.lru_cache(maxsize=1)
def architecture_order() -> tuple[str, ...]:
    """The registry order (models.ARCHITECTURES) without importing torch for it when avoidable."""
    try:
        from wildvision.models import ARCHITECTURES
    except Exception:  # noqa: BLE001 - torch missing or broken: the paper's order still applies
        return tuple(sorted(paper.paper_parameter_counts()))
    return tuple(ARCHITECTURES)


def regime_rank(regime: str) -> tuple[int, str]:
    return (paper.REGIMES.index(regime), "") if regime in paper.REGIMES else (len(paper.REGIMES), str(regime))


def dataset_order(datasets: Iterable[str]) -> list[str]:
    present = set(datasets)
    return [d for d in paper.DATASETS if d in present] + sorted(present - set(paper.DATASETS))


def row_labels(frame: pd.DataFrame) -> pd.Series:
    """The label each number's row carries in a grid: all paper tables the rows draw on, or the run name.

    A paper row in the grid combines Tables S1-S3 (one per test set), so the row is labelled with
    every table present in ``frame`` for it, e.g. "paper (Tables S1, S2, S3)"; own runs keep their name.
    """
    labels = frame["source"].copy()
    is_paper = frame["origin"] == PAPER
    if is_paper.any():
        tables = sorted({s.removeprefix(f"{PAPER} (").removesuffix(")") for s in frame.loc[is_paper, "source"]})
        labels[is_paper] = _paper_tables_label(tables)
    return labels


def _paper_tables_label(tables: Sequence[str]) -> str:
    """["Table S1", "Table S2"] -> "paper (Tables S1, S2)"; one table keeps its own name."""
    if len(tables) == 1:
        return paper_source_label(tables[0])
    if all(t.startswith("Table ") for t in tables):
        return f"{PAPER} (Tables {', '.join(t.removeprefix('Table ') for t in tables)})"
    return f"{PAPER} ({', '.join(tables)})"


def row_sort_key(model: str, regime: str, origin: str, position: int) -> tuple:
    # Table S1's order: regime first (all transfer rows, then scratch, then combi), architectures in
    # registry order within a regime; the paper's row before own runs, runs in the frame's order.
    return (regime_rank(regime), model_rank(model), 0 if origin == PAPER else 1, position)


def short_run_name(name: str) -> str:
    """A run folder's name cut to its time and random suffix ("...-20261126-152103-05db" -> "152103-05db"),
    short enough for an axis label and still unique in practice."""
    parts = str(name).split("-")
    return "-".join(parts[-2:]) if len(parts) >= 3 else str(name)


def bar_label(frame: pd.DataFrame) -> pd.Series:
    """What a bar is called on a chart's axis: the model for the paper, "model (run 152103-05db)" for
    a run, so an own run never passes for the paper's number."""
    short = frame["source"].map(short_run_name)
    return frame["model"].where(frame["origin"] == PAPER, frame["model"] + " (run " + short + ")")
