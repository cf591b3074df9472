"""Saliency maps on real models: the session's trained SqueezeNet run, and random-init models of other architectures."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO
from wildvision.data import eval_transform
from wildvision.explain import saliency, session
from wildvision.images import open_image
from wildvision.models import ARCHITECTURES, architecture, build_model, head
from wildvision.predict import LoadedModel, load_model, predict_paths

FAST = ("saliency", "gradcam")


class ScriptStopped(BaseException):
    """Like Streamlit's StopException: raised inside a progress callback when the user leaves the page."""


@pytest.fixture(scope="module")
def loaded(completed_run) -> LoadedModel:
    return load_model(completed_run)


@pytest.fixture(scope="module")
def demo_paths(shared):
    captive = sorted((DEMO / "test_out_pet" / "captive").iterdir())[:2]
    other = sorted((DEMO / "test_out_pet" / "other").iterdir())[:2]
    return captive + other


def random_init(arch: str) -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(arch, "none").to(memory_format=torch.channels_last).eval()
    return LoadedModel(model, arch, ["not_captive", "captive"], 0.5, f"random {arch}", torch.device("cpu"))


def assert_valid_map(heatmap: np.ndarray, image: Image.Image) -> None:
    assert heatmap.shape == (image.height, image.width)
    assert heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert heatmap.std() > 0.01, "the map must not be constant"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_names_a_gradcam_layer_with_a_spatial_map(arch):
    """Checked on the meta device: no weights, no compute, so every architecture (VGG19, ResNet152...) is cheap."""
    with torch.device("meta"):
        model = build_model(arch).eval()
    layer = saliency.target_layer(model, arch)
    shapes = []
    handle = layer.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    try:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    finally:
        handle.remove()
    assert len(shapes) == 1, f"{architecture(arch).gradcam_layer} must run exactly once per forward pass"
    _, channels, height, width = shapes[0]
    assert channels >= 256 and 7 <= height <= 14 and height == width


@pytest.mark.parametrize("method", FAST)
def test_trained_model_map_is_image_sized_in_range_and_not_constant(loaded, demo_paths, method):
    image = open_image(demo_paths[0])
    result = saliency.explain(loaded, image, method)
    assert result.method == method and not result.blank
    assert_valid_map(result.heatmap, image)
    (prediction,) = predict_paths(loaded, [demo_paths[0]])
    assert result.probability == pytest.approx(prediction.probability, abs=1e-4)
    assert result.label == prediction.label


def test_saliency_differs_between_two_images(loaded, demo_paths):
    first, second = (open_image(path) for path in demo_paths[:2])
    size = (120, 90)
    a, b = (saliency.explain(loaded, image, "saliency", size=size).heatmap for image in (first, second))
    assert a.shape == b.shape == (90, 120)
    assert np.abs(a - b).mean() > 0.05


def test_batched_explanations_equal_one_at_a_time(loaded, demo_paths):
    images = [open_image(path) for path in demo_paths]
    fractions = []
    together = saliency.explain_many(loaded, images, "gradcam", progress=fractions.append, batch_size=3)
    alone = [saliency.explain(loaded, image, "gradcam") for image in images]
    for batched, single, image in zip(together, alone, images):
        assert_valid_map(batched.heatmap, image)
        assert np.allclose(batched.heatmap, single.heatmap, atol=1e-3)
        assert batched.probability == pytest.approx(single.probability, abs=1e-5)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_squeezenet_clamped_output_falls_back_to_the_score_difference(loaded, demo_paths):
    """SqueezeNet's head ends in a ReLU: where it clamps the positive output to 0, the paper's map would be blank."""
    images = [open_image(path) for path in demo_paths]
    with torch.inference_mode():
        logits = loaded.model(torch.stack([eval_transform()(image) for image in images]))
    for image, result, positive in zip(images, saliency.explain_many(loaded, images, "saliency"), logits[:, 1].tolist()):
        assert result.target == ("score difference" if positive == 0 else "positive output")
        assert_valid_map(result.heatmap, image)
    clamped = random_init("squeezenet1_0")
    with torch.no_grad():  # a head whose positive output is always clamped to 0, and whose negative one never is
        head(clamped.model, "squeezenet1_0").bias.copy_(torch.tensor([10.0, -1000.0]))
    result = saliency.explain(clamped, images[0], "saliency")
    assert result.target == "score difference" and result.probability < 1e-3
    assert_valid_map(result.heatmap, images[0])
    # Grad-CAM keeps only regions that raise the score; with this head none does, so its map may stay dark.
    assert saliency.explain(clamped, images[0], "gradcam").target == "score difference"


