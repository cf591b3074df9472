"""wildvision.analysis: the paper's numbers and own runs in the paper's layout.

Own runs are run folders written with wildvision.runs' own writers, following the run-folder
contract (config.json, status.json, metrics.jsonl, results.json), so the real reader
(wildvision.catalog) reads them; a CLI training run would take a minute here.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from wildvision import catalog, paper, runs
from wildvision.analysis.efficiency import EfficiencyUnavailable, efficiency_points, efficiency_table, gain_headline, inference_times
from wildvision.analysis.export import (
    CHART_FONT,
    EDGE,
    LEGEND_PAD,
    chart_config,
    colour_scaled,
    export_ready,
    f_axis_range,
    format_difference,
    format_fixed,
    format_gain,
    format_value,
    label_positions,
    latex_escape,
    table_decimals,
    to_csv,
    to_latex,
)
from wildvision.analysis.generalisation import drop_long, figure_data, generalisation_drop, regime_comparison_models
from wildvision.analysis.grid import difference_to, filter_grid, pin_row, positive_precision_table, results_grid, row_label, sort_grid, with_short_run_names
from wildvision.analysis.run_detail import confusion_matrices, learning_curves, results_table
from wildvision.analysis.tidy import combined_results, has_own_runs, own_runs, run_data_notes, short_run_name
from wildvision.catalog import runs_fingerprint
from wildvision.evaluate import choose_threshold, compute_metrics
from wildvision.models import count_parameters

PAPER_ROW = "paper (Tables S1, S2, S3)"


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


def frame_of(runs_dir: Path) -> pd.DataFrame:
    """The paper's and the runs' numbers as the dashboard's analysis pages get them."""
    return combined_results(catalog.list_models(runs_dir, include_default=False))


def scores_with(tn: int, fp: int, fn_low: int, fn_between: int, tp: int, between: float = 0.3) -> tuple[list[int], list[float]]:
    """Labels and probabilities whose confusion matrix at 0.5 is [[tn, fp], [fn_low + fn_between, tp]]: the
    `fn_between` positives score `between` (< 0.5), so a lower threshold turns them into true positives."""
    labels = [0] * (tn + fp) + [1] * (fn_low + fn_between + tp)
    probabilities = [0.1] * tn + [0.9] * fp + [0.1] * fn_low + [between] * fn_between + [0.9] * tp
    return labels, probabilities


@pytest.fixture(scope="module")
def paper_frame(tmp_path_factory) -> pd.DataFrame:
    return frame_of(tmp_path_factory.mktemp("no-runs"))


def test_paper_only_frame_holds_every_reported_result_labelled_with_its_table(paper_frame):
    reference = paper.reference_results()
    assert len(paper_frame) == int((reference["metric"] != "params").sum()) == 416
    assert set(paper_frame["origin"]) == {"paper"}
    assert set(paper_frame["source"]) == {"paper (Table S1)", "paper (Table S2)", "paper (Table S3)", "paper (Table 1)"}
    assert "params" not in set(paper_frame["metric"])
    row = paper_frame[(paper_frame["model"] == "vgg19_bn") & (paper_frame["regime"] == "combi") & (paper_frame["metric"] == "positive_precision")]
    assert row["value"].tolist() == [0.96, 0.96] and set(row["source"]) == {"paper (Table 1)"}


def test_grid_has_the_paper_24_configurations_by_3_test_sets_in_table_s1_order(paper_frame):
    grid = results_grid(paper_frame, "f_score")
    assert list(grid.columns) == [(d, t) for d in ("bg", "no_bg") for t in ("test_in", "test_out_pet", "test_out_nopet")]
    assert len(grid) == 16  # 8 transfer rows (bg and no_bg side by side), 4 scratch, 4 combi
    assert int(grid.notna().sum().sum()) == 24 * 3
    assert grid.index.names == ["model", "regime", "origin", "source"]
    assert set(grid.index.get_level_values("source")) == {PAPER_ROW}
    order = [(m, r) for m, r, _, _ in grid.index]
    assert order[:8] == [(m, "transfer") for m in paper.paper_parameter_counts()]  # Table S4 lists them in registry order
    assert order[8:] == [(m, r) for r in ("scratch", "combi") for m in ("densenet121", "densenet201", "vgg11_bn", "vgg19_bn")]
    assert grid[("no_bg", "test_in")].iloc[8:].isna().all()  # scratch and combi were trained on bg only
    assert grid.loc[("squeezenet1_0", "transfer", "paper", PAPER_ROW), ("no_bg", "test_in")] == pytest.approx(0.957)
    assert grid.loc[("vgg11_bn", "combi", "paper", PAPER_ROW), ("bg", "test_out_pet")] == pytest.approx(0.87)
    accuracy = results_grid(paper_frame, "accuracy")
    assert accuracy.loc[("alexnet", "transfer", "paper", PAPER_ROW), ("no_bg", "test_in")] == pytest.approx(0.9486)


