"""The Results, Efficiency and Generalisation pages, run with Streamlit's AppTest.

Pages read the runs folder through wildvision.runs.default_runs_dir(), which looks at
WILDVISION_RUNS_DIR on every script run, so each test points it at its own folder with monkeypatch.setenv. Own runs are
contract-following run folders written by tests/test_compare.make_run.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import make_run, scores_with
from wildvision import model_card
from wildvision.analysis.export import CHART_FONT, EDGE, TITLE_LINE_HEIGHT
from wildvision.analysis.tidy import TEST_SET_LABELS, short_run_name

PAGES = Path(__file__).resolve().parents[1] / "app_pages"
TIMEOUT = 90  # the first script run imports torch


def run_page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT).run()  # dataframes: at.dataframe[i], in page order (their keys are not exposed)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def empty_runs(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "runs"  # does not even exist yet, as on a fresh machine
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    return folder


@pytest.fixture
def one_run(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "runs"
    run_dir = make_run(
        folder,
        arch="squeezenet1_0",
        data="../shared/demo-data/train",
        test_sets={
            "test_in": {"f_score": 0.88, "accuracy": 0.89, "confusion_matrix": [[30, 3], [4, 27]], "n_images": 64, "eval_time_s": 3.2},
            "test_out_pet": {"f_score": 0.66, "accuracy": 0.67, "confusion_matrix": [[20, 10], [10, 20]], "n_images": 60, "eval_time_s": 6.0},
            "test_out_nopet": {"f_score": 0.71, "accuracy": 0.72, "confusion_matrix": [[22, 8], [9, 21]], "n_images": 60, "eval_time_s": 5.4},
        },
    )
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    return run_dir


@pytest.fixture
def threshold_run(monkeypatch, tmp_path) -> Path:
    """A run made from real scores whose decision threshold (0.3, chosen on test_in for precision 0.95) is not 0.5:
    at 0.5 its test_in matrix is [[56, 2], [7, 43]], at 0.3 it is [[56, 2], [2, 48]]."""
    folder = tmp_path / "runs"
    run_dir = make_run(
        folder,
        arch="mobilenet_v2",
        data="/field/photos",
        scores={
            "test_in": scores_with(tn=56, fp=2, fn_low=2, fn_between=5, tp=43),
            "test_out_pet": scores_with(tn=30, fp=10, fn_low=8, fn_between=4, tp=28),
        },
    )
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    return run_dir


@pytest.fixture
def downloads(monkeypatch):
    """What the page's download buttons hand over: AppTest keeps their bytes in a media store made per run;
    this keeps every store made, and returns a function from a button to its text."""
    from streamlit.runtime.media_file_storage import MediaFileStorageError
    from streamlit.testing.v1 import app_test

    stores = []

    class KeptStorage(app_test.MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", KeptStorage)

    def content(button) -> str:
        name = button.proto.url.rsplit("/", 1)[-1]
        for store in reversed(stores):
            try:
                return store.get_file(name).content.decode("utf-8")
            except MediaFileStorageError:
                continue
        raise AssertionError(f"no stored file for {button.proto.url}")

    return content


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def figures(at: AppTest) -> list[dict]:
    """Every Plotly chart on the page as its figure JSON, in page order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def plotly_array(value) -> list:
    """A data array of a figure's JSON as a list: Plotly sends numpy arrays base64-encoded ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")] if shape else -1).tolist()
    return value


def plain(text: str) -> str:
    """A chart's title or caption as one line of text: export_ready wraps them with <br> and escapes them."""
    return text.replace("<br>", " ").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")


def chart_words(figure: dict) -> tuple[str, str]:
    """A chart's title and its caption (the annotation below the plot), as plain text."""
    caption = next(note["text"] for note in figure["layout"].get("annotations", []) if note.get("yanchor") == "top" and note.get("yshift", 0) < 0)
    return plain(figure["layout"]["title"]["text"]), plain(caption)


