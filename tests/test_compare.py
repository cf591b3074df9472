"""A run beside the default model and the model it replaces, on the same test sets (wildvision.training.compare)."""

import pytest

from conftest import DEMO
from wildvision import catalog
from wildvision.data import scan_folder
from wildvision.evaluate import compute_metrics
from wildvision.predict import load_model, predict_paths
from wildvision.training import compare
from wildvision.training.config import TrainConfig
from wildvision.training.run_data import prepare_tests


def test_a_finished_run_is_scored_with_the_default_model_on_its_own_test_sets(completed_run):
    record = catalog.read_model(completed_run)
    (default,) = catalog.comparisons(record)
    assert (default.key, default.role, default.label, default.reused) == ("default", "default", "the default model", ())
    assert list(default.results) == ["test_out_pet"]  # not test_in: the run's own split, which the default model may have trained on
    # The stored numbers are the default model's own on those photos, predicted here independently
    test = completed_run.parents[1] / "test_out_pet"
    samples = scan_folder(test)
    loaded = load_model("default")
    probabilities = [p.probability for p in predict_paths(loaded, [s.path for s in samples])]
    expected = compute_metrics([s.label for s in samples], probabilities, loaded.threshold)
    assert default.results["test_out_pet"].confusion_at_threshold == expected["confusion_matrix"]
    assert default.results["test_out_pet"].precision_at_threshold == pytest.approx(expected["positive_precision"])


def test_stored_scores_of_the_very_same_folder_are_reused_not_scored_again(shared, tmp_path):
    config = TrainConfig(arch="squeezenet1_0", regime="scratch", data="", tests={"nopet": str(DEMO / "test_out_nopet")})
    compared = compare.compare(tmp_path, config, prepare_tests(config))
    assert compared["photos_scored"] == 0
    (default,) = catalog.comparisons(catalog.ModelRecord("run", "", "", "", "captive", "", True, "completed", path=tmp_path))
    assert default.reused == ("nopet",)
    card = catalog.default_model().results["test_out_nopet"]
    assert default.results["nopet"].precision_at_threshold == pytest.approx(card.precision_at_threshold, abs=5e-5)
    assert default.results["nopet"].f_score == pytest.approx(card.f_score, abs=5e-5)


def test_the_model_a_run_replaces_is_compared_too(completed_run, tmp_path):
    test = completed_run.parents[1] / "test_out_pet"
    config = TrainConfig(arch="squeezenet1_0", regime="scratch", data="", tests={"market": str(test)}, replaces=str(completed_run))
    compared = compare.compare(tmp_path, config, prepare_tests(config))
    assert compared["photos_scored"] == 60  # the default model scores the folder; the replaced run's own scores of it are reused
    default, replaced = catalog.comparisons(catalog.ModelRecord("run", "", "", "", "captive", "", True, "completed", path=tmp_path))
    assert (default.role, default.reused) == ("default", ())
    assert (replaced.role, replaced.key, replaced.reused) == ("replaced", completed_run.name, ("market",))
    assert replaced.label == f"the model it replaces ({completed_run.name})"
    own = catalog.read_model(completed_run).results["test_out_pet"]
    assert replaced.results["market"].precision_at_threshold == pytest.approx(own.precision_at_threshold)
    assert replaced.results["market"].confusion == own.confusion


def test_a_run_worse_than_the_default_model_is_told_in_a_plain_sentence():
    def result(precision: float, f_score: float) -> catalog.Evaluation:
        return catalog.Evaluation(100, 0.9, f_score, 0.9, 0.9, 0.5, precision_at_threshold=precision, recall_at_threshold=0.9)

    sentence = compare.worse_sentence("test_out_nopet", result(0.58, 0.70), result(0.88, 0.90), "the default model", "captive")
    assert sentence == (
        "On test_out_nopet, this run is worse than the default model: of every 100 photos it flags, about 58 really are "
        "captive / for sale, against about 88 for the default model; its F-score is 0.70 against 0.90."
    )
    assert compare.worse_sentence("test_out_nopet", result(0.88, 0.90), result(0.885, 0.90), "the default model", "captive") is None


def test_a_run_without_a_comparison_says_why():
    record = catalog.ModelRecord("run", "", "", "", "captive", "", True, "completed", results={"test_in": None}, path=None)
    assert compare.table(record) == (None, [], [compare.NOT_COMPARED])