def test_integrated_gradients_reports_progress_to_the_end(loaded, demo_paths):
    image = open_image(demo_paths[0])
    fractions = []
    result = saliency.explain(loaded, image, "integrated_gradients", progress=fractions.append, n_steps=16)
    assert_valid_map(result.heatmap, image)
    assert len(fractions) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0


def total_variation(heatmap: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: how speckled a map is."""
    return float(np.abs(np.diff(heatmap, axis=0)).mean() + np.abs(np.diff(heatmap, axis=1)).mean())


def test_smoothgrad_is_a_smoother_saliency_map_with_the_photos_own_score(loaded, demo_paths):
    """SmoothGrad averages saliency over noisy copies: less speckle; its probability comes from the photo itself."""
    images = [open_image(path) for path in demo_paths]
    fractions = []
    smooth = saliency.explain_many(loaded, images, "smoothgrad", progress=fractions.append, sizes=[(224, 224)] * len(images))
    plain = saliency.explain_many(loaded, images, "saliency", sizes=[(224, 224)] * len(images))
    expected = predict_paths(loaded, demo_paths)
    for result, prediction in zip(smooth, expected):
        assert result.method == "smoothgrad" and result.probability == pytest.approx(prediction.probability, abs=1e-5)
        assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0 and result.heatmap.std() > 0.01
    assert np.mean([total_variation(r.heatmap) for r in smooth]) < 0.8 * np.mean([total_variation(r.heatmap) for r in plain])  # 0.59 measured
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.parametrize("arch", ["alexnet", "resnet18", "densenet121", "mobilenet_v2"])
def test_gradcam_runs_on_random_init_models(arch):
    loaded = random_init(arch)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    for method in FAST:
        result = saliency.explain(loaded, image, method)
        assert result.heatmap.shape == (48, 64) and 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    assert sum(session.hook_counts(loaded.model).values()) == 0


def test_gradcam_equals_a_hand_computed_reference_through_an_in_place_relu():
    """AlexNet's Grad-CAM layer is an in-place ReLU: captum must still see the rectified conv5 maps and their gradients."""
    loaded = random_init("alexnet")
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8))
    result = saliency.explain(loaded, image, "gradcam", size=(13, 13))  # the layer's own 13 x 13 grid: no resampling
    features = {}

    def keep(module, inputs, output):
        features["a"] = output.clone()
        features["a"].retain_grad()
        return features["a"]

    handle = saliency.target_layer(loaded.model, "alexnet").register_forward_hook(keep)
    try:
        loaded.model(eval_transform()(image)[None])[0, 1].backward()
    finally:
        handle.remove()
        loaded.model.zero_grad(set_to_none=True)
    activation, gradient = features["a"].detach(), features["a"].grad
    cam = torch.relu((gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1))[0]
    assert np.allclose(result.heatmap, (cam / cam.max()).numpy(), atol=1e-4)


