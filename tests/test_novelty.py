"""Novelty scores: how far an image's backbone features lie from the model's training photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.conftest import DEMO, write_image
from wildvision import novelty, runs
from wildvision.data import eval_transform
from wildvision.images import open_image
from wildvision.model_card import DEFAULT_DIR
from wildvision.models import split_at_head
from wildvision.predict import load_model

SIZE_BUDGET = 2_000_000


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def clustered(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    """Features scattered around a few fixed directions, like photos of a few kinds of scene."""
    centres = np.random.default_rng(0).normal(size=(4, dim))
    return centres[rng.integers(0, 4, n)] + 0.3 * rng.normal(size=(n, dim))


def document(path):
    """A page of black lines of 'text' on white: nothing like a photo of an animal or a room."""
    page = Image.new("RGB", (600, 800), "white")
    draw = ImageDraw.Draw(page)
    for y in range(60, 760, 28):
        draw.rectangle((50, y, 50 + (y * 37) % 450 + 50, y + 10), fill="black")
    page.save(path)
    return path


def test_warning_level_puts_95_percent_of_test_in_at_or_below_it():
    rng = np.random.default_rng(1)
    train, test_in = clustered(rng, 600), clustered(rng, 400)
    summary = novelty.fit_summary(train, test_in, arch="resnet18", k=5, dims=16)
    scores = novelty.score(summary, test_in)
    assert np.mean(scores <= summary.warning_level) >= 0.95
    assert np.mean(summary.unusual(scores)) == pytest.approx(0.05, abs=1 / len(test_in))
    unreadable = np.full((3, train.shape[1]), np.nan)
    assert novelty.fit_summary(np.vstack([train, unreadable]), np.vstack([unreadable, test_in]), arch="resnet18", k=5, dims=16) == summary


def test_save_load_round_trip_is_equal(tmp_path):
    rng = np.random.default_rng(2)
    summary = novelty.fit_summary(clustered(rng, 100), clustered(rng, 50), arch="resnet18", k=1, dims=8)
    novelty.save(summary, tmp_path / novelty.FILE)
    loaded = novelty.load(tmp_path / novelty.FILE)
    assert loaded == summary
    features = clustered(rng, 10)
    assert np.array_equal(novelty.score(loaded, features), novelty.score(summary, features))


def test_unreadable_rows_score_nan_and_wrong_features_are_refused():
    rng = np.random.default_rng(3)
    summary = novelty.fit_summary(clustered(rng, 100), clustered(rng, 50), arch="resnet18", dims=8)
    features = clustered(rng, 3)
    features[1] = np.nan
    scores = novelty.score(summary, features)
    assert np.isnan(scores[1]) and not np.isnan(scores[[0, 2]]).any()
    assert not summary.unusual(scores)[1]
    with pytest.raises(ValueError, match="do not fit"):
        novelty.score(summary, np.ones((2, 31)))


def test_shipped_summary_exists_is_small_and_fits_the_default_model():
    path = DEFAULT_DIR / novelty.FILE
    assert path.is_file(), "run experiments/measure_novelty.py"
    assert path.stat().st_size < SIZE_BUDGET
    summary = novelty.load(path)
    assert summary.arch == "efficientnet_lite0"
    assert summary.mean.shape == (1280,) and summary.components.shape == (1280, summary.train.shape[1])
    assert summary.warning_level > 0


def test_head_input_is_the_backbone_output_of_split_at_head(default_model, tmp_path):
    image = write_image(tmp_path / "noise.png", seed=5, size=(300, 200))
    inputs = eval_transform(default_model.normalisation)(open_image(image))[None]
    backbone, _ = split_at_head(default_model.model, default_model.arch)
    with torch.inference_mode():
        expected = backbone.eval()(inputs)
    features = novelty.backbone_features(default_model, [image])
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_training_photo_is_usual_and_unlike_images_are_unusual(shared, default_model, tmp_path):
    summary = novelty.load(DEFAULT_DIR / novelty.FILE)
    held_back = set(runs.read_json(DEFAULT_DIR / runs.SPLIT)["test_in"])
    trained_on = next(p for p in sorted((DEMO / "train" / "captive").iterdir()) if f"captive/{p.name}" not in held_back)
    unreadable = tmp_path / "broken.jpg"
    unreadable.write_bytes(b"not an image")
    paths = [trained_on, write_image(tmp_path / "noise.png", seed=7, size=(320, 240)), document(tmp_path / "page.png"), unreadable]
    scores = novelty.score(summary, novelty.backbone_features(default_model, paths))
    assert scores[0] < summary.warning_level
    assert scores[1] > summary.warning_level and scores[2] > summary.warning_level, scores
    assert np.isnan(scores[3])
    assert list(summary.unusual(scores)) == [False, True, True, False]