def test_positive_precision_grid_keeps_only_table_1_columns(paper_frame):
    grid = results_grid(paper_frame, "positive_precision")
    assert list(grid.columns) == [("bg", "test_out_pet"), ("bg", "test_out_nopet")]
    assert len(grid) == 16 and set(grid.index.get_level_values("source")) == {"paper (Table 1)"}
    assert grid.loc[("alexnet", "transfer", "paper", "paper (Table 1)")].tolist() == [0.94, 0.95]
    table1 = positive_precision_table(paper_frame)
    assert list(table1.columns) == ["test_out_pet", "test_out_nopet"] and len(table1) == 16


def test_own_run_sits_under_the_paper_row_with_its_extra_test_sets(tmp_path):
    run_dir = make_run(
        tmp_path,
        test_sets={
            "test_in": {"f_score": 0.81, "accuracy": 0.82, "confusion_matrix": [[10, 1], [2, 9]], "n_images": 22, "eval_time_s": 1.1},
            "test_out_pet": {"f_score": 0.61, "accuracy": 0.62, "confusion_matrix": [[8, 3], [4, 7]], "n_images": 22, "eval_time_s": 2.2},
            "zoo_photos": {"f_score": 0.55, "accuracy": 0.56, "confusion_matrix": [[5, 5], [5, 5]], "n_images": 20, "eval_time_s": 1.0},
        },
    )
    frame = frame_of(tmp_path)
    own = frame[frame["origin"] == "run"]
    assert set(own["source"]) == {run_dir.name} and set(own["data"]) == {"/data/train"} and not own["demo"].any()
    f_in = own[(own["metric"] == "f_score") & (own["test_set"] == "test_in")]
    assert f_in[["model", "regime", "dataset", "value"]].values.tolist() == [["squeezenet1_0", "transfer", "bg", 0.81]]
    assert len(own) == 3 * len(catalog.RESULT_METRICS)

    grid = results_grid(frame, "f_score")
    assert list(grid.columns)[:4] == [("bg", "test_in"), ("bg", "test_out_pet"), ("bg", "test_out_nopet"), ("bg", "zoo_photos")]
    keys = list(grid.index)
    paper_at = keys.index(("squeezenet1_0", "transfer", "paper", PAPER_ROW))
    assert keys[paper_at + 1] == ("squeezenet1_0", "transfer", "run", run_dir.name)
    assert grid.loc[keys[paper_at + 1]].dropna().to_dict() == {("bg", "test_in"): 0.81, ("bg", "test_out_pet"): 0.61, ("bg", "zoo_photos"): 0.55}
    assert int(grid.xs("paper", level="origin").notna().sum().sum()) == 72  # the paper's cells are untouched


def test_runs_that_are_not_completed_do_not_appear(tmp_path):
    make_run(tmp_path, state="running")
    make_run(tmp_path, state="failed")
    frame = frame_of(tmp_path)
    assert not has_own_runs(frame)


def test_a_damaged_run_is_named_and_the_others_still_show(tmp_path):
    good = make_run(tmp_path, arch="densenet121")
    bad = make_run(tmp_path, arch="alexnet")
    (bad / runs.RESULTS).write_text("{ not json", encoding="utf-8")
    records = catalog.list_models(tmp_path, include_default=False)
    frame, problems = combined_results(records), catalog.problems(records)
    assert set(own_runs(frame)["source"]) == {good.name}
    assert len(problems) == 1 and bad.name in problems[0] and "left out" in problems[0]