def test_a_failure_mid_attribution_leaves_no_hooks_and_restores_flags_and_modes(loaded, demo_paths):
    image = open_image(demo_paths[0])
    model = loaded.model
    layer = saliency.target_layer(model, loaded.arch)
    frozen = next(model.parameters())
    frozen.requires_grad_(False)  # as a caller might have it; must come back exactly so
    model.features[0].train()  # an odd mode, to see that modes are restored per module and not just set to eval
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]

    def fail_on_gradient_pass(module, inputs, output):
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
            raise RuntimeError("simulated failure mid-attribution")

    failing = head(model, loaded.arch).register_forward_hook(fail_on_gradient_pass)
    try:
        before = session.hook_counts(model)
        with pytest.raises(RuntimeError, match="simulated failure"):
            saliency.explain(loaded, image, "gradcam")
        assert session.hook_counts(model) == before
        assert not layer._forward_hooks and not layer._forward_pre_hooks and not layer._backward_hooks
    finally:
        failing.remove()

    def stop(fraction: float) -> None:
        raise ScriptStopped()

    with pytest.raises(ScriptStopped):
        saliency.explain(loaded, image, "integrated_gradients", n_steps=16, progress=stop)
    try:
        assert sum(session.hook_counts(model).values()) == 0
        assert [p.requires_grad for p in model.parameters()] == flags
        assert [m.training for m in model.modules()] == modes
        assert loaded.lock.acquire(blocking=False), "the model's lock must be released after a failure"
        loaded.lock.release()
    finally:
        frozen.requires_grad_(True)
        model.eval()
    assert saliency.explain(loaded, image, "gradcam").heatmap.std() > 0.01  # and the model still works


def test_concurrent_explanations_equal_sequential_ones(loaded, demo_paths):
    images = [open_image(path) for path in demo_paths[:2]]
    jobs = [(index, method) for index in range(len(images)) for method in FAST] * 2
    sequential = {(i, m): saliency.explain(loaded, images[i], m) for i, m in jobs}
    start = threading.Barrier(4)  # all four threads ask at once

    def run(job):
        start.wait(timeout=60)
        index, method = job
        return job, saliency.explain(loaded, images[index], method)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    for job, result in results:
        assert np.array_equal(result.heatmap, sequential[job].heatmap), job
        assert result.probability == sequential[job].probability
    assert sum(session.hook_counts(loaded.model).values()) == 0


def test_overlay_is_aligned_with_the_upright_image(tmp_path, loaded):
    """A portrait photo stored landscape with EXIF orientation 6: map and overlay follow the upright pixels."""
    pixels = np.zeros((60, 100, 3), dtype=np.uint8)
    pixels[:, :50] = 255  # stored left half white: after the 90-degree turn, the top half is white
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    upright = open_image(path)
    assert upright.size == (60, 100)
    result = saliency.explain(loaded, upright, "gradcam")
    assert result.heatmap.shape == (100, 60)
    blended = saliency.overlay(upright, result.heatmap, alpha=0.5)
    assert blended.size == upright.size and blended.mode == "RGB"
    ramp = np.tile(np.linspace(0, 1, 60, dtype=np.float32), (100, 1))  # a known map: dark left, bright right
    shown = np.asarray(saliency.overlay(Image.new("RGB", (60, 100)), ramp, alpha=1.0)).astype(int).sum(axis=2)
    assert shown[:, :10].mean() < shown[:, -10:].mean()
    assert np.array_equal(np.asarray(saliency.colorize(np.zeros((2, 2))))[0, 0], saliency.COLORMAP[0])


def test_unknown_method_is_a_clear_error(loaded):
    with pytest.raises(saliency.ExplainError, match="choose one of"):
        saliency.explain(loaded, Image.new("RGB", (32, 32)), "lime")


@pytest.fixture(scope="module")
def default_model() -> LoadedModel:
    """The shipped EfficientNet-Lite0: unlike SqueezeNet it has BatchNorm layers, which attribution runs as _EvalBatchNorm."""
    return load_model("default")