def assert_png_export_on_every_chart(at: AppTest) -> list[str]:
    """Each chart's camera button saves a 2x PNG under a file name of its own, without the Plotly logo, in a font the
    export has; returns the file names."""
    configs = [json.loads(chart.proto.config) for chart in at.get("plotly_chart")]
    assert configs, "no chart on the page"
    for figure in figures(at):  # a font the PNG export has too, or legends overflow in the PNG
        assert figure["layout"]["font"]["family"] == figure["layout"]["title"]["font"]["family"] == CHART_FONT
        assert all(note["font"]["family"] == CHART_FONT for note in figure["layout"].get("annotations", []))
        assert figure["layout"]["title"]["text"], "a chart dropped into a deck says what it shows"
        title_lines = figure["layout"]["title"]["text"].count("<br>") + 1
        assert figure["layout"]["margin"]["t"] >= TITLE_LINE_HEIGHT * title_lines, "the title has room above the plot"
        assert figure["layout"]["title"]["yref"] == "container" and figure["layout"]["title"]["yanchor"] == "top"
        words = re.sub(r"\(run [^)]*\)", "", plain(figure["layout"]["title"]["text"]))  # a run's name is data, whatever it holds
        assert not re.search(r"\bOOD\b|\bbg\b|\bno_bg\b", words), "no bare jargon in a title"
        (caption,) = [note for note in figure["layout"]["annotations"] if note.get("yanchor") == "top" and note.get("yshift", 0) < 0]
        assert len(caption["text"]) > 40 and figure["layout"]["margin"]["b"] > -caption["yshift"], "its caption sits inside the picture"
        margin, legend = figure["layout"]["margin"], figure["layout"]["legend"]
        assert min(margin["l"], margin["r"]) >= EDGE and legend["borderwidth"] > 0, "off the picture's edges; legends not flush"
    for config in configs:
        assert config["displaylogo"] is False
        assert config["toImageButtonOptions"]["format"] == "png" and config["toImageButtonOptions"]["scale"] == 2
        assert config["toImageButtonOptions"]["filename"].startswith("wildvision-")
    names = [config["toImageButtonOptions"]["filename"] for config in configs]
    assert len(set(names)) == len(names), names
    return names


# ---------------------------------------------------------------------------------------------
# Results grid
# ---------------------------------------------------------------------------------------------


def test_results_page_without_runs_shows_the_paper_grid_and_what_to_do(empty_runs):
    at = run_page("results")
    assert at.title[0].value == "Results grid"
    assert "No completed runs yet" in texts(at.info) and "Train page" in texts(at.info)
    assert at.selectbox(key="metric").value == "f_score"
    assert {m.label for m in at.multiselect} == {"Architecture", "Regime", "Source"}
    grid = at.dataframe[0].value
    assert grid.shape == (16, 6)
    assert int(grid.notna().sum().sum()) == 72  # 24 configurations x 3 test sets
    assert set(grid.index.get_level_values("origin")) == {"paper"}
    assert [b.label for b in at.get("download_button")] == ["Download table as CSV", "Download table as LaTeX", "Download the grid as a chart (PNG)"]


def test_results_page_baseline_difference_and_metric_switch(empty_runs):
    at = run_page("results")
    baseline = "squeezenet1_0 · transfer · paper (Tables S1, S2, S3)"
    at.selectbox(key="baseline").select(baseline).run()
    at.toggle(key="difference").set_value(True).run()
    assert not at.exception
    assert "difference to " + baseline in at.subheader[0].value
    table = at.dataframe[0].value
    assert table.index[0][0] == "squeezenet1_0"  # pinned on top
    assert float(table.iloc[0, 0]) == 0.0
    densenet = table.xs(("densenet121", "transfer"), level=("model", "regime"))
    assert float(densenet[("bg", "test_out_pet")].iloc[0]) == pytest.approx(0.75 - 0.64, abs=1e-3)

    at.selectbox(key="metric").select("positive_precision").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.shape == (16, 2) and "Positive-class precision" in at.subheader[0].value

    at.multiselect(key="regimes").set_value([]).run()
    assert "No rows match the filters" in texts(at.info)