def test_drop_from_test_in_equals_the_difference_of_the_paper_tables(paper_frame):
    drops = generalisation_drop(paper_frame, "f_score")
    row = drops[(drops["model"] == "densenet121") & (drops["regime"] == "transfer") & (drops["dataset"] == "bg")].iloc[0]
    reference = paper.reference_results()
    f = reference[
        (reference["model"] == "densenet121") & (reference["regime"] == "transfer") & (reference["dataset"] == "bg") & (reference["metric"] == "f_score")
    ]
    value = dict(zip(f["test_set"], f["value"]))
    assert (row["test_in"], row["test_out_pet"], row["test_out_nopet"]) == (0.91, 0.75, 0.71)
    assert row["drop_test_out_pet"] == pytest.approx(value["test_in"] - value["test_out_pet"]) == pytest.approx(0.16)
    assert row["drop_test_out_nopet"] == pytest.approx(0.20)
    assert len(drops) == 24
    # Section 3.1: training with background images generalises better; every transfer model drops less with bg
    transfer = drops[drops["regime"] == "transfer"].set_index(["model", "dataset"])["drop_test_out_pet"].unstack()
    assert (transfer["bg"] < transfer["no_bg"]).all()
    accuracy = generalisation_drop(paper_frame, "accuracy")
    squeeze = accuracy[(accuracy["model"] == "squeezenet1_0") & (accuracy["dataset"] == "no_bg")].iloc[0]
    assert squeeze["drop_test_out_pet"] == pytest.approx(0.9567 - 0.40)
    long = drop_long(drops)
    assert len(long) == 48 and set(long["ood_set"]) == {"test_out_pet", "test_out_nopet"}


def test_drop_for_own_run_uses_its_own_test_sets(tmp_path):
    run_dir = make_run(tmp_path)
    drops = generalisation_drop(frame_of(tmp_path), "f_score")
    own = drops[drops["source"] == run_dir.name].iloc[0]
    assert own["origin"] == "run" and own["drop_test_out_pet"] == pytest.approx(0.2) and math.isnan(own["drop_test_out_nopet"])


def test_paper_efficiency_ranks_densenet121_first_and_matches_paper_gain(paper_frame):
    table = efficiency_table(paper_frame, "paper", "test_out_pet", "bg", "transfer")
    assert table["model"].iloc[0] == "densenet121" and table["rank"].tolist() == list(range(1, 8))
    expected = paper.paper_gain("test_out_pet", "bg", "transfer")
    assert table["model"].tolist() == expected["model"].tolist()
    assert table["gain"].tolist() == pytest.approx(expected["gain"].tolist())
    first = table.iloc[0]
    assert first["gain"] == pytest.approx((0.75 - 0.64) / (6_955_906 - 736_450))
    assert first["gain_per_million"] == pytest.approx(first["gain"] * 1e6)
    assert first["extra_params"] == 6_955_906 - 736_450 and first["source"] == "paper (Table S2)"


def test_efficiency_without_a_squeezenet_baseline_says_so_plainly(paper_frame):
    with pytest.raises(EfficiencyUnavailable, match=r"No squeezenet1_0 \(SqueezeNet\) baseline .* regime scratch.*only for the transfer regime"):
        efficiency_table(paper_frame, "paper", "test_out_pet", "bg", "scratch")
    with pytest.raises(EfficiencyUnavailable, match="No F-scores for test set test_in, dataset no_bg, regime combi"):
        efficiency_table(paper_frame, "paper", "test_in", "no_bg", "combi")
    points = efficiency_points(paper_frame, "paper", "test_out_pet", "bg", "scratch")
    assert points["model"].tolist() == ["densenet121", "densenet201", "vgg11_bn", "vgg19_bn"]
    assert points["params"].tolist() == [paper.PAPER_PARAMETER_COUNTS[m] for m in points["model"]]


