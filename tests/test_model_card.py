"""The shipped default model: it loads offline, predicts, and its model card's numbers hold."""

import pytest

from conftest import DEMO, write_image
from helpers import run_cli
from wildvision import model_card, runs, wording
from wildvision.data import scan_folder
from wildvision.evaluate import compute_metrics, resolve_device
from wildvision.predict import load_model, predict_paths
from wildvision.training.config import TrainConfig
from wildvision.training.train import evaluate_run_model


def test_default_model_predicts_a_generated_image_without_shared_data(tmp_path):
    image = write_image(tmp_path / "photo.jpg", seed=3, size=(320, 240))
    result = run_cli("predict", str(image))
    assert result.returncode == 0, result.stderr[-2000:]
    header, line = result.stdout.strip().splitlines()
    path, probability, label, unlike, unusual = line.split(",")
    assert header == "path,probability,label,unlike_training,unusual" and path == str(image)
    assert 0 <= float(probability) <= 1 and label in ("captive", "not_captive")
    assert float(unlike) > 0 and unusual == "true"  # random noise is unlike any photo the default model learnt from


def test_model_card_renders_its_numbers_and_limits():
    card = model_card.load_card()
    text = model_card.card_markdown(card)
    assert "PROXY" in text and wording.line_text(card["threshold"]["value"]) in text
    if "below_floor" in card["threshold"]:  # the rule's floor put the line at 0.5: the card says where test_in alone put it, and why not there
        assert wording.line_text(card["threshold"]["below_floor"]) in text and "never put below 50%" in text
    assert set(card["metrics"]) == {"test_in", "test_out_pet", "test_out_nopet"}
    assert f"{card['metrics']['test_out_pet']['f_score']:.3f}" in text


def test_default_threshold_is_the_one_in_the_card():
    loaded = load_model("default")
    assert loaded.arch == "efficientnet_lite0"
    assert loaded.threshold == pytest.approx(model_card.load_card()["threshold"]["value"], abs=1e-4)


def test_model_card_metrics_hold_when_measured_again(shared):
    card = model_card.load_card()
    loaded = load_model("default")
    split = runs.read_json(model_card.DEFAULT_DIR / runs.SPLIT)
    train = {str(s.path.relative_to(DEMO / "train")): s for s in scan_folder(DEMO / "train", with_background=True)}
    test_sets = {"test_in": [train[p] for p in split["test_in"]]} | {name: scan_folder(DEMO / name) for name in ("test_out_pet", "test_out_nopet")}
    config = TrainConfig(arch="efficientnet_lite0", regime="transfer", data=str(DEMO / "train"), num_workers=2)
    results, scores, _ = evaluate_run_model(loaded.model, config, test_sets, resolve_device("cpu"), loaded.threshold)
    for name, measured in results.items():
        stored = card["metrics"][name]
        assert measured["n_images"] == stored["n_images"]
        for metric in ("accuracy", "f_score", "precision", "recall", "positive_precision"):
            assert measured[metric] == pytest.approx(stored[metric], abs=0.01), (name, metric)
        for metric in ("positive_precision", "positive_recall"):
            assert measured["at_threshold"][metric] == pytest.approx(stored["at_threshold"][metric], abs=0.01), (name, metric)
    # the saved scores are the ones the model gives now
    predictions = predict_paths(loaded, [s.path for s in test_sets["test_out_nopet"][:20]])
    saved = runs.read_json(model_card.DEFAULT_DIR / runs.SCORES)["test_out_nopet"]["probabilities"][:20]
    assert [p.probability for p in predictions] == pytest.approx(saved, abs=1e-4)
    assert compute_metrics(scores["test_in"]["labels"], scores["test_in"]["probabilities"])["n_images"] == len(split["test_in"])


def _metrics(inside: tuple[float, float], **outside: tuple[float, float]) -> dict:
    """Card metrics with (positive precision, positive recall) at the threshold per test set."""
    sets = {"test_in": inside} | outside
    return {name: {"at_threshold": {"positive_precision": p, "positive_recall": r}} for name, (p, r) in sets.items()}


def test_limitations_name_precision_when_only_precision_falls():
    text = " ".join(model_card.limitations(_metrics((0.95, 0.98), test_out_pet=(0.30, 0.99))))
    assert "false alarms, not missed cases" in text and "30%" in text and "99%" in text
    assert "fewer true positives" not in text and "missed cases, not" not in text


def test_limitations_name_recall_when_only_recall_falls():
    text = " ".join(model_card.limitations(_metrics((0.95, 0.98), test_out_pet=(0.93, 0.40))))
    assert "missed cases, not false alarms" in text and "40%" in text


def test_limitations_say_which_set_fools_the_model_most():
    items = model_card.limitations(_metrics((0.95, 0.98), test_out_pet=(0.30, 0.99), test_out_nopet=(0.57, 0.99)))
    assert "test_out_pet fools it most: its flags are right least often there." in items


def test_the_shipped_card_says_what_its_own_numbers_say():
    card = model_card.load_card()
    assert card["limitations"] == model_card.limitations(card["metrics"])
    rendered = model_card.card_markdown(card)
    assert "far fewer true positives" not in rendered
    pet = card["metrics"]["test_out_pet"]["at_threshold"]
    assert f"only {pet['positive_precision']:.0%} of the photos it flags are captive" in rendered
