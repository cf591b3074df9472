"""wildvision.analysis: the paper's numbers and own runs in the paper's layout.

Own runs are run folders written with wildvision.runs' own writers, following the run-folder
contract (config.json, status.json, metrics.jsonl, results.json), so the real reader
(wildvision.catalog) reads them; a CLI training run would take a minute here.
"""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from helpers import PAPER_ROW, frame_of, make_run, scores_with
from wildvision import catalog, paper, runs
from wildvision.analysis.efficiency import EfficiencyUnavailable, efficiency_points, efficiency_table, inference_times
from wildvision.analysis.export import (
    colour_scaled,
    format_difference,
    format_value,
    to_csv,
    to_latex,
)
from wildvision.analysis.generalisation import drop_long, figure_data, generalisation_drop, regime_comparison_models
from wildvision.analysis.grid import difference_to, filter_grid, pin_row, positive_precision_table, results_grid, row_label, sort_grid
from wildvision.analysis.run_detail import confusion_matrices, learning_curves, results_table
from wildvision.analysis.tidy import combined_results, has_own_runs, own_runs, run_data_notes, short_run_name
from wildvision.catalog import runs_fingerprint
from wildvision.models import count_parameters


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