def test_own_run_efficiency_uses_registry_parameter_counts_and_names_the_run(tmp_path):
    squeeze = make_run(tmp_path, arch="squeezenet1_0")
    mobile = make_run(
        tmp_path,
        arch="mobilenet_v2",
        test_sets={
            "test_in": {"f_score": 0.95, "accuracy": 0.95, "confusion_matrix": [[40, 2], [2, 36]], "n_images": 80, "eval_time_s": 6.0},
            "test_out_pet": {"f_score": 0.8, "accuracy": 0.8, "confusion_matrix": [[35, 5], [11, 29]], "n_images": 80, "eval_time_s": 12.0},
        },
    )
    frame = frame_of(tmp_path)
    table = efficiency_table(frame, "run", "test_out_pet", "bg", "transfer")
    assert table["model"].tolist() == ["mobilenet_v2"] and table["source"].tolist() == [mobile.name]
    extra = count_parameters("mobilenet_v2") - count_parameters("squeezenet1_0")
    assert table["gain"].iloc[0] == pytest.approx((0.8 - 0.7) / extra)
    points = efficiency_points(frame, "run", "test_out_pet", "bg", "transfer")
    assert dict(zip(points["model"], points["source"])) == {"squeezenet1_0": squeeze.name, "mobilenet_v2": mobile.name}
    assert efficiency_table(frame, "run", "test_in", "bg", "transfer")["model"].tolist() == ["mobilenet_v2"]


def test_inference_time_per_image_is_eval_time_over_images(tmp_path):
    run_dir = make_run(tmp_path)
    times = inference_times(catalog.list_models(tmp_path)).set_index("test_set")
    assert times.loc["test_out_pet", "seconds_per_image"] == pytest.approx(8.0 / 80)
    assert times.loc["test_in", "seconds_per_image"] == pytest.approx(4.0 / 80)
    assert times.loc["test_in", "images_per_second"] == pytest.approx(20.0)
    assert set(times["source"]) == {run_dir.name} and times.loc["test_in", "f_score"] == 0.9
    assert inference_times(catalog.list_models(tmp_path / "nothing")).empty


def test_filter_sort_pin_and_difference_to_a_baseline(paper_frame):
    grid = results_grid(paper_frame, "f_score")
    combi = filter_grid(grid, regimes=["combi"])
    assert list(combi.index.get_level_values("model")) == ["densenet121", "densenet201", "vgg11_bn", "vgg19_bn"]
    assert filter_grid(grid, models=[]).empty
    ranked = sort_grid(grid, ("bg", "test_out_pet"))
    assert ranked.index[0][:2] == ("vgg11_bn", "combi") and ranked[("bg", "test_out_pet")].is_monotonic_decreasing
    baseline = ("squeezenet1_0", "transfer", "paper", PAPER_ROW)
    pinned = pin_row(ranked, baseline)
    assert pinned.index[0] == baseline and len(pinned) == len(grid)
    diff = difference_to(pinned, baseline)
    assert (diff.loc[baseline] == 0).all()
    assert diff.loc[("densenet121", "transfer", "paper", PAPER_ROW), ("bg", "test_out_pet")] == pytest.approx(0.75 - 0.64)
    assert math.isnan(diff.loc[("densenet121", "scratch", "paper", PAPER_ROW), ("no_bg", "test_in")])
    assert row_label(baseline) == f"squeezenet1_0 · transfer · {PAPER_ROW}"
    styled = colour_scaled(diff, diverging=True)
    styled._compute()
    row = diff.index.get_loc(baseline)
    zero_cell = dict(styled.ctx[(row, 0)])
    colour = zero_cell["background-color"]
    assert all(int(colour[i : i + 2], 16) > 240 for i in (1, 3, 5)), colour  # zero is (near) white on the diverging scale
    empty = diff.index.get_loc(("densenet121", "scratch", "paper", PAPER_ROW)), diff.columns.get_loc(("no_bg", "test_in"))
    assert dict(styled.ctx[empty])["background-color"] == "transparent"


def test_latex_and_csv_exports_carry_the_numbers(paper_frame):
    grid = results_grid(paper_frame, "f_score")
    latex = to_latex(grid, caption="F-score")
    assert "\\toprule" in latex and "\\multicolumn{3}{c}{no\\_bg}" in latex and "test\\_out\\_pet" in latex
    line = next(row for row in latex.splitlines() if row.startswith("squeezenet1\\_0 & transfer"))
    assert line.split(" & ")[4:] == ["0.944", "0.640", "0.640", "0.957", "0.590", "0.610 \\\\"]  # one number of decimals per table
    assert latex.count(" -- ") + latex.count(" --\\") == 8 * 3  # scratch and combi have no no_bg cells
    csv = to_csv(grid)
    back = pd.read_csv(io.StringIO(csv))
    assert len(back) == 16 and list(back.columns)[:4] == ["model", "regime", "origin", "source"]
    assert "no_bg / test_out_nopet" in back.columns
    assert back.loc[back["model"].eq("squeezenet1_0"), "no_bg / test_in"].item() == pytest.approx(0.957)