def test_results_page_with_a_run_shows_it_labelled_and_in_detail(one_run):
    at = run_page("results")
    assert "NOT the paper's results" in texts(at.warning) and "demo data" in texts(at.warning)
    grid = at.dataframe[0].value
    assert grid.shape == (17, 6)
    run_rows = grid.xs("run", level="origin")
    assert list(run_rows.index.get_level_values("source")) == [f"run {short_run_name(one_run.name)}"]  # as on the charts
    assert float(run_rows[("bg", "test_out_nopet")].iloc[0]) == pytest.approx(0.71)
    assert at.selectbox(key="run").value == one_run.name
    assert "Architecture **squeezenet1\\_0** · Regime **transfer**" in texts(at.markdown), "in text that wraps, not a metric that cuts it off"
    assert {"Test results of this run", "Confusion matrices"} <= {s.value for s in at.subheader}
    results = at.dataframe[1].value
    assert list(results.index) == ["test_in", "test_out_pet", "test_out_nopet"]
    assert results.loc["test_out_pet", "seconds_per_image"] == pytest.approx(0.1)
    assert len(at.get("plotly_chart")) == 1 + 3  # learning curves + one confusion matrix per test set
    words = [chart_words(figure) for figure in figures(at)]
    assert words[0][0] == f"Learning curves of squeezenet1_0 (run {one_run.name})"
    assert [title for title, _ in words[1:]] == [
        f"Confusion matrix of squeezenet1_0 (run {short_run_name(one_run.name)}) on {TEST_SET_LABELS[test_set]}"
        for test_set in ("test_in", "test_out_pet", "test_out_nopet")
    ], "a matrix's PNG names its model and its photos"
    assert all("demo proxy data" in caption and "not the paper's" in caption for _, caption in words), "trained on the demo data: a proxy"
    assert_png_export_on_every_chart(at)
    assert at.multiselect(key="sources").options == ["the paper (Tables S1-S3, Table 1)", f"run {short_run_name(one_run.name)}"]
    at.multiselect(key="sources").set_value([one_run.name]).run()
    assert at.dataframe[0].value.shape[0] == 1


def matrix_words(at: AppTest) -> dict[str, list]:
    """Each confusion matrix by its test set (from its title) and its count and threshold (from its caption)."""
    words = {}
    for figure in figures(at)[1:]:
        title, caption = chart_words(figure)
        images, where = re.search(r"(\d+) in all, at (threshold [\d.]+)\.", caption).groups()
        test_set = re.search(r" on (test_\w+)", title).group(1)
        words[f"on {test_set}: {images} images, counted at {where}"] = plotly_array(figure["data"][0]["z"])
    return words


def test_results_page_counts_confusion_matrices_at_the_runs_own_threshold(threshold_run):
    at = run_page("results")
    assert at.selectbox(key="run").value == threshold_run.name
    assert at.radio(key="cm_at").value == "threshold" and "0.300" in at.radio(key="cm_at").options[0]
    assert matrix_words(at) == {
        "on test_in: 108 images, counted at threshold 0.300": [[56, 2], [2, 48]],
        "on test_out_pet: 80 images, counted at threshold 0.300": [[30, 10], [8, 32]],
    }
    assert "Counts of images at threshold 0.300" in texts(at.caption)
    at.radio(key="cm_at").set_value("0.5").run()
    assert matrix_words(at) == {
        "on test_in: 108 images, counted at threshold 0.5": [[56, 2], [7, 43]],
        "on test_out_pet: 80 images, counted at threshold 0.5": [[30, 10], [12, 28]],
    }
    names = assert_png_export_on_every_chart(at)
    assert names[0] == f"wildvision-{threshold_run.name}-learning-curves"


def test_results_page_without_a_recorded_threshold_says_its_matrices_are_at_one_half(one_run):
    at = run_page("results")
    assert not at.get("radio")
    assert "records no decision threshold" in texts(at.caption)
    assert list(matrix_words(at)) == [
        "on test_in: 64 images, counted at threshold 0.5",
        "on test_out_pet: 60 images, counted at threshold 0.5",
        "on test_out_nopet: 60 images, counted at threshold 0.5",
    ]


def test_results_page_difference_exports_are_rounded_signed_and_escaped(empty_runs, downloads):
    at = run_page("results")
    assert at.toggle(key="difference").label == "Difference to baseline"  # "Show difference to baseline" was cut off
    at.selectbox(key="baseline").select("squeezenet1_0 · transfer · paper (Tables S1, S2, S3)").run()
    at.toggle(key="difference").set_value(True).run()
    csv, latex = (downloads(button) for button in at.get("download_button")[:2])  # the third, the chart, is drawn when clicked
    assert "9999999" not in csv and ",0.11," in csv.replace("\n", ",")
    assert "\\caption{F-score (weighted), difference to squeezenet1\\_0 \\textperiodcentered{} transfer" in latex
    densenet = next(line for line in latex.splitlines() if line.startswith("densenet121 & transfer"))
    assert densenet.split(" & ")[4:] == ["-0.034", "+0.110", "+0.070", "-0.027", "+0.040", "+0.020 \\\\"]


