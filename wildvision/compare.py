"""The paper's reported numbers and our own runs, side by side: the tables behind the analysis pages.

Why this module exists: the dashboard's Results, Efficiency and Generalisation pages must show the
paper's Tables S1-S4 / Table 1 and our own runs in one layout, and every number must say where it
came from. Doing the reshaping here, in plain pandas without Streamlit, keeps the pages down to
widgets and charts and lets the tests check the tables themselves (a grid with the paper's 24
configurations, the drop from test_in to the out-of-distribution sets, the gain ranking, the
LaTeX export) without rendering anything.

Vocabulary (shared with ``wildvision.paper`` and ``wildvision.runs``):

* tidy frame: one row per number, columns ``model, regime, dataset, test_set, metric, value,
  source`` plus ``origin`` (``"paper"`` or ``"run"``) and ``data`` (what the model was trained on).
* ``source``: ``"paper (Table S2)"`` for a paper number, the run folder's name for an own run.
* row label: in the grid a paper row spans several tables (test_in from S1, test_out_pet from S2,
  ...), so its row is labelled with all of them, ``"paper (Tables S1, S2, S3)"``; a run's row is
  labelled with the run's name.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wildvision import paper, runs

PAPER, RUN = "paper", "run"
ORIGINS = (PAPER, RUN)
TIDY_COLUMNS = ("model", "regime", "dataset", "test_set", "metric", "value", "source", "origin", "data")
ROW_LEVELS = ("model", "regime", "origin", "source")
COLUMN_LEVELS = ("dataset", "test_set")
IN_DISTRIBUTION = "test_in"

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
DEMO_DATA_MARK = "demo-data"


# --------------------------------------------------------------------------------------------
# Where the runs are
# --------------------------------------------------------------------------------------------


def runs_fingerprint(folder: str | Path) -> tuple[tuple[str, int, int, int], ...]:
    """A cheap summary of the runs folder that changes whenever a run starts, progresses or ends.

    Used as a cache key: stat calls only, no reading, so a page can call it on every rerun and
    reload the tables exactly when something on disk changed (files are replaced atomically, which
    gives them a new modification time).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return ()
    stamps = []
    for run_dir in sorted(folder.iterdir()):
        if not (run_dir / runs.CONFIG).is_file():
            continue
        stamp = [run_dir.name]
        for name in (runs.STATUS, runs.METRICS, runs.RESULTS):
            try:
                stamp.append((run_dir / name).stat().st_mtime_ns)
            except OSError:
                stamp.append(0)
        stamps.append(tuple(stamp))
    return tuple(stamps)


# --------------------------------------------------------------------------------------------
# One tidy table: the paper and own runs
# --------------------------------------------------------------------------------------------


def paper_source_label(table: str) -> str:
    """``"Table S1"`` -> ``"paper (Table S1)"``: a paper number names its table."""
    return f"{PAPER} ({table})"


def is_demo_data(data: str) -> bool:
    """Whether a data path is (or links into) the shipped demo data: a cats-and-dogs proxy, never the paper's."""
    return DEMO_DATA_MARK in str(data)


def run_data(run: runs.RunSummary) -> str:
    """The folder a run trained on, followed through a symlink of one of its images when it links
    into the demo data, so a subset of symlinks to the demo photos is still flagged as demo data."""
    data = str(run.config.get("train", {}).get("data", ""))
    if is_demo_data(data):
        return data
    try:
        first = runs.read_json(run.path / runs.SPLIT)["train"][0]
        resolved = (Path(data) / first).resolve()
    except (runs.RunError, KeyError, IndexError, TypeError, OSError):
        return data
    return f"{data} (links into {resolved.parent.parent})" if is_demo_data(resolved) else data


