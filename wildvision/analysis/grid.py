"""The results grid: the paper's Tables S1-S3 laid side by side, own runs under the paper's rows, and Table 1."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from wildvision.analysis.tidy import COLUMN_LEVELS, PAPER, ROW_LEVELS, RUN, dataset_order, row_labels, row_sort_key, short_run_name
from wildvision.catalog import IN_DISTRIBUTION, test_set_order


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
    order = sorted(grid.index, key=lambda key: row_sort_key(key[0], key[1], key[2], first_seen[key]))
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


def with_short_run_names(table: pd.DataFrame) -> pd.DataFrame:
    """A grid (index levels model, regime, origin, source) with each own run's source cut to "run 152103-05db"
    as on the charts, so the table fits a screen; for display only (exports keep the full names)."""
    keys = [(m, r, o, s if o == PAPER else f"run {short_run_name(s)}") for m, r, o, s in table.index]
    return table.set_axis(pd.MultiIndex.from_tuples(keys, names=table.index.names), axis=0)


def positive_precision_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1: positive-class precision on the out-of-distribution sets for models trained on data_bg,
    with own runs (trained with background images) alongside; rows in Table 1's order."""
    selected = frame[(frame["metric"] == "positive_precision") & (frame["dataset"] == "bg") & (frame["test_set"] != IN_DISTRIBUTION)]
    if selected.empty:
        raise ValueError("no positive-class precision on an out-of-distribution set for a model trained with background images")
    grid = results_grid(selected, "positive_precision")
    return grid["bg"]