def test_batched_saliency_equals_one_at_a_time_and_restores_the_model(default_model, demo_paths):
    model = default_model.model
    first = next(model.parameters())
    first.requires_grad_(False)  # a caller's own mix of flags and modes must come back exactly
    model._fc.train()
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    try:
        images = [open_image(path) for path in demo_paths] + [open_image(demo_paths[0]).rotate(90, expand=True)]
        for method in FAST:
            together = saliency.explain_many(default_model, images, method, batch_size=3)
            alone = [saliency.explain(default_model, image, method) for image in images]
            for batched, single, image in zip(together, alone, images):
                assert_valid_map(batched.heatmap, image)
                assert np.allclose(batched.heatmap, single.heatmap, atol=1e-4), method
                assert batched.probability == pytest.approx(single.probability, abs=1e-5)
                assert batched.target == single.target == "positive output"
            assert [p.requires_grad for p in model.parameters()] == flags
            assert [m.training for m in model.modules()] == modes
            assert not [m for m in model.modules() if "forward" in m.__dict__], "BatchNorm forwards must be put back"
            assert sum(session.hook_counts(model).values()) == 0

        def stop(fraction: float) -> None:
            raise ScriptStopped()

        with pytest.raises(ScriptStopped):  # the user leaves the page after the first batch
            saliency.explain_many(default_model, images, "saliency", progress=stop, batch_size=2)
        assert [p.requires_grad for p in model.parameters()] == flags
        assert [m.training for m in model.modules()] == modes
        assert not [m for m in model.modules() if "forward" in m.__dict__]
    finally:
        first.requires_grad_(True)
        model.eval()
    predicted = predict_paths(default_model, demo_paths + [demo_paths[0]])
    assert [e.probability for e in together[:-1]] == pytest.approx([p.probability for p in predicted[:-1]], abs=1e-5)


def test_saliency_equals_plain_autograd_with_pytorchs_own_batchnorm_backward(default_model, demo_paths):
    """_EvalBatchNorm and the percentile from top values must leave the paper's map as plain autograd and torch.quantile make it."""
    images = [open_image(path) for path in demo_paths]
    maps = saliency.explain_many(default_model, images, "saliency", sizes=[(224, 224)] * len(images))
    batch = torch.stack([eval_transform(default_model.normalisation)(image) for image in images]).contiguous(memory_format=torch.channels_last)
    batch.requires_grad_()
    (gradient,) = torch.autograd.grad(default_model.model(batch)[:, 1].sum(), batch)
    default_model.model.zero_grad(set_to_none=True)
    flat = gradient.abs().amax(dim=1).flatten(1)
    reference = (flat / torch.quantile(flat, 0.99, dim=1)[:, None]).clamp(0, 1).reshape(-1, 224, 224)
    for result, expected in zip(maps, reference):
        assert np.allclose(result.heatmap, expected.numpy(), atol=1e-4)


def test_percentile_from_top_values_equals_torch_quantile():
    generator = torch.Generator().manual_seed(0)
    spiky = torch.rand(4, 5000, generator=generator) ** 8
    sparse = torch.where(torch.rand(4, 5000, generator=generator) < 0.995, 0.0, spiky)
    tied = (spiky * 3).round()
    for flat in (spiky, sparse, tied):
        for percentile in (0.0, 50.0, 99.0, 100.0):
            assert torch.allclose(saliency._percentile(flat, percentile), torch.quantile(flat, percentile / 100, dim=1), rtol=1e-6, atol=0)


# --- examine: what the Predict page shows, from one decode ---------------------------------------


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """The files wildvision.explain.saliency decodes, in order, recorded by a wrapper that still calls the real open_image."""
    opened: list[str] = []

    def counted(path):
        opened.append(str(path))
        return open_image(path)

    monkeypatch.setattr(saliency, "open_image", counted)
    return opened


