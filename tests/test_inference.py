"""The one batch-inference loop: every file a row in path order, failed files included, one pass for probability and novelty."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import write_image
from wildvision import classes, inference, novelty
from wildvision.data import eval_pixels, eval_transform
from wildvision.images import ImageError, open_image
from wildvision.predict import load_model


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


@pytest.fixture
def paths(tmp_path):
    """Two readable images around an unreadable one and a missing one, so batches of 2 split a good and a bad file."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    return [write_image(tmp_path / "a.png", seed=1), broken, tmp_path / "missing.jpg", write_image(tmp_path / "b.png", seed=2, size=(300, 200))]


def test_every_file_is_a_row_in_order_and_readable_rows_carry_probability_and_novelty(default_model, paths):
    batches = list(inference.batches(default_model, paths, batch_size=2, workers=1))
    rows = [row for batch in batches for row in batch.rows]
    assert [row.position for row in rows] == [0, 1, 2, 3]
    assert [row.error is None for row in rows] == [True, False, False, True]
    assert rows[2].error == "file not found" and rows[1].probability is None and rows[1].unlike_training is None
    with torch.inference_mode():
        logits = default_model.model(batches[0].inputs)
    assert rows[0].probability == pytest.approx(torch.softmax(logits, dim=1)[0, classes.POSITIVE].item(), abs=1e-6)
    features = novelty.backbone_features(default_model, [paths[0], paths[3]])
    expected = novelty.score(default_model.novelty, features)
    assert [rows[0].unlike_training, rows[3].unlike_training] == pytest.approx(expected.tolist(), abs=1e-6)
    assert batches[1].inputs.shape[0] == 1 and [row.position for row in batches[1].readable] == [3]


def test_a_model_without_a_summary_scores_no_novelty_and_features_come_from_the_same_pass(default_model, paths):
    bare = dataclasses.replace(default_model, novelty=None)
    (batch,) = inference.batches(bare, paths[:1] + paths[3:], batch_size=4, features=True)
    assert [row.unlike_training for row in batch.rows] == [None, None]
    assert batch.features.shape == (2, default_model.novelty.mean.shape[0])
    np.testing.assert_allclose(batch.features.numpy(), novelty.backbone_features(default_model, paths[:1] + paths[3:]), rtol=1e-4, atol=1e-5)


def test_a_caller_with_its_own_pass_gets_the_inputs_and_what_prepare_made(default_model, paths):
    """As screening does: prepare never raises, and a file it could hash but not decode has no tensor (an unscored row)."""

    def prepare(path):
        try:
            return path.name, inference.image_input(default_model)(path)
        except ImageError:
            return path.name, None

    rows = []
    for batch in inference.batches(default_model, paths, prepare, tensor=lambda prepared: prepared[1], batch_size=3, run_forward=False):
        assert batch.inputs is None or batch.inputs.shape[0] == len(batch.readable)
        rows += batch.rows
    assert [row.prepared[0] for row in rows] == [path.name for path in paths]
    assert all(row.error is None and row.probability is None for row in rows)


def test_the_positive_class_and_probability_are_read_in_one_place():
    assert classes.positive_class(["wild", "captive"]) == "captive"
    logits = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert inference.positive_probabilities(logits).tolist() == pytest.approx([0.5, 1 / (1 + np.exp(-2))])


def test_batches_normalised_at_once_equal_the_per_photo_eval_transform(default_model, paths):
    images = [open_image(paths[0]), open_image(paths[3])]
    per_photo = torch.stack([eval_transform(default_model.normalisation)(image) for image in images])
    batched = inference.stack_inputs(default_model, [eval_pixels()(image) for image in images])
    assert batched.dtype == torch.float32 and batched.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(batched, per_photo, rtol=0, atol=1e-6)