# ---------------------------------------------------------------------------------------------
# Efficiency
# ---------------------------------------------------------------------------------------------


def test_efficiency_page_ranks_densenet121_first_on_the_paper_numbers(empty_runs):
    at = run_page("efficiency")
    assert at.title[0].value == "Efficiency"
    assert at.radio(key="origin").value == "paper"
    assert (at.selectbox(key="test_set").value, at.selectbox(key="dataset").value, at.selectbox(key="regime").value) == ("test_out_pet", "bg", "transfer")
    gains = at.dataframe[0].value
    assert gains["model"].iloc[0] == "densenet121" and len(gains) == 7
    assert len(at.get("plotly_chart")) == 2  # ranked bars + F against parameters
    size_chart = figures(at)[1]
    where = {m: p for trace in size_chart["data"] for m, p in zip(trace["text"], trace["textposition"])}
    assert where["vgg11_bn"] == "top center" and where["vgg19_bn"] == "bottom center"  # their labels printed over each other


def test_efficiency_page_without_baseline_or_runs_says_so(empty_runs):
    at = run_page("efficiency")
    at.selectbox(key="regime").select("scratch").run()
    assert not at.exception
    assert "No squeezenet1_0 (SqueezeNet) baseline" in texts(at.info)
    assert len(at.get("plotly_chart")) == 1  # the F-against-size scatter still shows the four models
    at.radio(key="origin").set_value("run").run()
    assert not at.exception
    assert "No completed runs yet" in texts(at.info)


def test_efficiency_page_with_only_a_squeezenet_run(one_run):
    at = run_page("efficiency")
    at.radio(key="origin").set_value("run").run()
    assert not at.exception
    assert "NOT the paper's results" in texts(at.warning)
    assert "Only SqueezeNet itself" in texts(at.info)
    assert at.selectbox(key="test_set").options[:3] == [
        "test_in (20% held out of the training data)",
        "test_out_pet (out of distribution, with pets)",
        "test_out_nopet (out of distribution, no pets)",
    ]
    assert len(at.get("plotly_chart")) == 2  # F against parameters, F against measured time per image


def test_efficiency_page_reads_tiny_gains_and_says_when_none_beats_squeezenet(empty_runs):
    at = run_page("efficiency")
    at.selectbox(key="test_set").select("test_in").run()
    at.selectbox(key="dataset").select("no_bg").run()
    headline = texts(at.markdown)
    assert "**vgg11_bn** has the highest gain" in headline and "+0.0000234 F-score per million" in headline  # was "+0.0000"
    gains = at.dataframe[0].value
    assert "gain" not in gains.columns  # the e-notation column (2.343e-11) is not shown
    assert gains.set_index("model").loc["vgg11_bn", "gain_per_million"] == "+0.0000234"
    assert gains.set_index("model").loc["resnet152", "gain_per_million"] == "-0.000296"
    bars = figures(at)[0]
    shown = {label: text for trace in bars["data"] for label, text in zip(plotly_array(trace["y"]), plotly_array(trace["text"]))}
    assert shown["vgg19_bn"] == "-0.0000360" and "-0.0000" not in shown.values() and "+0.0000" not in shown.values()
    assert {trace["name"] for trace in bars["data"]} == {"beats SqueezeNet (positive gain)", "does not beat SqueezeNet (zero or negative gain)"}
    assert_png_export_on_every_chart(at)


