"""Generalisation: test_in against the out-of-distribution sets (the paper's Section 3.1, Figs 1 and 2)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from wildvision.analysis.tidy import PAPER, bar_label, dataset_order, model_rank, regime_rank, row_labels
from wildvision.catalog import IN_DISTRIBUTION, test_set_order


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
        (regime_rank(r), model_rank(m), datasets.index(d), 0 if o == PAPER else 1, position[(m, r, d, o, s)])
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
        (regime_rank(r), model_rank(m), 0 if o == PAPER else 1, i) for i, (m, r, o) in enumerate(zip(selected["model"], selected["regime"], selected["origin"]))
    ]
    return selected.sort_values("_key").drop(columns="_key").reset_index(drop=True)


def regime_comparison_models(frame: pd.DataFrame) -> list[str]:
    """Fig 2's architectures: those the paper also trained with scratch and combi (its four best transfer
    models), plus any model an own run trained with a regime other than transfer; registry order."""
    others = set(frame.loc[frame["regime"] != "transfer", "model"])
    return sorted(others, key=model_rank)