def test_format_value_keeps_the_papers_printed_digits():
    assert [format_value(v) for v in (0.9486, 0.94, 0.957, 1.0, float("nan"))] == ["0.9486", "0.94", "0.957", "1.00", "--"]
    assert format_difference(-0.15) == "-0.150" and format_difference(0.02) == "+0.020"


def test_learning_curves_and_confusion_matrices_of_a_run(tmp_path):
    run_dir = make_run(tmp_path, epochs=4)
    curves = learning_curves(run_dir)
    assert len(curves) == 12 and set(curves["series"]) == {"training loss", "validation loss", "validation F-score"}
    val_f = curves[curves["series"] == "validation F-score"].set_index("epoch")["value"]
    assert val_f.to_dict() == pytest.approx({1: 0.6, 2: 0.7, 3: 0.8, 4: 0.9})
    matrices = confusion_matrices(catalog.read_model(run_dir))
    assert list(matrices) == ["test_in", "test_out_pet"]
    assert matrices["test_out_pet"].loc["positive (captive)", "negative"] == 12  # FN: true positive predicted negative
    assert matrices["test_out_pet"].loc["negative", "positive (captive)"] == 10  # FP
    table = results_table(catalog.read_model(run_dir))
    assert table.loc["test_in", "seconds_per_image"] == pytest.approx(0.05) and table.loc["test_in", "positive_precision"] == pytest.approx(33 / 35)
    unfinished = make_run(tmp_path, state="running")
    assert confusion_matrices(catalog.read_model(unfinished)) == {} and results_table(catalog.read_model(unfinished)).empty


def test_fingerprint_changes_when_a_run_progresses(tmp_path):
    assert runs_fingerprint(tmp_path / "missing") == ()
    run_dir = make_run(tmp_path, state="running")
    before = runs_fingerprint(tmp_path)
    runs.write_json_atomic(run_dir / runs.RESULTS, {"best_epoch": 1, "epochs_run": 1, "test_sets": {}})
    assert runs_fingerprint(tmp_path) != before


def test_run_notes_say_which_runs_used_the_demo_data(tmp_path):
    direct = make_run(tmp_path, arch="densenet121", data="../shared/demo-data/train")
    own = make_run(tmp_path, arch="alexnet", data="/field/photos")
    notes = run_data_notes(frame_of(tmp_path)).set_index("source")
    assert notes.loc[direct.name, "demo"] and not notes.loc[own.name, "demo"]
    assert notes.loc[own.name, "data"] == "/field/photos"


def test_figure_data_labels_own_runs_as_runs(tmp_path):
    run_dir = make_run(tmp_path, arch="vgg11_bn", regime="combi")
    frame = frame_of(tmp_path)
    fig2 = figure_data(frame, datasets=["bg"], models=regime_comparison_models(frame))
    assert regime_comparison_models(frame) == ["densenet121", "densenet201", "vgg11_bn", "vgg19_bn"]
    own = fig2[fig2["origin"] == "run"]
    assert set(own["label"]) == {f"vgg11_bn (run {short_run_name(run_dir.name)})"}
    assert set(fig2.loc[fig2["origin"] == "paper", "label"]) == {"densenet121", "densenet201", "vgg11_bn", "vgg19_bn"}
    assert json.dumps(fig2["value"].tolist())  # plain floats


def test_efficiency_of_a_run_with_an_unknown_architecture_is_explained_not_raised(tmp_path):
    make_run(tmp_path, arch="squeezenet1_0")
    future = make_run(tmp_path, arch="alexnet")
    config = runs.read_json(future / runs.CONFIG)
    config["train"]["arch"] = "future_net"
    runs.write_json_atomic(future / runs.CONFIG, config)
    frame = frame_of(tmp_path)
    points = efficiency_points(frame, "run", "test_out_pet", "bg", "transfer")
    assert points.set_index("model")["params"].isna().to_dict() == {"squeezenet1_0": False, "future_net": True}
    with pytest.raises(EfficiencyUnavailable, match="no parameter count for \\['future_net'\\]"):
        efficiency_table(frame, "run", "test_out_pet", "bg", "transfer")