def own_results(runs_dir_: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Own completed runs' test metrics (the rows of ``runs.results_frame``) and the runs that could not be read.

    ``runs.results_frame`` stops at the first damaged results.json; a dashboard should instead show
    every readable run and name the broken ones. So: one ``results_frame`` call when all is well,
    and run by run only when it fails. Returns (tidy frame with ``data``, problems as sentences).
    """
    runs_dir_ = Path(runs_dir_)
    summaries = runs.list_runs(runs_dir_)
    problems: list[str] = []
    try:
        own = runs.results_frame(runs_dir_)
    except (runs.RunError, KeyError, TypeError, ValueError, OSError):
        parts = []
        for run in summaries:
            if run.state != "completed" or not (run.path / runs.RESULTS).exists():
                continue
            try:
                train = run.config["train"]
                results = runs.read_json(run.path / runs.RESULTS)["test_sets"]
                dataset = "bg" if train["with_background"] else "no_bg"
                rows = [
                    (train["arch"], train["regime"], dataset, test_set, metric, float(metrics[metric]), run.name)
                    for test_set, metrics in results.items()
                    for metric in runs.RESULT_METRICS
                ]
            except (runs.RunError, KeyError, TypeError, ValueError, AttributeError) as error:
                problems.append(f"Run {run.name} is marked completed but its {runs.RESULTS} or {runs.CONFIG} cannot be read ({error}); it is left out.")
                continue
            parts.append(pd.DataFrame(rows, columns=list(paper.COLUMNS)))
        own = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(paper.COLUMNS))
    data = {run.name: run_data(run) for run in summaries}
    own["origin"] = RUN
    own["data"] = [data.get(name, "") for name in own["source"]]
    return own, problems


def combined_results_with_problems(runs_dir_: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """``combined_results`` plus a sentence for each own run that could not be read (see ``own_results``)."""
    reference = paper.reference_results()
    reference = reference[reference["metric"] != "params"].copy()
    reference["source"] = reference["source"].map(paper_source_label)
    reference["origin"] = PAPER
    reference["data"] = PAPER_DATA

    own, problems = own_results(runs_dir_)
    combined = pd.concat([reference, own], ignore_index=True) if not own.empty else reference.reset_index(drop=True)
    combined["value"] = combined["value"].astype("float64")
    return combined[list(TIDY_COLUMNS)], problems


def combined_results(runs_dir_: str | Path) -> pd.DataFrame:
    """The paper's reported results and own completed runs' test metrics in one tidy frame.

    Columns: model, regime, dataset, test_set, metric, value, source, origin, data. Paper rows come
    first (``source`` "paper (Table S1)" ...; Table S4's parameter counts are left out because they
    describe architectures, not results: see ``paper.paper_parameter_counts``), then runs newest
    first (``source`` = run name, ``data`` = the folder it was trained on). Runs whose files cannot
    be read are left out; ``combined_results_with_problems`` says which.
    """
    return combined_results_with_problems(runs_dir_)[0]


def own_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a tidy frame that come from own runs."""
    return frame[frame["origin"] == RUN]


def has_own_runs(frame: pd.DataFrame) -> bool:
    return bool((frame["origin"] == RUN).any())


def run_data_notes(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per own run in ``frame``: source, model, regime, dataset, the data it was trained on,
    and whether that is the demo data; for the caption that says own numbers are not the paper's."""
    own = own_runs(frame)
    notes = own.drop_duplicates("source")[["source", "model", "regime", "dataset", "data"]].reset_index(drop=True)
    notes["demo_data"] = notes["data"].map(is_demo_data).astype(bool)
    return notes


# --------------------------------------------------------------------------------------------
# Ordering shared by every table
# --------------------------------------------------------------------------------------------


def _model_rank(model: str) -> tuple[int, str]:
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


def _regime_rank(regime: str) -> tuple[int, str]:
    return (paper.REGIMES.index(regime), "") if regime in paper.REGIMES else (len(paper.REGIMES), str(regime))


def test_set_order(test_sets: Iterable[str]) -> list[str]:
    """The paper's three test sets first (test_in, test_out_pet, test_out_nopet), then others by name."""
    present = set(test_sets)
    return [t for t in paper.TEST_SETS if t in present] + sorted(present - set(paper.TEST_SETS))


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


def _row_sort_key(model: str, regime: str, origin: str, position: int) -> tuple:
    # Table S1's order: regime first (all transfer rows, then scratch, then combi), architectures in
    # registry order within a regime; the paper's row before own runs, runs in the frame's order.
    return (_regime_rank(regime), _model_rank(model), 0 if origin == PAPER else 1, position)


# --------------------------------------------------------------------------------------------
# The results grid (Tables S1-S3 laid side by side)
# --------------------------------------------------------------------------------------------


def results_grid(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric laid out like the paper: a row per (model, regime, origin, source), a column per
    (dataset, test_set).

    Rows follow Table S1 (transfer, scratch, combi; architectures in registry order; an own run under
    the paper's row of the same configuration). Columns: bg then no_bg, each with test_in,
    test_out_pet, test_out_nopet and then any other test sets own runs were evaluated on; columns
    with no value at all are dropped (Table 1 only has bg x test_out_*). Cells without a number are NaN.
    """
    if metric not in frame["metric"].unique():
        raise ValueError(f"no {metric!r} values; metrics present: {sorted(frame['metric'].unique())}")
    selected = frame[frame["metric"] == metric].copy()
    selected["row_source"] = row_labels(selected)
    keys = ["model", "regime", "origin", "row_source"]
    grid = selected.groupby(keys + ["dataset", "test_set"], sort=False)["value"].first().unstack(["dataset", "test_set"])
    grid.index = grid.index.set_names(list(ROW_LEVELS))

    columns = pd.MultiIndex.from_product([dataset_order(selected["dataset"]), test_set_order(selected["test_set"])], names=list(COLUMN_LEVELS))
    grid = grid.reindex(columns=columns).dropna(axis=1, how="all")

    first_seen = {key: position for position, key in enumerate(dict.fromkeys(grid.index))}
    order = sorted(grid.index, key=lambda key: _row_sort_key(key[0], key[1], key[2], first_seen[key]))
    return grid.loc[order].astype("float64")


def filter_grid(
    grid: pd.DataFrame,
    models: Iterable[str] | None = None,
    regimes: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows of a grid whose model, regime and source are among those given (None keeps all).

    ``sources`` holds run names and/or ``"paper"``, which stands for every paper row whatever tables
    it draws on, so a source filter survives switching metrics (Table 1's rows are labelled differently).
    """
    keep = pd.Series(True, index=grid.index)
    for level, allowed in (("model", models), ("regime", regimes)):
        if allowed is not None:
            keep &= grid.index.get_level_values(level).isin(list(allowed))
    if sources is not None:
        allowed = set(sources)
        is_paper = grid.index.get_level_values("origin") == PAPER
        keep &= (is_paper & (PAPER in allowed)) | grid.index.get_level_values("source").isin(list(allowed))
    return grid[keep.to_numpy()]


def source_choices(frame: pd.DataFrame) -> list[str]:
    """What a source filter offers: "paper", then each own run's name (newest first)."""
    return [PAPER, *dict.fromkeys(frame.loc[frame["origin"] == RUN, "source"])]


def sort_grid(grid: pd.DataFrame, column: tuple[str, str] | None = None, descending: bool = True) -> pd.DataFrame:
    """The grid sorted by one (dataset, test_set) column, empty cells last; None keeps Table S1's order."""
    if column is None:
        return grid
    if column not in grid.columns:
        raise ValueError(f"no column {column!r}; columns are {list(grid.columns)}")
    return grid.sort_values(column, ascending=not descending, na_position="last", kind="stable")


def pin_row(grid: pd.DataFrame, row: tuple) -> pd.DataFrame:
    """The grid with ``row`` moved to the top, so a chosen baseline stays in view whatever the sort."""
    if row not in grid.index:
        raise ValueError(f"row {row!r} is not in the table")
    return pd.concat([grid.loc[[row]], grid.drop(index=[row])])


def difference_to(grid: pd.DataFrame, row: tuple) -> pd.DataFrame:
    """Every cell minus the same column's value in the baseline ``row`` (positive: better than it).

    A cell is NaN where either it or the baseline has no number; the baseline row itself becomes 0.
    """
    if row not in grid.index:
        raise ValueError(f"row {row!r} is not in the table")
    return grid - grid.loc[row]


def row_label(row: tuple) -> str:
    """A grid row key as one readable string, for selectors: "densenet121 · transfer · paper (Tables S1, S2, S3)"."""
    model, regime, _origin, source = row
    return f"{model} · {regime} · {source}"


# --------------------------------------------------------------------------------------------
# Generalisation: test_in against the out-of-distribution sets (Figs 1, 2)
# --------------------------------------------------------------------------------------------


def generalisation_drop(frame: pd.DataFrame, metric: str = "f_score") -> pd.DataFrame:
    """Per (model, regime, dataset, origin, source): the test_in value, each out-of-distribution value
    and the drop ``test_in - OOD`` (positive: worse out of distribution).

    The paper's point (Section 3.1) is that all models look alike on test_in but differ, and drop a
    lot, on images from outside the training distribution; this table makes that drop explicit.
    Columns: model, regime, dataset, origin, source, test_in, <each OOD set>, drop_<each OOD set>;
    rows in Table S1's order, bg before no_bg.
    """
    selected = frame[frame["metric"] == metric].copy()
    if selected.empty:
        raise ValueError(f"no {metric!r} values; metrics present: {sorted(frame['metric'].unique())}")
    selected["row_source"] = row_labels(selected)
    keys = ["model", "regime", "dataset", "origin", "row_source"]
    wide = selected.groupby(keys + ["test_set"], sort=False)["value"].first().unstack("test_set")
    ood_sets = [t for t in test_set_order(selected["test_set"]) if t != IN_DISTRIBUTION]
    wide = wide.reindex(columns=[IN_DISTRIBUTION] + ood_sets)
    for ood in ood_sets:
        wide[f"drop_{ood}"] = wide[IN_DISTRIBUTION] - wide[ood]
    table = wide.reset_index().rename(columns={"row_source": "source"})
    table.columns.name = None

    datasets = dataset_order(table["dataset"])
    position = {key: i for i, key in enumerate(zip(table["model"], table["regime"], table["dataset"], table["origin"], table["source"]))}
    table["_key"] = [
        (_regime_rank(r), _model_rank(m), datasets.index(d), 0 if o == PAPER else 1, position[(m, r, d, o, s)])
        for m, r, d, o, s in zip(table["model"], table["regime"], table["dataset"], table["origin"], table["source"])
    ]
    return table.sort_values("_key").drop(columns="_key").reset_index(drop=True)


def drop_long(drops: pd.DataFrame) -> pd.DataFrame:
    """``generalisation_drop``'s table with one row per (row, OOD set): columns model, regime, dataset,
    origin, source, ood_set, test_in, ood_value, drop. For charts of the drop per model."""
    ood_sets = [c.removeprefix("drop_") for c in drops.columns if c.startswith("drop_")]
    keys = ["model", "regime", "dataset", "origin", "source"]
    parts = []
    for ood in ood_sets:
        part = drops[keys + [IN_DISTRIBUTION]].copy()
        part["ood_set"] = ood
        part["ood_value"] = drops[ood]
        part["drop"] = drops[f"drop_{ood}"]
        parts.append(part)
    columns = keys + ["ood_set", IN_DISTRIBUTION, "ood_value", "drop"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns].dropna(subset=["drop"]).reset_index(drop=True)


def short_run_name(name: str) -> str:
    """A run folder's name cut to its time and random suffix ("...-20261126-152103-05db" -> "152103-05db"),
    short enough for an axis label and still unique in practice."""
    parts = str(name).split("-")
    return "-".join(parts[-2:]) if len(parts) >= 3 else str(name)


def with_short_run_names(table: pd.DataFrame) -> pd.DataFrame:
    """A grid (index levels model, regime, origin, source) with each own run's source cut to "run 152103-05db"
    as on the charts, so the table fits a screen; for display only (exports keep the full names)."""
    keys = [(m, r, o, s if o == PAPER else f"run {short_run_name(s)}") for m, r, o, s in table.index]
    return table.set_axis(pd.MultiIndex.from_tuples(keys, names=table.index.names), axis=0)


def bar_label(frame: pd.DataFrame) -> pd.Series:
    """What a bar is called on a chart's axis: the model for the paper, "model (run 152103-05db)" for
    a run, so an own run never passes for the paper's number."""
    short = frame["source"].map(short_run_name)
    return frame["model"].where(frame["origin"] == PAPER, frame["model"] + " (run " + short + ")")


def figure_data(
    frame: pd.DataFrame,
    metrics: Sequence[str] = ("f_score", "accuracy"),
    regimes: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The tidy rows behind Figs 1 and 2: chosen metrics, regimes, datasets and models, with a
    ``label`` for the bar (see ``bar_label``) and rows in Table S1's order."""
    keep = frame["metric"].isin(list(metrics))
    for column, allowed in (("regime", regimes), ("dataset", datasets), ("model", models)):
        if allowed is not None:
            keep &= frame[column].isin(list(allowed))
    selected = frame[keep].copy()
    selected["label"] = bar_label(selected)
    selected["_key"] = [
        (_regime_rank(r), _model_rank(m), 0 if o == PAPER else 1, i)
        for i, (m, r, o) in enumerate(zip(selected["model"], selected["regime"], selected["origin"]))
    ]
    return selected.sort_values("_key").drop(columns="_key").reset_index(drop=True)


def regime_comparison_models(frame: pd.DataFrame) -> list[str]:
    """Fig 2's architectures: those the paper also trained with scratch and combi (its four best transfer
    models), plus any model an own run trained with a regime other than transfer; registry order."""
    others = set(frame.loc[frame["regime"] != "transfer", "model"])
    return sorted(others, key=_model_rank)


def positive_precision_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: positive-class precision on the out-of-distribution sets for models trained on data_bg,
    with own runs (trained with background images) alongside; rows in Table 1's order."""
    selected = frame[(frame["metric"] == "positive_precision") & (frame["dataset"] == "bg") & (frame["test_set"] != IN_DISTRIBUTION)]
    if selected.empty:
        raise ValueError("no positive-class precision on an out-of-distribution set for a model trained with background images")
    grid = results_grid(selected, "positive_precision")
    return grid["bg"]


# --------------------------------------------------------------------------------------------
# Efficiency (Section 3.3, Fig 3)
# --------------------------------------------------------------------------------------------


class EfficiencyUnavailable(ValueError):
    """The gain cannot be computed for a selection; the message says why in plain words."""


@functools.cache
def _counted_parameters(arch: str) -> int:
    from wildvision.models import count_parameters

    return count_parameters(arch)


def parameter_counts(origin: str, models: Iterable[str]) -> dict[str, int]:
    """Parameter counts to weigh F against: the paper's Table S4 for the paper's numbers, our own
    registry's count (``models.count_parameters``, same 2-class head) for own runs."""
    if origin == PAPER:
        return paper.paper_parameter_counts()
    counts = {}
    for model in set(models):
        try:
            counts[model] = _counted_parameters(model)
        except ValueError:  # an architecture this version of the registry does not know: no count, no gain
            continue
    return counts


def _check_origin(origin: str) -> None:
    if origin not in ORIGINS:
        raise ValueError(f"origin={origin!r} is not one of {list(ORIGINS)}")


def efficiency_points(frame: pd.DataFrame, origin: str, test_set: str, dataset: str, regime: str) -> pd.DataFrame:
    """F-score and parameter count per model for one selection, baseline included (for the scatter).

    Columns: model, f_score, params, source. Where a model has several own runs, the first in the
    frame is used (runs are newest first), as in ``paper.gain_from_results``; ``source`` names it.
    """
    _check_origin(origin)
    rows = frame[
        (frame["origin"] == origin)
        & (frame["metric"] == "f_score")
        & (frame["test_set"] == test_set)
        & (frame["dataset"] == dataset)
        & (frame["regime"] == regime)
    ].drop_duplicates("model")
    counts = parameter_counts(origin, rows["model"]) if not rows.empty else {}
    points = pd.DataFrame(
        {
            "model": rows["model"].to_numpy(),
            "f_score": rows["value"].to_numpy(dtype="float64"),
            "params": pd.array([counts.get(m) for m in rows["model"]], dtype="Int64"),
            "source": rows["source"].to_numpy(),
        }
    )
    points["_rank"] = [_model_rank(m) for m in points["model"]]
    return points.sort_values("_rank").drop(columns="_rank").reset_index(drop=True)


def efficiency_table(
    frame: pd.DataFrame,
    origin: str,
    test_set: str,
    dataset: str,
    regime: str,
    baseline: str = paper.BASELINE,
) -> pd.DataFrame:
    """Section 3.3's gain over SqueezeNet for one selection of the paper's numbers or own runs.

    Wraps ``paper.gain_from_results`` with the right parameter counts (Table S4 for the paper, the
    registry's count for runs). Columns: rank, model, f_score, params, extra_params, gain (F per
    extra parameter), gain_per_million, source; highest gain first, baseline left out.

    Raises ``EfficiencyUnavailable`` (a ValueError) with a plain message when the selection has no
    F-scores or no SqueezeNet baseline (the paper ran scratch and combi without SqueezeNet), so a
    page can show the message instead of a traceback.
    """
    points = efficiency_points(frame, origin, test_set, dataset, regime)
    who = "the paper reports" if origin == PAPER else "your completed runs have"
    what = f"test set {test_set}, dataset {dataset}, regime {regime}"
    if points.empty:
        raise EfficiencyUnavailable(f"No F-scores for {what}: {who} none for this combination.")
    if baseline not in set(points["model"]):
        with_baseline = _regimes_with(frame, origin, baseline, test_set, dataset)
        raise EfficiencyUnavailable(
            f"No {baseline} (SqueezeNet) baseline for {what}, so the gain over it is undefined: "
            f"{who} SqueezeNet F-scores here only for "
            f"{'the ' + with_baseline + ' regime' if with_baseline else 'no regime'}. "
            f"Models in this selection: {', '.join(points['model'])}."
        )
    selection = frame[frame["origin"] == origin]
    counts = parameter_counts(origin, points["model"])
    label = "the paper" if origin == PAPER else "own runs"
    try:
        gains = paper.gain_from_results(selection, test_set, dataset, regime, counts, label, baseline)
    except ValueError as error:  # e.g. two architectures with equal parameter counts
        raise EfficiencyUnavailable(str(error)) from error
    base_params = counts[baseline]
    gains["extra_params"] = gains["params"] - base_params
    gains["gain_per_million"] = gains["gain"] * 1e6
    gains["source"] = gains["model"].map(dict(zip(points["model"], points["source"])))
    gains.insert(0, "rank", range(1, len(gains) + 1))
    return gains[["rank", "model", "f_score", "params", "extra_params", "gain", "gain_per_million", "source"]]


def gain_headline(gains: pd.DataFrame, baseline_f: float, selection: str, baseline: str = paper.BASELINE) -> str:
    """One Markdown sentence on an ``efficiency_table``: which architecture gains most per extra parameter,
    or, plainly, that none beats SqueezeNet (every larger model's F-score at or below its ``baseline_f``)."""
    if gains.empty:
        return f"Only {baseline} itself has an F-score for {selection}: there is nothing to rank against it."
    best = gains.iloc[0]
    model, f, gain = best["model"], format_value(best["f_score"]), format_gain(best["gain_per_million"])
    base = format_value(baseline_f)
    if best["gain"] > 0:
        return (
            f"**{model}** has the highest gain for {selection}: {gain} F-score per million parameters beyond "
            f"SqueezeNet's (F-score {f} against SqueezeNet's {base})."
        )
    if best["gain"] == 0:
        tied = ", ".join(gains.loc[gains["gain"] == 0, "model"])
        return (
            f"**No architecture beats SqueezeNet** for {selection}: the best ({tied}) only equal its F-score of {base}, "
            "so their extra parameters gain nothing; all others score lower."
        )
    return (
        f"**No architecture beats SqueezeNet** for {selection}: every larger model has a lower F-score than its {base}, "
        f"so every gain is negative; the smallest loss is {model}'s ({f}, {gain} per million extra parameters)."
    )


def _regimes_with(frame: pd.DataFrame, origin: str, model: str, test_set: str, dataset: str) -> str:
    rows = frame[
        (frame["origin"] == origin)
        & (frame["metric"] == "f_score")
        & (frame["model"] == model)
        & (frame["test_set"] == test_set)
        & (frame["dataset"] == dataset)
    ]
    return ", ".join(r for r in paper.REGIMES if r in set(rows["regime"]))


def inference_times(runs_dir_: str | Path) -> pd.DataFrame:
    """Measured evaluation time per image of own completed runs, with the F-score on the same set.

    results.json records, per test set, the wall time of the whole evaluation (``eval_time_s``,
    loading and decoding the images included) and the number of images; their ratio is what a
    user waits per photo on that machine. Columns: source, model, regime, dataset, test_set,
    n_images, eval_time_s, seconds_per_image, images_per_second, f_score. Runs newest first.
    """
    rows = []
    for run in runs.list_runs(runs_dir_):
        if run.state != "completed" or not (run.path / runs.RESULTS).is_file():
            continue
        try:
            results = runs.read_json(run.path / runs.RESULTS)
        except runs.RunError:
            continue
        train = run.config.get("train", {})
        for test_set, metrics in results.get("test_sets", {}).items():
            n_images, seconds = metrics.get("n_images"), metrics.get("eval_time_s")
            if not n_images or seconds is None:
                continue
            rows.append(
                {
                    "source": run.name,
                    "model": train.get("arch"),
                    "regime": train.get("regime"),
                    "dataset": "bg" if train.get("with_background") else "no_bg",
                    "test_set": test_set,
                    "n_images": int(n_images),
                    "eval_time_s": float(seconds),
                    "seconds_per_image": float(seconds) / int(n_images),
                    "images_per_second": int(n_images) / float(seconds) if seconds else math.inf,
                    "f_score": float(metrics.get("f_score", math.nan)),
                }
            )
    columns = ["source", "model", "regime", "dataset", "test_set", "n_images", "eval_time_s", "seconds_per_image", "images_per_second", "f_score"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# One run in detail
# --------------------------------------------------------------------------------------------


def learning_curves(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch curves of a run in long form: epoch, phase, series, kind, value.

    ``series`` is "training loss", "validation loss" or "validation F-score"; ``kind`` is "loss"
    or "F-score", so a page can draw the losses and the F-score on separate axes. Validation is
    test_in, the set the best epoch is chosen on.
    """
    names = {"train_loss": ("training loss", "loss"), "val_loss": ("validation loss", "loss"), "val_f_score": ("validation F-score", "F-score")}
    rows = []
    for row in runs.read_metrics(Path(run_dir)):
        for key, (series, kind) in names.items():
            if row.get(key) is not None:
                rows.append({"epoch": int(row["epoch"]), "phase": row.get("phase", ""), "series": series, "kind": kind, "value": float(row[key])})
    return pd.DataFrame(rows, columns=["epoch", "phase", "series", "kind", "value"])


def run_results_table(run_dir: str | Path) -> pd.DataFrame:
    """A completed run's test metrics, one row per test set (test_in first): accuracy, f_score,
    precision, recall, positive_precision, n_images, eval_time_s, seconds_per_image. Empty without results."""
    run_dir = Path(run_dir)
    columns = [*runs.RESULT_METRICS, "n_images", "eval_time_s", "seconds_per_image"]
    if not (run_dir / runs.RESULTS).is_file():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="test_set"))
    test_sets = runs.read_json(run_dir / runs.RESULTS).get("test_sets", {})
    rows = {}
    for name in test_set_order(test_sets):
        metrics = test_sets[name]
        row = {key: float(metrics[key]) if metrics.get(key) is not None else math.nan for key in (*runs.RESULT_METRICS, "eval_time_s")}
        row["n_images"] = int(metrics.get("n_images") or 0)
        row["seconds_per_image"] = row["eval_time_s"] / row["n_images"] if row["n_images"] else math.nan
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("test_set")


def run_threshold(run_dir: str | Path) -> float | None:
    """The decision threshold a completed run chose on test_in (results.json's ``threshold.threshold``);
    None for a run without results or one written before thresholds were recorded."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.RESULTS).is_file():
        return None
    rule = runs.read_json(run_dir / runs.RESULTS).get("threshold")
    value = rule.get("threshold") if isinstance(rule, dict) else None
    return float(value) if value is not None else None


def confusion_matrices(run_dir: str | Path, at_threshold: bool = False) -> dict[str, pd.DataFrame]:
    """Each test set's confusion matrix of a completed run, labelled (rows: true class, columns: predicted).

    results.json keeps two per test set, both [[TN, FP], [FN, TP]] with the positive class (captive /
    for sale) second: ``confusion_matrix`` at 0.5 (the paper's metrics) and
    ``at_threshold.confusion_matrix`` at the run's own decision threshold (``run_threshold``), the one
    ``predict`` flags with. ``at_threshold`` picks the second; test sets without it are left out.
    Returns {} for a run without results.
    """
    run_dir = Path(run_dir)
    if not (run_dir / runs.RESULTS).is_file():
        return {}
    config = runs.read_json(run_dir / runs.CONFIG) if (run_dir / runs.CONFIG).is_file() else {}
    positive = config.get("train", {}).get("positive", "positive")
    classes = ["negative", f"positive ({positive})"]
    matrices = {}
    for test_set, metrics in runs.read_json(run_dir / runs.RESULTS).get("test_sets", {}).items():
        source = (metrics.get("at_threshold") or {}) if at_threshold else metrics
        matrix = source.get("confusion_matrix")
        if matrix is None:
            continue
        matrices[test_set] = pd.DataFrame(
            matrix,
            index=pd.Index(classes, name="true class"),
            columns=pd.Index(classes, name="predicted class"),
        )
    return {name: matrices[name] for name in test_set_order(matrices)}


# --------------------------------------------------------------------------------------------
# Colours and exports
# --------------------------------------------------------------------------------------------


def colour_scaled(table: pd.DataFrame, diverging: bool = False) -> pd.io.formats.style.Styler:
    """The table with its cells coloured on one scale over the whole table (matplotlib colour maps).

    Plain values run from light to dark blue; differences to a baseline (``diverging``) run red below
    0, white at 0 and blue above, symmetric so equal gains and losses look equally strong. Empty cells
    stay uncoloured and the text colour follows the background.
    """
    if diverging:
        bound = float(np.nanmax(np.abs(table.to_numpy(dtype="float64", na_value=np.nan)), initial=0.0)) or 1.0
        styled = table.style.background_gradient(cmap="RdBu", axis=None, vmin=-bound, vmax=bound)
    else:
        styled = table.style.background_gradient(cmap="Blues", axis=None)
    return styled.highlight_null(props="background-color: transparent; color: inherit")  # pandas paints empty cells black


def format_difference(value: float, decimals: int = 3) -> str:
    """A difference to a baseline with its sign ("+0.020", "-0.150"); "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    return f"{value:+.{decimals}f}"


def format_value(value: float, decimals: int = 4) -> str:
    """A number as the tables print it: up to ``decimals`` decimals, at least two, no trailing zeros
    beyond that ("0.9486", "0.94", "0.957"), so the paper's printed digits survive; "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    text = f"{value:.{decimals}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


def table_decimals(table: pd.DataFrame, most: int = 4, least: int = 2) -> int:
    """One number of decimals for a whole table: the fewest (at least ``least``, at most ``most``) that
    print every number in it as stored, so no digit the paper printed is lost ("0.9486" needs 4) and
    the columns line up ("0.940", "0.957", not "0.94", "0.957"). Own runs' measurements, which have
    more digits than that, get ``most``.
    """
    values = table.select_dtypes("number").to_numpy(dtype="float64", na_value=np.nan).ravel()
    values = values[np.isfinite(values)]
    for decimals in range(least, most):
        if np.all(np.abs(np.round(values, decimals) - values) < 1e-9):
            return decimals
    return most


def format_fixed(value: float, decimals: int, signed: bool = False) -> str:
    """A number with exactly ``decimals`` decimals ("0.940"), with its sign when ``signed`` ("+0.020",
    "-0.150", "+0.000" for an exact tie); "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def fixed_formatter(table: pd.DataFrame, signed: bool = False):
    """``format_fixed`` with the table's own ``table_decimals``: one formatter per table, for Styler.format."""
    decimals = table_decimals(table)
    return lambda value: format_fixed(value, decimals, signed)


def format_gain(value: float, significant: int = 3) -> str:
    """A gain (F-score per million extra parameters) in plain decimals with ``significant`` significant
    digits, whatever its size: "+0.0177", "+0.0000234", "-0.00547"; exactly "0" for no gain at all,
    so a small non-zero gain never reads "+0.0000". "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    if value == 0:
        return "0"
    rounded = _round_significant(value, significant)  # first, so 0.000999999 becomes 0.00100, not 0.001000
    return f"{rounded:+.{max(0, significant - 1 - math.floor(math.log10(abs(rounded))))}f}"


def _round_significant(value: float, significant: int) -> float:
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, max(0, significant - 1 - math.floor(math.log10(abs(value)))))


def _flat_label(key: object) -> str:
    return " / ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def to_csv(df: pd.DataFrame, significant: int = 6) -> str:
    """CSV text of a table, one header row (a column MultiIndex becomes "bg / test_in") so spreadsheets
    read it directly; row index levels become ordinary columns.

    Floats are rounded to ``significant`` significant digits (whole numbers keep all their digits),
    which removes the noise of binary arithmetic (0.75 - 0.64 is 0.10999999999999999 in floating
    point; the CSV says 0.11) and keeps more digits than any table prints.
    """
    flat = df.copy()
    for column in flat.columns[[pd.api.types.is_float_dtype(t) for t in flat.dtypes]]:
        flat[column] = flat[column].map(lambda v: _round_significant(v, significant))
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [_flat_label(c) for c in flat.columns]
    has_index = not (isinstance(flat.index, pd.RangeIndex) and flat.index.name is None)
    return flat.to_csv(index=has_index)


#: Characters LaTeX treats specially, and non-ASCII ones the dashboard writes, as LaTeX text.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "·": r"\textperiodcentered{}",
    "–": "--",
    "—": "---",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "×": r"\texttimes{}",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "…": r"\dots{}",
}


def latex_escape(text: str) -> str:
    """Plain text (a caption, a run name) as LaTeX that prints it literally: squeezenet1_0 ->
    squeezenet1\\_0, 95% -> 95\\%, and the few non-ASCII marks the pages use (·, –, “ ”) as LaTeX commands."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str | None = None, signed: bool = False, decimals: int | None = None) -> str:
    """A booktabs LaTeX table of ``df`` (needs only \\usepackage{booktabs}), ready for a paper or slide.

    Every float is printed with one number of decimals for the whole table (``table_decimals`` unless
    ``decimals`` is given; with a sign when ``signed``, for differences), whole-number columns as whole
    numbers, "--" for empty cells. The caption is plain text and is escaped (``latex_escape``), as are
    labels in the index and header (test\\_in). Row MultiIndexes print each label once, on its first
    row, and column MultiIndexes become \\multicolumn headers, as in the paper's tables.
    """
    numeric = list(df.select_dtypes("number").columns)
    whole = [c for c in numeric if pd.api.types.is_integer_dtype(df[c].dtype)]
    floats = [c for c in numeric if c not in set(whole)]
    decimals = table_decimals(df[floats]) if decimals is None else decimals
    styler = df.style.format(lambda v: format_fixed(v, decimals, signed), subset=floats, na_rep="--", escape="latex")
    if whole:
        styler = styler.format("{:d}", subset=whole, na_rep="--")
    other = [c for c in df.columns if c not in set(numeric)]
    if other:
        styler = styler.format(na_rep="--", escape="latex", subset=other)
    styler = styler.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    styler = styler.format_index_names(escape="latex", axis=0).format_index_names(escape="latex", axis=1)
    if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
        styler = styler.hide(axis="index")
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        multirow_align="naive",  # no \multirow: the multirow package is not needed
        caption=latex_escape(caption) if caption else None,
        label=label,
        position_float="centering" if caption or label else None,
        environment="table" if caption or label else None,
    )
    return "% needs \\usepackage{booktabs}\n" + latex


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------


def chart_config(filename: str) -> dict:
    """The Plotly config every analysis chart gets: its camera button saves a PNG at twice the on-screen
    resolution (sharp in a slide deck) under ``filename`` (made file-name safe, ".png" added by the
    browser), and no Plotly logo in the toolbar. Pass it as ``st.plotly_chart(figure, config=...)``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(filename)).strip("-.") or "wildvision-chart"
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": safe, "scale": 2}}


def label_positions(x: Sequence[float], y: Sequence[float], log_x: bool = True, near_x: float = 0.2, near_y: float = 0.05) -> list[str]:
    """Where each point's text label goes on a scatter: above it, or below it when another point whose label is
    above sits close by (within ``near_x`` decades, or units without ``log_x``, and ``near_y``) and higher up, so
    two nearby labels (vgg11_bn and vgg19_bn) do not print over each other."""
    xs = [math.log10(float(v)) if log_x else float(v) for v in x]
    ys = [float(v) for v in y]
    positions = ["top center"] * len(xs)
    for i in sorted(range(len(xs)), key=lambda k: -ys[k]):  # highest first: they keep their label above
        for j in range(len(xs)):
            higher = ys[j] > ys[i] or (ys[j] == ys[i] and j < i)
            if j != i and higher and positions[j] == "top center" and abs(xs[j] - xs[i]) < near_x and abs(ys[j] - ys[i]) < near_y:
                positions[i] = "bottom center"
                break
    return positions


#: One font for every chart, named explicitly: the page's web font (Streamlit's theme) is not available when
#: Plotly draws the PNG, so a fallback font wider than the one measured overflowed legends ("positive gai").
CHART_FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"


def export_ready(figure):
    """The Plotly figure with ``CHART_FONT`` for all its text (layout, title, facet and subplot titles), so
    its PNG export (``chart_config``) lays out exactly as on screen; returns it."""
    figure.update_layout(font_family=CHART_FONT, title_font_family=CHART_FONT)
    figure.update_annotations(font_family=CHART_FONT)
    return figure


def f_axis_range(values: Iterable[float], headroom: float = 0.05) -> list[float]:
    """A y-axis range for a scatter of F-scores (fractions in [0, 1]): a little below the lowest point
    and above the highest, on tenths, with ``headroom`` for the point labels above the markers, but never
    below 0 or beyond 1 + ``headroom`` (Plotly's own range for one or two points runs far past 1)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return [0.0, 1.0 + headroom]
    low = max(0.0, math.floor((min(finite) - 0.05) * 10) / 10)
    high = min(1.0 + headroom, math.ceil((max(finite) + 0.05) * 10) / 10 + headroom)
    return [round(low, 2), round(high, 2)]
