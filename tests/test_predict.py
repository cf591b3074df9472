"""Batch prediction: predict_paths must give, in input order, what one image at a time gives, errors included."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from conftest import DEMO
from wildvision.data import eval_transform
from wildvision.images import ImageError, open_image
from wildvision.inference import default_batch_size, loader_threads
from wildvision.predict import Prediction, load_model, predict_paths


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


@pytest.fixture
def mixed_paths(shared, tmp_path):
    """Real demo photos with unreadable files among them: first, in the middle of a batch, twice in a row, last."""
    photos = sorted((DEMO / "test_out_pet" / "captive").iterdir())[:4] + sorted((DEMO / "test_out_nopet" / "other").iterdir())[:4]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:2000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    missing = tmp_path / "missing.jpg"
    return [truncated, *photos[:3], empty, text, *photos[3:6], missing, *photos[6:], truncated]


def one_at_a_time(loaded, paths) -> list[Prediction]:
    """The reference: open, transform and score each image on its own."""
    transform = eval_transform(loaded.normalisation)
    predictions = []
    with torch.inference_mode():
        for path in paths:
            try:
                tensor = transform(open_image(path))
            except ImageError as error:
                predictions.append(Prediction(str(path), None, None, error.reason))
                continue
            probability = torch.softmax(loaded.model(tensor[None].to(memory_format=torch.channels_last)), dim=1)[0, 1].item()
            predictions.append(Prediction(str(path), probability, loaded.label_for(probability)))
    return predictions


def assert_same(batched: list[Prediction], reference: list[Prediction]) -> None:
    assert [p.path for p in batched] == [p.path for p in reference]
    assert [p.error for p in batched] == [p.error for p in reference]
    assert [p.label for p in batched] == [p.label for p in reference]
    for got, expected in zip(batched, reference):
        if expected.error is None:
            assert got.probability == pytest.approx(expected.probability, abs=1e-5), got.path
        else:
            assert got.probability is None


@pytest.mark.parametrize("batch_size, workers", [(3, 2), (None, None), (32, 1)])
def test_batches_keep_order_errors_and_scores_of_one_at_a_time(default_model, mixed_paths, batch_size, workers):
    reference = one_at_a_time(default_model, mixed_paths)
    assert sum(p.error is not None for p in reference) == 5 and "truncated" in reference[0].error
    assert_same(predict_paths(default_model, mixed_paths, batch_size, workers), reference)


def test_a_batch_of_only_unreadable_images_and_an_empty_list(default_model, tmp_path):
    bad = [tmp_path / f"missing{index}.jpg" for index in range(3)]
    assert [p.error for p in predict_paths(default_model, bad, batch_size=2)] == ["file not found"] * 3
    assert predict_paths(default_model, []) == []


def test_predicts_from_a_script_thread_as_streamlit_calls_it(default_model, mixed_paths):
    """Streamlit runs each page in its own thread; the loader threads must work from there too."""
    found = {}
    thread = threading.Thread(target=lambda: found.update(result=predict_paths(default_model, mixed_paths)))
    thread.start()
    thread.join(timeout=300)
    assert_same(found["result"], one_at_a_time(default_model, mixed_paths))


def test_defaults_suit_the_device_and_the_cores():
    assert default_batch_size(torch.device("cpu")) == 8 and default_batch_size(torch.device("cuda")) == 32
    cores = len(os.sched_getaffinity(0))
    assert 1 <= loader_threads() <= max(1, cores - 1)


def test_each_prediction_says_how_unlike_the_training_photos_its_image_is(shared, tmp_path):
    """The default model keeps a summary of its training photos: a noise image is unusual, a training photo is not."""
    import numpy as np
    from PIL import Image

    from wildvision.predict import load_model, predict_paths

    loaded = load_model("default")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(noise)
    photo = min((shared / "demo-data" / "train" / "captive").iterdir())
    unusual, usual = predict_paths(loaded, [noise, photo])
    assert unusual.unusual and unusual.unlike_training > loaded.novelty.warning_level
    assert not usual.unusual and usual.unlike_training <= loaded.novelty.warning_level