# ---------------------------------------------------------------------------------------------
# The decision threshold in a run's details
# ---------------------------------------------------------------------------------------------


def test_confusion_matrices_at_the_runs_threshold_differ_from_those_at_one_half(tmp_path):
    # test_in: 5 positives score 0.3, below 0.5; the lowest threshold with precision >= 0.95 is 0.3
    run_dir = make_run(
        tmp_path,
        scores={
            "test_in": scores_with(tn=56, fp=2, fn_low=2, fn_between=5, tp=43),
            "test_out_pet": scores_with(tn=30, fp=10, fn_low=8, fn_between=4, tp=28),
        },
    )
    assert catalog.read_model(run_dir).threshold == pytest.approx(0.3)
    at_half = confusion_matrices(catalog.read_model(run_dir))
    at_threshold = confusion_matrices(catalog.read_model(run_dir), at_threshold=True)
    assert at_half["test_in"].to_numpy().tolist() == [[56, 2], [7, 43]]
    assert at_threshold["test_in"].to_numpy().tolist() == [[56, 2], [2, 48]]
    assert at_threshold["test_out_pet"].to_numpy().tolist() == [[30, 10], [8, 32]]
    assert list(at_threshold) == ["test_in", "test_out_pet"]
    old_run = make_run(tmp_path)  # written before thresholds were recorded
    assert catalog.read_model(old_run).threshold is None and confusion_matrices(catalog.read_model(old_run), at_threshold=True) == {}


# ---------------------------------------------------------------------------------------------
# Exports for slides and papers
# ---------------------------------------------------------------------------------------------


def test_csv_export_rounds_away_float_noise_but_keeps_every_printed_digit(paper_frame):
    grid = results_grid(paper_frame, "f_score")
    baseline = ("squeezenet1_0", "transfer", "paper", PAPER_ROW)
    difference = difference_to(pin_row(grid, baseline), baseline)
    raw = difference.to_csv()
    assert "0.10999999999999999" in raw or "0.11000000000000001" in raw  # what the plain export wrote
    csv = to_csv(difference)
    assert "9999999" not in csv and "0000001" not in csv
    back = pd.read_csv(io.StringIO(csv)).set_index(["model", "regime", "origin", "source"])
    assert back.loc[("densenet121", "transfer", "paper", PAPER_ROW), "bg / test_out_pet"] == 0.11  # exactly, as printed
    accuracy = results_grid(paper_frame, "accuracy")
    back = pd.read_csv(io.StringIO(to_csv(accuracy)))
    assert back.loc[back["model"].eq("alexnet") & back["regime"].eq("transfer"), "no_bg / test_in"].item() == 0.9486
    run_values = pd.DataFrame({"f_score": [56 / 108, 2.342952e-11]})
    assert to_csv(run_values).splitlines() == ["f_score", "0.518519", "2.34295e-11"]


def test_latex_escape_makes_plain_text_print_literally():
    assert latex_escape("squeezenet1_0") == r"squeezenet1\_0"
    assert latex_escape("95% of {x} & $5 #1 ~ ^ \\") == r"95\% of \{x\} \& \$5 \#1 \textasciitilde{} \textasciicircum{} \textbackslash{}"
    assert latex_escape("a · b – c “d”") == r"a \textperiodcentered{} b -- c ``d''"
    latex = to_latex(pd.DataFrame({"F": [0.5]}), caption="F of squeezenet1_0 · transfer, 100%")
    assert r"\caption{F of squeezenet1\_0 \textperiodcentered{} transfer, 100\%}" in latex


