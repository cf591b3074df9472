"""The Results, Efficiency and Generalisation pages, run with Streamlit's AppTest.

Pages read the runs folder through wildvision.runs.default_runs_dir(), which looks at
WILDVISION_RUNS_DIR on every script run, so each test points it at its own folder with monkeypatch.setenv. Own runs are
contract-following run folders written by tests/test_compare.make_run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_compare import make_run

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
    run_dir = make_run(folder, arch="squeezenet1_0", data="../shared/demo-data/train", test_sets={
        "test_in": {"f_score": 0.88, "accuracy": 0.89, "confusion_matrix": [[30, 3], [4, 27]], "n_images": 64, "eval_time_s": 3.2},
        "test_out_pet": {"f_score": 0.66, "accuracy": 0.67, "confusion_matrix": [[20, 10], [10, 20]], "n_images": 60, "eval_time_s": 6.0},
        "test_out_nopet": {"f_score": 0.71, "accuracy": 0.72, "confusion_matrix": [[22, 8], [9, 21]], "n_images": 60, "eval_time_s": 5.4},
    })
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    return run_dir


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


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
    assert [b.label for b in at.get("download_button")] == ["Download table as CSV", "Download table as LaTeX"]


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
    assert list(run_rows.index.get_level_values("source")) == [one_run.name]
    assert float(run_rows[("bg", "test_out_nopet")].iloc[0]) == pytest.approx(0.71)
    assert at.selectbox(key="run").value == one_run.name
    assert {"Test results of this run", "Confusion matrices"} <= {s.value for s in at.subheader}
    results = at.dataframe[1].value
    assert list(results.index) == ["test_in", "test_out_pet", "test_out_nopet"]
    assert results.loc["test_out_pet", "seconds_per_image"] == pytest.approx(0.1)
    assert len(at.get("plotly_chart")) == 1 + 3  # learning curves + one confusion matrix per test set
    at.multiselect(key="sources").set_value([one_run.name]).run()
    assert at.dataframe[0].value.shape[0] == 1


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
    assert at.selectbox(key="test_set").options[:3] == ["test_in (20% held out of the training data)", "test_out_pet (out of distribution, with pets)", "test_out_nopet (out of distribution, no pets)"]
    assert len(at.get("plotly_chart")) == 2  # F against parameters, F against measured time per image


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
    drops = at.dataframe[0].value
    densenet = drops.xs("densenet121", level="model").iloc[0]
    assert float(densenet["drop_test_out_pet"]) == pytest.approx(0.16)
    table1 = at.dataframe[1].value
    assert table1.shape == (16, 2)


def test_generalisation_page_with_a_run_and_other_selections(one_run):
    at = run_page("generalisation")
    assert "NOT the paper's results" in texts(at.warning)
    drops = at.dataframe[0].value
    assert one_run.name in set(drops.index.get_level_values("source"))
    assert at.dataframe[1].value.shape == (17, 2)
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
    assert f"The files of run {one_run.name} cannot be read" in texts(at.warning)