@pytest.mark.parametrize("method", FAST)
def test_examine_gives_predict_paths_scores_explain_many_maps_and_display_photos_from_one_decode(default_model, demo_paths, tmp_path, decodes, method):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(demo_paths[0].read_bytes()[:1500])
    paths = [demo_paths[0], broken, *demo_paths[1:], tmp_path / "missing.jpg"]
    examined = saliency.examine(default_model, paths, method, display_max=200, batch_size=3)
    assert sorted(decodes) == sorted(map(str, paths)), "each file decoded once"

    predicted = predict_paths(default_model, paths)
    assert [e.path for e in examined] == [p.path for p in predicted] == list(map(str, paths))
    assert [e.error for e in examined] == [p.error for p in predicted] and "truncated" in examined[1].error and examined[-1].error == "file not found"
    readable = [(e, p) for e, p in zip(examined, predicted) if p.error is None]
    assert len(readable) == 4 and all(e.image is None and e.explanation is None for e in examined if e.error)
    for e, p in readable:
        assert e.explanation.probability == pytest.approx(p.probability, abs=1e-5), e.path
        assert e.explanation.label == p.label and e.explanation.method == method
        assert e.explanation.unlike_training == pytest.approx(p.unlike_training, abs=1e-4) and e.explanation.unusual == p.unusual

    photos = [open_image(path) for path in demo_paths]
    for photo in photos:
        photo.thumbnail((200, 200))
    sizes = [photo.size for photo in photos]
    assert all(max(size) == 200 for size in sizes), "the demo photos are larger than 200 pixels, so they were shrunk"
    maps = saliency.explain_many(default_model, [open_image(path) for path in demo_paths], method, sizes=sizes)
    for (e, _), photo, expected in zip(readable, photos, maps):
        assert e.image.size == photo.size and np.array_equal(np.asarray(e.image), np.asarray(photo)), "the photo as Image.thumbnail shrinks it"
        assert e.explanation.heatmap.shape == (photo.height, photo.width)
        assert np.allclose(e.explanation.heatmap, expected.heatmap, atol=1e-5), e.path
        assert e.explanation.target == expected.target
    assert sum(session.hook_counts(default_model.model).values()) == 0
    assert saliency.examine(default_model, [], method) == []


def test_examine_makes_integrated_gradients_with_progress(default_model, demo_paths):
    fractions: list[float] = []
    (examined,) = saliency.examine(default_model, demo_paths[:1], "integrated_gradients", display_max=640, progress=fractions.append, n_steps=24)
    expected = saliency.explain(default_model, open_image(demo_paths[0]), "integrated_gradients", n_steps=24)
    assert examined.explanation.method == "integrated_gradients"
    assert np.allclose(examined.explanation.heatmap, expected.heatmap, atol=1e-5)
    assert examined.explanation.probability == pytest.approx(expected.probability, abs=1e-6)
    (predicted,) = predict_paths(default_model, demo_paths[:1])  # the photo's own features, not the blends with black
    assert examined.explanation.unlike_training == pytest.approx(predicted.unlike_training, abs=1e-4)
    assert len(fractions) > 2 and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_one_loaded_model_explains_and_predicts_in_two_threads_as_one_at_a_time(default_model, demo_paths):
    """Grad-CAM's hook sits on a layer of the shared network: a forward pass of another thread must never reach it.

    The model's own lock, taken inside predict_paths and explain, keeps them apart; no caller holds it. Without the
    lock in predict_paths this failed in 4 of 5 runs (captum differentiates the other thread's output): the window is
    the short tail of a forward pass after the Grad-CAM layer.
    """
    images = [open_image(path) for path in demo_paths]
    maps = [e.heatmap for e in saliency.explain_many(default_model, images, "gradcam")]
    scores = [p.probability for p in predict_paths(default_model, demo_paths)]
    start, explained_all = threading.Barrier(2), threading.Event()

    def explaining() -> list[list[np.ndarray]]:
        start.wait(timeout=60)
        try:
            return [[e.heatmap for e in saliency.explain_many(default_model, images, "gradcam", batch_size=1)] for _ in range(16)]
        finally:
            explained_all.set()

    def predicting() -> list[list[float]]:  # one image per forward pass, for as long as the other thread explains
        start.wait(timeout=60)
        rounds: list[list[float]] = []
        while not rounds or not explained_all.is_set():
            rounds.append([p.probability for p in predict_paths(default_model, demo_paths, batch_size=1, workers=1)])
        return rounds

    with ThreadPoolExecutor(max_workers=2) as pool:
        explained, predicted = pool.submit(explaining), pool.submit(predicting)
        explained, predicted = explained.result(timeout=600), predicted.result(timeout=600)
    for round_maps in explained:
        assert all(np.allclose(got, expected, atol=1e-5) for got, expected in zip(round_maps, maps))
    for round_scores in predicted:
        assert round_scores == pytest.approx(scores, abs=1e-6)
    assert sum(session.hook_counts(default_model.model).values()) == 0
