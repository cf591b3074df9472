"""explain_checks on real inputs: the shipped default model (EfficientNet-Lite0) and a few demo photos."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from wildvision.explain import checks, saliency, session
from wildvision.images import open_image
from wildvision.predict import load_model


def state_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def loaded():
    return load_model("default")


@pytest.fixture(scope="module")
def photos(shared):
    folder = shared / "demo-data" / "test_out_pet"
    paths = sorted((folder / "captive").iterdir())[:2] + sorted((folder / "other").iterdir())[:2]
    return [open_image(path) for path in paths]


def test_randomisation_flags_guided_backprop_and_leaves_the_model_alone(loaded, photos):
    before = state_digest(loaded.model)
    flags = [p.requires_grad for p in loaded.model.parameters()]
    results = checks.randomisation_test(loaded, photos, stages=(0.0, 0.5, 1.0))
    assert state_digest(loaded.model) == before
    assert [p.requires_grad for p in loaded.model.parameters()] == flags
    assert set(session.hook_counts(loaded.model).values()) == {0}
    assert not loaded.model.training

    assert set(results) == {"saliency", "gradcam", "guided_backprop"}
    assert results["saliency"].passed and results["gradcam"].passed
    assert not results["guided_backprop"].passed
    assert results["guided_backprop"].spearman[0] > 0.95  # unchanged with a random head: Adebayo et al.'s finding
    for result in results.values():
        assert result.stages[0] == "head" and result.stages[-1] == "all layers" and len(result.stages) == 3
        assert all(-1 <= value <= 1 for value in result.spearman + result.ssim)

    content = json.loads(json.dumps(checks.sanity_json(results)))
    assert content["threshold"] == checks.SPEARMAN_THRESHOLD
    assert content["methods"]["guided_backprop"]["passed"] is False
    assert content["methods"]["saliency"]["passed"] is True
    assert len(content["methods"]["gradcam"]["spearman"]) == len(content["methods"]["gradcam"]["ssim"]) == 3


def test_guided_backprop_is_a_control_not_a_choice():
    assert "guided_backprop" in saliency.CONTROL_METHODS
    assert "guided_backprop" not in saliency.METHODS
    assert saliency.FAST_METHODS == ("saliency", "gradcam")


def test_deletion_curve_starts_at_the_photo_and_has_areas_in_0_1(loaded, photos):
    image = photos[0]
    explanation = saliency.explain(loaded, image, "gradcam")
    curve = checks.deletion_curve(loaded, image, explanation.heatmap, steps=10)
    assert len(curve.fractions) == len(curve.salient) == len(curve.random) == 11
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1
    assert curve.salient[0] == pytest.approx(explanation.probability, abs=1e-4)
    assert curve.random[0] == pytest.approx(explanation.probability, abs=1e-4)
    assert curve.salient[-1] == pytest.approx(curve.random[-1], abs=1e-6)  # every pixel removed either way
    for area in (curve.auc, curve.random_auc):
        assert math.isfinite(area) and 0 <= area <= 1

    summary = checks.deletion_summary(loaded, photos[:2], ("saliency",), steps=10)
    assert set(summary["saliency"]) == {"auc", "random_auc", "images", "lower_than_random"}
    assert summary["saliency"]["images"] == 2
    assert 0 <= summary["saliency"]["auc"] <= 1 and 0 <= summary["saliency"]["random_auc"] <= 1


def test_border_share():
    border = np.zeros((100, 80), dtype=np.float32)
    border[:10] = 1
    border[:, -8:] = 0.5
    assert checks.border_share(border) == pytest.approx(1.0)

    rows, cols = np.mgrid[:100, :80]
    blob = np.exp(-(((rows - 50) / 6) ** 2 + ((cols - 40) / 6) ** 2)).astype(np.float32)
    assert checks.border_share(blob) < 0.01
    assert checks.border_share(np.ones((50, 50))) == pytest.approx(1 - 0.8**2)
    assert checks.border_share(np.zeros((20, 20))) == 0.0


def test_ssim_and_spearman_of_maps():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    assert checks.ssim(a, a) == pytest.approx(1.0)
    assert checks.spearman(a, a) == pytest.approx(1.0)
    assert checks.ssim(a, rng.random((64, 64))) < 0.2
    assert checks.spearman(a, np.zeros((64, 64))) == 0.0  # a blank map shares no ranks
