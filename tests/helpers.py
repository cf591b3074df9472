"""What several test modules share: run folders written as training leaves them, and the command line run as a user runs it.

Fixtures live in conftest.py; plain helpers live here, so test modules never import each other.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from wildvision import catalog, runs
from wildvision.analysis.tidy import combined_results
from wildvision.evaluate import choose_threshold, compute_metrics
from wildvision.models import count_parameters
from wildvision.screening.config import SCORES


def run_cli(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`python -m wildvision ARGS...` in a fresh process, as a user types it."""
    return subprocess.run([sys.executable, "-m", "wildvision", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def make_run(
    runs_dir: Path,
    arch: str = "squeezenet1_0",
    regime: str = "transfer",
    with_background: bool = True,
    test_sets: dict[str, dict] | None = None,
    state: str = "completed",
    data: str = "/data/train",
    epochs: int = 3,
    scores: dict[str, tuple[list[int], list[float]]] | None = None,
    target_precision: float = 0.95,
    calibrate_on: str | None = "test_in",
) -> Path:
    """A run folder as `python -m wildvision train` leaves it (without model weights), written with runs.py.

    With `scores` ({test set: (labels, positive-class probabilities)}), results.json is computed from
    them as train.evaluate_run_model does (evaluate.choose_threshold): the paper's metrics at 0.5, the decision
    threshold chosen for `target_precision` on `calibrate_on` (by default test_in itself without the 0.5 floor, so
    thresholds below 0.5 can be tested; None applies the floor as a default run does), each set's metrics and
    confusion matrix at that threshold;
    scores.json is written too, and a checkpoint.pt holding the threshold (no weights), so the
    threshold sliders find the run. Otherwise `test_sets` gives each set's numbers directly (no threshold).
    """
    if scores is not None:
        test_sets = {}
        for name, (labels, probabilities) in scores.items():
            metrics = compute_metrics(labels, probabilities)
            test_sets[name] = metrics | {"eval_time_s": 0.05 * metrics["n_images"]}
        stored = {name: {"labels": labels, "probabilities": probabilities} for name, (labels, probabilities) in scores.items()}
        rule = choose_threshold(stored, target_precision, calibrate_on=calibrate_on)
        for name, (labels, probabilities) in scores.items():
            at = compute_metrics(labels, probabilities, rule["threshold"])
            test_sets[name]["at_threshold"] = {
                k: at[k] for k in ("threshold", "positive_precision", "positive_recall", "accuracy", "f_score", "confusion_matrix")
            }
    test_sets = (
        test_sets
        if test_sets is not None
        else {
            "test_in": {"f_score": 0.9, "accuracy": 0.91, "confusion_matrix": [[40, 2], [5, 33]], "n_images": 80, "eval_time_s": 4.0},
            "test_out_pet": {"f_score": 0.7, "accuracy": 0.72, "confusion_matrix": [[30, 10], [12, 28]], "n_images": 80, "eval_time_s": 8.0},
        }
    )
    dataset = "bg" if with_background else "no_bg"
    run_dir = runs.create_run_dir(runs_dir, f"{arch}-{regime}-{dataset}")
    train = {
        "arch": arch,
        "regime": regime,
        "with_background": with_background,
        "data": data,
        "epochs": epochs,
        "lr": 0.001,
        "batch_size": 75,
        "positive": "captive",
        "tests": {n: f"/data/{n}" for n in test_sets if n != "test_in"},
        "target_precision": target_precision,
    }
    runs.write_json_atomic(run_dir / runs.CONFIG, {"train": train, "dataset": dataset, "n_parameters": count_parameters(arch), "created_at": runs.now()})
    runs.write_status(run_dir, "queued", epoch=0, max_epochs=epochs)
    for epoch in range(1, epochs + 1):
        runs.append_metrics(
            run_dir,
            {
                "epoch": epoch,
                "phase": "head",
                "train_loss": 1.0 / epoch,
                "val_loss": 0.8 / epoch,
                "val_f_score": min(0.5 + 0.1 * epoch, 0.95),
                "val_accuracy": min(0.5 + 0.1 * epoch, 0.95),
                "epoch_time_s": 10.0,
                "best": True,
            },
        )
    if state == "completed":
        results = {}
        for name, given in test_sets.items():
            (_, fp), (_, tp) = given["confusion_matrix"]
            results[name] = {
                "accuracy": given["accuracy"],
                "f_score": given["f_score"],
                "precision": given.get("precision", given["f_score"]),
                "recall": given.get("recall", given["accuracy"]),
                "positive_precision": tp / (tp + fp),
                "confusion_matrix": given["confusion_matrix"],
                "n_images": given["n_images"],
                "eval_time_s": given["eval_time_s"],
                "loss": 0.5,
                "skipped": [],
            } | ({"at_threshold": given["at_threshold"]} if "at_threshold" in given else {})
        threshold = {"threshold": rule} if scores is not None else {}
        runs.write_json_atomic(run_dir / runs.RESULTS, {"best_epoch": epochs, "epochs_run": epochs, **threshold, "test_sets": results})
        if scores is not None:
            runs.write_json_atomic(
                run_dir / runs.SCORES, {n: {"labels": list(map(int, y)), "probabilities": list(map(float, p))} for n, (y, p) in scores.items()}
            )
            runs.save_torch_atomic(run_dir / runs.CHECKPOINT, {"arch": arch, "threshold": rule["threshold"], "threshold_rule": rule})
    runs.write_status(run_dir, state, epoch=epochs, best_epoch=epochs)
    return run_dir


def scores_with(tn: int, fp: int, fn_low: int, fn_between: int, tp: int, between: float = 0.3) -> tuple[list[int], list[float]]:
    """Labels and probabilities whose confusion matrix at 0.5 is [[tn, fp], [fn_low + fn_between, tp]]: the
    `fn_between` positives score `between` (< 0.5), so a lower threshold turns them into true positives."""
    labels = [0] * (tn + fp) + [1] * (fn_low + fn_between + tp)
    probabilities = [0.1] * tn + [0.9] * fp + [0.1] * fn_low + [between] * fn_between + [0.9] * tp
    return labels, probabilities


def frame_of(runs_dir: Path) -> pd.DataFrame:
    """The paper's and the runs' numbers as the dashboard's analysis pages get them."""
    return combined_results(catalog.list_models(runs_dir, include_default=False))


def read_scores(screen_dir: Path) -> list[dict]:
    """A screening job's scores.csv, one dict a row."""
    with open(screen_dir / SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


PAPER_ROW = "paper (Tables S1, S2, S3)"  # the source column of the paper's rows in the results grid


def truth(path: str) -> str:
    """A demo photo's class by its class folder: what a careful reviewer decides on the demo proxy."""
    return "captive" if "/captive/" in path else "not_captive"


def decide_truly(job: Path, paths: list[str], reviewer: str = "Ana") -> None:
    """Decide each photo of a screening job by its class folder, as the Review page would."""
    from wildvision.screening import review

    found = review.read_job(job)
    items = review.with_decisions(review.read_items(job), {})
    for path in paths:
        review.decide_photo(found, items, path, truth(path), reviewer)


def pdf_page_sizes(pdf: Path) -> list[tuple[float, float]]:
    """Each page's width and height in points, as poppler's pdfinfo reads the PDF."""
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True, check=True).stdout
    return [(float(w), float(h)) for w, h in re.findall(r"Page +\d+ size: +([\d.]+) x ([\d.]+) pts", info)]