def test_latex_prints_one_number_of_decimals_per_table(paper_frame):
    accuracy = results_grid(paper_frame, "accuracy")
    assert table_decimals(accuracy) == 4  # Table S1 prints accuracy to 4 decimals (94.86%)
    latex = to_latex(accuracy)
    body = latex[latex.index("\\midrule") : latex.index("\\bottomrule")].splitlines()[1:]
    assert len(body) == 16
    numbers = [cell.strip(" \\") for row in body for cell in row.split(" & ")[4:] if cell.strip(" \\") != "--"]
    assert len(numbers) == 72 and {len(n.split(".")[1]) for n in numbers} == {4}
    assert "0.9486" in numbers and "0.9440" in numbers  # Table S1's 94.86% and 94.4%
    table1 = positive_precision_table(paper_frame)
    assert table_decimals(table1) == 2 and "0.94 & 0.95" in to_latex(table1)
    # differences carry their sign; counts stay whole numbers
    signed = to_latex(pd.DataFrame({"drop": [0.11, -0.2], "images": [80, 64]}), signed=True)
    assert "+0.11 & 80" in signed and "-0.20 & 64" in signed
    assert format_fixed(float("nan"), 3) == "--" and format_fixed(0.0, 3, signed=True) == "+0.000"


def latex_compiler() -> str:
    """pdflatex, or a skip saying how to install it (a failure in CI, where WILDVISION_REQUIRE_SHARED=1)."""
    found = shutil.which("pdflatex")
    if found is None:
        message = "needs pdflatex with booktabs (Debian: apt-get install --no-install-recommends texlive-latex-base texlive-latex-recommended)"
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; WILDVISION_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)
    return found


