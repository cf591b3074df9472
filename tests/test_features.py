"""Stored backbone features: the same numbers the model would compute, reused until an input changes."""

import pytest
import torch

from conftest import make_class_folder, write_image
from wildvision import features
from wildvision.cache import content_hash, open_reduced
from wildvision.data import eval_transform, scan_folder, train_transform
from wildvision.models import build_model, split_at_head
from wildvision.training.train import train_head_epoch

ARCH = "squeezenet1_0"  # random init: no weights needed, and its stored output is a full feature map


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model = build_model(ARCH, "none").eval()
    backbone, tail = split_at_head(model, ARCH)
    samples = scan_folder(make_class_folder(tmp_path / "data", {"captive": 3, "wild": 3}))
    return model, backbone, tail, samples, tmp_path / "cache"


def compute(samples, backbone, cache, views=2, transform=lambda label: train_transform(label == 1), weights_arch=ARCH):
    calls = []
    result = features.backbone_features(
        samples,
        weights_arch,
        backbone,
        features.weights_digest(backbone),
        transform,
        views,
        seed=0,
        cache_dir=cache,
        device=torch.device("cpu"),
        progress=lambda done, total: calls.append(total),
    )
    return result, calls


def test_each_stored_view_is_the_backbone_output_of_that_augmented_view(setup):
    model, backbone, tail, samples, cache = setup
    stored, _ = compute(samples, backbone, cache)
    assert stored.features.shape == (6, 2, 512, 13, 13) and stored.features.dtype == torch.float16
    sample = samples[4]
    image = open_reduced(sample.path, cache)
    for view in range(2):
        torch.manual_seed(features.view_seed(content_hash(sample.path), view, 0))
        augmented = train_transform(sample.label == 1)(image).unsqueeze(0)
        with torch.no_grad():
            expected = backbone(augmented)[0]
            assert torch.allclose(stored.features[4, view].float(), expected, rtol=2e-3, atol=2e-3)
            assert torch.allclose(tail(stored.features[4:5, view].float()), model(augmented), rtol=1e-2, atol=1e-3)
    assert not torch.equal(stored.features[4, 0], stored.features[4, 1]), "two views should be two different augmentations"


def test_validation_logits_from_stored_features_equal_the_models(setup):
    model, backbone, tail, samples, cache = setup
    stored, _ = compute(samples, backbone, cache, views=1, transform=lambda label: eval_transform())
    inference = features.head_inference(tail, stored, torch.device("cpu"))
    images = torch.stack([eval_transform()(open_reduced(s.path, cache)) for s in samples])
    with torch.no_grad():
        assert torch.allclose(inference.logits, model(images), rtol=1e-2, atol=1e-3)
    assert inference.labels.tolist() == [s.label for s in samples]


def test_a_second_run_computes_nothing_and_an_edited_image_only_itself(setup):
    _, backbone, _, samples, cache = setup
    first, calls = compute(samples, backbone, cache)
    assert calls and calls[-1] == 6
    again, calls = compute(samples, backbone, cache)
    assert calls == [] and torch.equal(again.features, first.features)
    write_image(samples[0].path, seed=999)
    edited, calls = compute(samples, backbone, cache)
    assert calls == [1]
    assert not torch.equal(edited.features[0], first.features[0]) and torch.equal(edited.features[1:], first.features[1:])


def test_other_weights_views_or_transforms_never_reuse_entries(setup):
    _, backbone, _, samples, cache = setup
    compute(samples, backbone, cache)
    assert compute(samples, backbone, cache, views=3)[1][-1] == 6
    assert compute(samples, backbone, cache, transform=lambda label: train_transform(False))[1][-1] == 6
    with torch.no_grad():
        backbone[0].weight[0, 0, 0, 0] += 1e-3
    assert compute(samples, backbone, cache)[1][-1] == 6
    assert len(list((cache / "features").glob("*/key.json"))) == 4


def test_unreadable_images_are_left_out(setup):
    _, backbone, _, samples, cache = setup
    samples[2].path.write_bytes(b"not an image")
    stored, _ = compute(samples, backbone, cache)
    assert stored.indices.tolist() == [0, 1, 3, 4, 5] and len(stored.labels) == 5


def test_head_training_on_stored_features_lowers_the_training_loss(setup):
    _, backbone, tail, samples, cache = setup
    stored, _ = compute(samples, backbone, cache)
    optimizer = torch.optim.SGD(tail.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [train_head_epoch(tail, stored, optimizer, scaler, 3, seed, torch.device("cpu"))[0] for seed in range(15)]
    assert losses[-1] < losses[0]