def test_efficiency_page_own_runs_keep_f_axes_within_zero_and_one(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    make_run(folder, arch="squeezenet1_0")
    for arch, f in (("mobilenet_v2", 0.93), ("alexnet", 0.62)):  # alexnet loses to SqueezeNet (0.9 on test_in)
        make_run(
            folder,
            arch=arch,
            test_sets={
                "test_in": {"f_score": f, "accuracy": f, "confusion_matrix": [[40, 2], [3, 35]], "n_images": 80, "eval_time_s": 4.0},
            },
        )
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    at = run_page("efficiency")
    at.radio(key="origin").set_value("run").run()
    at.selectbox(key="test_set").select("test_in").run()
    assert not at.exception
    _, size_chart, time_chart = figures(at)
    assert size_chart["layout"]["yaxis"]["range"] == [0.5, 1.05] and time_chart["layout"]["yaxis"]["range"] == [0.5, 1.05]
    assert "**mobilenet_v2** has the highest gain" in texts(at.markdown)
    shown = at.dataframe[0].value.set_index("model")
    assert shown.loc["mobilenet_v2", "source"] == f"run {short_run_name(next(folder.glob('mobilenet_v2-*')).name)}"  # as on the chart
    names = assert_png_export_on_every_chart(at)
    assert names == [
        "wildvision-runs-test_in-bg-transfer-gain",
        "wildvision-runs-test_in-bg-transfer-f-against-parameters",
        "wildvision-runs-test_in-bg-f-against-time",
    ]
    at.selectbox(key="test_set").select("test_out_pet").run()  # only SqueezeNet was tested out of distribution
    assert "Only SqueezeNet itself" in texts(at.info)


# ---------------------------------------------------------------------------------------------
# Generalisation
# ---------------------------------------------------------------------------------------------


def test_generalisation_page_without_runs(empty_runs):
    at = run_page("generalisation")
    assert at.title[0].value == "Generalisation"
    assert "No completed runs yet" in texts(at.info)
    headers = [h.value for h in at.header]
    assert headers[:2] == ["With and without background images (Fig 1)", "Training regimes: transfer, scratch, combi (Fig 2)"]
    assert len(at.get("plotly_chart")) == 5  # Fig 1 F and accuracy, Fig 2 F and accuracy, drop chart
    assert_png_export_on_every_chart(at)
    assert not any("own runs" in caption for _, caption in map(chart_words, figures(at))), "no runs, none named in a caption"
    drops = at.dataframe[0].value
    densenet = drops.xs("densenet121", level="model").iloc[0]
    assert float(densenet[("drop from test_in", "test_out_pet")]) == pytest.approx(0.16)
    table1 = at.dataframe[1].value
    assert table1.shape == (16, 2)


def test_generalisation_page_with_a_run_and_other_selections(one_run):
    at = run_page("generalisation")
    assert "NOT the paper's results" in texts(at.warning)
    drops = at.dataframe[0].value
    assert f"run {short_run_name(one_run.name)}" in set(drops.index.get_level_values("source"))
    table1 = at.dataframe[1].value
    assert table1.shape == (17, 2)
    assert f"run {short_run_name(one_run.name)}" in set(table1.index.get_level_values("source"))  # as on the charts, not cut off
    at.selectbox(key="drop_regime").select("scratch").run()
    at.selectbox(key="drop_metric").select("accuracy").run()
    assert not at.exception
    assert at.selectbox(key="drop_dataset").options == ["with background images (data_bg)"]
    assert at.dataframe[0].value.shape[0] == 4


# ---------------------------------------------------------------------------------------------
# The pages inside st.navigation, as Home.py runs them
# ---------------------------------------------------------------------------------------------


def test_pages_run_inside_home_navigation(one_run):
    at = AppTest.from_file(str(PAGES.parent / "Home.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    for name, title in (("results", "Results grid"), ("efficiency", "Efficiency"), ("generalisation", "Generalisation")):
        at.switch_page(f"app_pages/{name}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.title[0].value == title
        if name != "efficiency":  # efficiency starts on the paper's numbers
            assert "NOT the paper's results" in texts(at.warning)


def test_results_page_names_a_run_whose_files_are_damaged(one_run):
    (one_run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{ cut off', encoding="utf-8")
    other = make_run(one_run.parent, arch="alexnet")
    (other / "results.json").write_text("{ not json", encoding="utf-8")
    at = run_page("results")
    warnings = texts(at.warning)
    assert other.name in warnings and "left out" in warnings
    assert at.dataframe[0].value.shape == (17, 6)  # the readable run still shows
    at.selectbox(key="run").select(one_run.name).run()
    assert not at.exception
    assert f"The learning curves of run {one_run.name} cannot be read" in texts(at.warning)


def test_generalisation_page_hatches_own_runs_and_keeps_the_drop_table_narrow(one_run, downloads):
    at = run_page("generalisation")
    fig1 = figures(at)[0]
    patterns = {trace["name"]: trace["marker"]["pattern"]["shape"] for trace in fig1["data"]}
    in_distribution = TEST_SET_LABELS["test_in"]  # the legend names test sets in words
    assert patterns[f"{in_distribution}, own run (hatched)"] == "/" and patterns[f"{in_distribution}, the paper"] == ""
    assert fig1["layout"]["legend"]["title"]["text"] == "test set, numbers from"
    run_bars = [trace for trace in fig1["data"] if trace["name"].endswith("own run (hatched)")]
    assert {trace["offsetgroup"] for trace in run_bars} == set(TEST_SET_LABELS.values())  # same slots as the paper's bars
    assert all(label.startswith("squeezenet1_0 (run ") for trace in run_bars for label in plotly_array(trace["x"]))
    assert "Hatched bars" in texts(at.warning)
    drops = at.dataframe[0].value
    # five index columns (regime, dataset and origin too), full run names and "drop_test_out_nopet"-long headers pushed the last column out
    assert drops.index.names == ["model", "source"]
    assert list(drops.index.get_level_values("source")).count(f"run {short_run_name(one_run.name)}") == 1
    f = "F-score (weighted)"
    assert list(drops.columns) == [
        (f, "test_in"),
        (f, "test_out_pet"),
        (f, "test_out_nopet"),
        ("drop from test_in", "test_out_pet"),
        ("drop from test_in", "test_out_nopet"),
    ]
    csv = pd.read_csv(io.StringIO(downloads(at.get("download_button")[0])))  # the CSV keeps the full run name
    assert one_run.name in set(csv["source"]) and float(csv.loc[csv["source"] == one_run.name, "drop_test_out_nopet"].item()) == pytest.approx(0.88 - 0.71)
    order = fig1["layout"]["xaxis"]["categoryarray"]  # the run's bars beside the paper's, not after the last architecture
    assert order.index(f"squeezenet1_0 (run {short_run_name(one_run.name)})") == order.index("squeezenet1_0") + 1
    assert len(fig1["layout"]["xaxis2"]["categoryarray"]) == 8  # the no_bg panel: the paper's 8, no empty slot for the bg run
    names = assert_png_export_on_every_chart(at)
    assert "wildvision-drop-f_score-transfer-bg" in names
    words = [chart_words(figure) for figure in figures(at)]  # Fig 1 F and accuracy, Fig 2 F and accuracy, the drop chart
    assert all("Solid bars: the paper's numbers" in caption for _, caption in words)
    assert all("demo proxy data" in words[i][1] for i in (0, 1, 4)), "the run's bars in Fig 1 and the drop chart: a proxy, never the paper's"
    assert all("Dashed lines: the paper's best value" in caption for _, caption in words[2:4]), "Fig 2's dashed lines explained in the picture"
    assert not any("own runs" in caption for _, caption in words[2:4]), "Fig 2 has no bar of the SqueezeNet run, so its caption names none"
    assert words[4][0].startswith("How much F-score falls on photos from elsewhere: transfer (fine-tune head); with background images")


def test_generalisation_threshold_slider_starts_at_each_models_own_threshold(threshold_run):
    at = run_page("generalisation")
    model = at.selectbox(key="threshold_model")
    assert model.options == ["default model (shipped)", threshold_run.name]
    default_threshold = round(model_card.load_card()["threshold"]["value"], 3)
    assert default_threshold != 0.3 and at.slider[0].value == pytest.approx(default_threshold)
    at.slider[0].set_value(0.9).run()
    model.select(threshold_run.name).run()
    assert at.slider[0].value == pytest.approx(0.3)  # the run's own threshold, not the default model's or the moved 0.9
    tradeoff = at.dataframe[-1].value.set_index("test set")
    assert tradeoff.loc["test_in", "recall (captive)"] == pytest.approx(48 / 50)
    assert tradeoff.loc["test_out_pet", "recall (captive)"] == pytest.approx(32 / 40)
    at.selectbox(key="threshold_model").select("default model (shipped)").run()
    assert at.slider[0].value == pytest.approx(default_threshold)
