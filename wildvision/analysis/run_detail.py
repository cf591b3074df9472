"""One model in detail: its learning curves, its results per test set and its confusion matrices."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wildvision import runs
from wildvision.catalog import RESULT_METRICS, ModelRecord


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


def results_table(record: ModelRecord) -> pd.DataFrame:
    """A model's test metrics, one row per test set (test_in first): accuracy, f_score, precision, recall,
    positive_precision, n_images, eval_time_s, seconds_per_image. Empty without results."""
    columns = [*RESULT_METRICS, "n_images", "eval_time_s", "seconds_per_image"]
    rows = {
        name: {metric: result.metric(metric) for metric in RESULT_METRICS}
        | {"n_images": result.n_images, "eval_time_s": result.eval_time_s, "seconds_per_image": result.seconds_per_image}
        for name, result in record.results.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("test_set")
    return table.astype({"eval_time_s": "float64", "seconds_per_image": "float64"}) if rows else table


def confusion_matrices(record: ModelRecord, at_threshold: bool = False) -> dict[str, pd.DataFrame]:
    """Each test set's confusion matrix, labelled (rows: true class, columns: predicted; positive class second).

    Two are kept per test set: at 0.5 (the paper's metrics) and, with ``at_threshold``, at the model's own
    decision threshold, the one ``predict`` flags with; test sets without the chosen one are left out.
    """
    classes = ["negative", f"positive ({record.positive})"]
    matrices = {}
    for name, result in record.results.items():
        matrix = result.confusion_at_threshold if at_threshold else result.confusion
        if matrix is not None:
            matrices[name] = pd.DataFrame(matrix, index=pd.Index(classes, name="true class"), columns=pd.Index(classes, name="predicted class"))
    return matrices