def test_latex_exports_compile_with_pdflatex(tmp_path):
    pdflatex = latex_compiler()
    make_run(tmp_path / "runs", arch="squeezenet1_0")
    frame = frame_of(tmp_path / "runs")
    grid = results_grid(frame, "f_score")
    baseline = ("squeezenet1_0", "transfer", "paper", PAPER_ROW)
    tables = [
        to_latex(grid, caption="F-score (weighted) of squeezenet1_0 and 100% of runs"),
        to_latex(
            difference_to(pin_row(grid, baseline), baseline),
            signed=True,
            caption=f"F-score, difference to {row_label(baseline)} – own runs are not the paper's",
        ),
        to_latex(positive_precision_table(frame), caption="Positive-class precision (Table 1 and own runs)"),
    ]
    assert all(table.startswith("% needs \\usepackage{booktabs}\n") for table in tables)
    document = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n"
    (tmp_path / "tables.tex").write_text(document + "\n".join(tables) + "\n\\end{document}\n", encoding="utf-8")
    done = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000
    log = (tmp_path / "tables.log").read_text(encoding="utf-8", errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


# ---------------------------------------------------------------------------------------------
# Efficiency wording and chart helpers
# ---------------------------------------------------------------------------------------------


def test_gain_is_printed_with_significant_digits_never_as_zero():
    assert format_gain(2.342952e-05) == "+0.0000234"  # vgg11_bn on test_in, no_bg: was "+0.0000"
    assert format_gain(-5.76e-05) == "-0.0000576"  # was "-0.0000"
    assert format_gain(0.0176864) == "+0.0177" and format_gain(-0.005467) == "-0.00547"
    assert format_gain(0.000999999) == "+0.00100" and format_gain(0.0) == "0"
    assert format_gain(float("nan")) == "--"


def test_gain_headline_says_plainly_when_no_architecture_beats_squeezenet(paper_frame):
    def headline(test_set, dataset):
        gains = efficiency_table(paper_frame, "paper", test_set, dataset, "transfer")
        points = efficiency_points(paper_frame, "paper", test_set, dataset, "transfer")
        return gain_headline(gains, points.set_index("model").loc["squeezenet1_0", "f_score"], "the selection")

    assert headline("test_out_pet", "bg").startswith("**densenet121** has the highest gain for the selection: +0.0177 F-score")
    tiny = headline("test_in", "no_bg")
    assert tiny.startswith("**vgg11_bn** has the highest gain") and "+0.0000234" in tiny and "0.96 against SqueezeNet's 0.957" in tiny
    frame = paper_frame.copy()
    squeeze_in = (frame["model"] == "squeezenet1_0") & (frame["test_set"] == "test_in") & (frame["metric"] == "f_score")
    frame.loc[squeeze_in, "value"] = 0.97  # above every other architecture's test_in F-score
    gains = efficiency_table(frame, "paper", "test_in", "no_bg", "transfer")
    assert (gains["gain"] < 0).all()
    losing = gain_headline(gains, 0.97, "the selection")
    assert losing.startswith("**No architecture beats SqueezeNet** for the selection") and "0.97" in losing
    frame.loc[squeeze_in, "value"] = 0.96  # vgg11_bn ties
    gains = efficiency_table(frame, "paper", "test_in", "no_bg", "transfer")
    assert "the best (vgg11_bn) only equal its F-score of 0.96" in gain_headline(gains, 0.96, "the selection")


def test_chart_config_saves_a_sharp_png_without_the_plotly_logo():
    config = chart_config("wildvision-paper-test_out_pet/bg: gain")
    assert config == {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": "wildvision-paper-test_out_pet-bg-gain", "scale": 2}}


def test_f_axis_stays_within_zero_and_one():
    assert f_axis_range([0.61, 0.79]) == [0.5, 0.95]
    assert f_axis_range([0.98]) == [0.9, 1.05]  # one point: Plotly alone would run past 1.4
    assert f_axis_range([0.01, 1.0]) == [0.0, 1.05]
    assert f_axis_range([]) == [0.0, 1.05]


def test_grid_on_screen_names_runs_as_the_charts_do(tmp_path):
    run_dir = make_run(tmp_path)
    grid = results_grid(frame_of(tmp_path), "f_score")
    short = with_short_run_names(grid)
    assert short.index.names == grid.index.names
    pd.testing.assert_frame_equal(short.reset_index(drop=True), grid.reset_index(drop=True))
    run_key = ("squeezenet1_0", "transfer", "run", f"run {short_run_name(run_dir.name)}")
    assert short.loc[run_key, ("bg", "test_in")] == 0.9 and len(run_key[3]) < 20
    assert short.loc[("squeezenet1_0", "transfer", "paper", PAPER_ROW), ("bg", "test_in")] == pytest.approx(0.944)


def test_export_ready_names_one_font_for_all_text_of_a_chart():
    import plotly.express as px

    figure = px.bar(pd.DataFrame({"x": ["a", "b"], "y": [1, 2], "panel": ["p", "q"]}), x="x", y="y", facet_col="panel", title="t")
    assert export_ready(figure) is figure
    assert figure.layout.font.family == figure.layout.title.font.family == CHART_FONT
    assert [a.font.family for a in figure.layout.annotations] == [CHART_FONT] * 2  # the facet titles


def test_export_ready_keeps_charts_off_the_pictures_edges_and_legends_off_the_plots():
    """Streamlit's theme sets the side margins to 0: a plot with nothing to its right ran to the exported PNG's edge."""
    import plotly.express as px

    frame = pd.DataFrame({"x": ["a", "b"], "y": [1, 2], "kind": ["p", "q"]})
    figure = export_ready(px.bar(frame, x="x", y="y", color="kind").update_layout(margin={"l": 0, "r": 0}))
    assert figure.layout.margin.l == figure.layout.margin.r == EDGE > 0
    assert figure.layout.legend.borderwidth == LEGEND_PAD > 0 and figure.layout.legend.bordercolor == "rgba(0,0,0,0)", "a clear border is padding"
    wide = export_ready(px.bar(frame, x="x", y="y").update_layout(margin={"l": 90, "r": 120}, legend={"borderwidth": 1, "bordercolor": "grey"}))
    assert (wide.layout.margin.l, wide.layout.margin.r) == (90, 120), "a wider margin a page chose stays"
    assert (wide.layout.legend.borderwidth, wide.layout.legend.bordercolor) == (1, "grey"), "and so does a legend border it drew"


def test_close_scatter_labels_go_one_above_one_below(paper_frame):
    points = efficiency_points(paper_frame, "paper", "test_out_pet", "bg", "transfer")
    where = dict(zip(points["model"], label_positions(points["params"].astype(float), points["f_score"])))
    assert where["vgg11_bn"] == "top center" and where["vgg19_bn"] == "bottom center"  # 129M and 139M parameters, F 0.77 and 0.76
    assert where["densenet121"] == where["squeezenet1_0"] == "top center"  # nothing close by
    assert label_positions([50.0, 50.0, 80.0], [0.7, 0.7, 0.7], log_x=False, near_x=5) == ["top center", "bottom center", "top center"]
    filtered = pd.Series([0.7, 0.71], index=[5, 9])  # a filtered frame's column: positions, not labels
    assert label_positions(filtered, filtered, log_x=False) == ["bottom center", "top center"]
