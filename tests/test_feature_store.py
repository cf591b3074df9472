"""The feature store: a transfer run evaluates and summarises its photos from stored features, the store stays under
its bound, survives entries vanishing under it, is shared by concurrent runs, and `cache info` / `cache clear` show
and empty it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SQUEEZENET_WEIGHTS, demo_subset, make_class_folder, write_image
from wildvision import feature_store, features, novelty, runs
from wildvision.cache import content_hash, open_reduced
from wildvision.cli import main as cli_main
from wildvision.data import scan_folder, train_transform
from wildvision.evaluate import evaluate_samples
from wildvision.models import build_model, normalisation, split_at_head
from wildvision.predict import load_model
from wildvision.training.config import TrainConfig
from wildvision.training.run_data import prepare_tests, samples_in_split
from wildvision.training.train import execute_run, start_run

ARCH = "squeezenet1_0"
CPU = torch.device("cpu")
# float16 keeps 11 significant bits, so each stored feature is within 2^-11 (0.05%) of its float32 value; through the
# head, a probability p moves by at most p(1 - p) <= 0.25 times the change of the logit difference. Measured on demo
# photos: at most 1.0e-4 (the default model, 47 photos) and 6.9e-5 (the small SqueezeNet run); 2e-3, 20 times that,
# leaves room for other photos and models while staying far below what moves a decision (scores are kept to 6 decimals).
MAX_PROBABILITY_DIFFERENCE = 2e-3


@pytest.fixture(scope="module")
def transfer_run(shared, tmp_path_factory):
    """A small SqueezeNet transfer run through start_run/execute_run, as `python -m wildvision train` makes it, with
    two test sets over the same photos (a photo in two sets) and a cache of its own."""
    tmp = tmp_path_factory.mktemp("store_run")
    data = demo_subset(tmp, {"captive": 16, "wild": 16, "background": 4})
    test = demo_subset(tmp, {"captive": 8, "other": 8}, source="test_out_pet")
    config = TrainConfig(
        arch=ARCH,
        regime="transfer",
        data=str(data),
        with_background=True,
        weights=str(SQUEEZENET_WEIGHTS),
        epochs=2,
        batch_size=8,
        lr=0.0001,
        num_workers=0,
        device="cpu",
        feature_views=1,
        tests={"pet": str(test), "pet_again": str(test)},
        cache_dir=str(tmp / "cache"),
    )
    run_dir = start_run(config, tmp / "runs")
    execute_run(run_dir)
    train, test_in = samples_in_split(config, runs.read_json(run_dir / runs.SPLIT), "split")
    return run_dir, config, train, test_in, prepare_tests(config, train)


def eval_folder(config: TrainConfig, model: torch.nn.Module) -> Path | None:
    backbone, _ = split_at_head(model.eval(), config.arch)
    description = feature_store.eval_description(config.arch, features.weights_digest(backbone), normalisation(config.arch))
    return feature_store.existing_folder(config.cache_folder, config.arch, description)


def test_transfer_run_is_evaluated_from_stored_features_each_photo_once(transfer_run):
    run_dir, config, train, test_in, tests = transfer_run
    loaded = load_model(run_dir, device="cpu")
    folder = eval_folder(config, loaded.model)
    assert folder is not None, "the run stored no evaluation-view features of its backbone"
    photos = {content_hash(s.path) for s in [*train, *test_in, *tests["pet"]]}
    assert {p.stem for p in folder.glob("*.npy")} == photos  # keyed by photo alone: pet and pet_again share entries
    scores = runs.read_json(run_dir / runs.SCORES)
    results = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
    largest = 0.0
    for name, samples in ({"test_in": test_in} | tests).items():
        full_metrics, full = evaluate_samples(loaded.model, samples, CPU, normalisation=loaded.normalisation)
        difference = np.abs(np.subtract(scores[name]["probabilities"], full["probabilities"])).max()
        largest = max(largest, float(difference))
        assert scores[name]["labels"] == full["labels"] and results[name]["n_images"] == full_metrics["n_images"]
        assert results[name]["f_score"] == full_metrics["f_score"] and results[name]["skipped"] == []
    print(f"largest probability difference, stored features against a full forward pass: {largest:.2e}")
    assert largest < MAX_PROBABILITY_DIFFERENCE


def test_stored_evaluation_of_a_confident_model_matches_its_full_forward_pass(shared, tmp_path):
    """The default model (EfficientNet-Lite0, a transfer model) scores far from 0.5, where float16 features matter most."""
    loaded = load_model("default", device="cpu")
    photos = demo_subset(tmp_path, {"captive": 24, "other": 24}, source="test_out_pet")
    samples = scan_folder(photos, with_background=False)
    samples[3].path.unlink()
    samples[3].path.write_bytes(b"not a photo")  # an unreadable photo is skipped and listed, as in a full pass
    backbone, _ = split_at_head(loaded.model.eval(), loaded.arch)
    features.eval_features(samples[:5], loaded.arch, backbone, features.weights_digest(backbone), loaded.normalisation, tmp_path / "cache", CPU)
    store = features.stored_backbone(loaded.model, loaded.arch, loaded.normalisation, tmp_path / "cache", CPU)
    stored_metrics, stored = features.evaluate_stored(store, samples)
    full_metrics, full = evaluate_samples(loaded.model, samples, CPU, normalisation=loaded.normalisation)
    difference = np.abs(np.subtract(stored["probabilities"], full["probabilities"])).max()
    print(f"largest probability difference on {len(full['labels'])} photos: {difference:.2e}")
    assert difference < MAX_PROBABILITY_DIFFERENCE and stored["labels"] == full["labels"]
    assert stored_metrics["skipped"] == full_metrics["skipped"] == [str(samples[3].path)]
    assert {k: stored_metrics[k] for k in ("f_score", "accuracy", "confusion_matrix", "n_images")} == {
        k: full_metrics[k] for k in ("f_score", "accuracy", "confusion_matrix", "n_images")
    }
    assert set(stored_metrics) == set(full_metrics)


def test_novelty_summary_comes_from_the_store_and_equals_a_forward_pass(transfer_run):
    run_dir, config, train, test_in, _ = transfer_run
    summary = novelty.load(run_dir / novelty.FILE)
    loaded = load_model(run_dir, device="cpu")
    store = features.stored_backbone(loaded.model, config.arch, loaded.normalisation, config.cache_folder, CPU)
    stored = [features.pooled_eval_features(store, samples) for samples in (train, test_in)]
    assert novelty.fit_summary(*stored, arch=ARCH, k=5) == summary  # fitted on exactly the stored features
    live = [novelty.backbone_features(loaded, [s.path for s in samples]) for samples in (train, test_in)]
    for from_store, from_pass in zip(stored, live):  # the same features, up to their float16 rounding
        np.testing.assert_allclose(from_store, from_pass, rtol=2e-3, atol=2e-3)
    fitted_live = novelty.fit_summary(*live, arch=ARCH, k=5)
    np.testing.assert_allclose(summary.mean, fitted_live.mean, atol=2e-4)
    assert summary.warning_level == pytest.approx(fitted_live.warning_level, abs=1e-3)
    np.testing.assert_allclose(novelty.score(summary, live[1]), novelty.score(fitted_live, live[1]), atol=1e-3)
    # components are directions: compared up to their sign
    alignment = np.abs(np.sum(summary.components.astype(np.float32) * fitted_live.components.astype(np.float32), axis=0))
    np.testing.assert_allclose(alignment[:8], 1.0, atol=1e-2)


def small_setup(tmp_path, count: int = 6):
    torch.manual_seed(0)
    backbone, _ = split_at_head(build_model(ARCH, "none").eval(), ARCH)
    samples = scan_folder(make_class_folder(tmp_path / "data", {"captive": count // 2, "wild": count - count // 2}))
    return backbone, samples


def views(samples, backbone, cache: Path) -> features.FeatureSet:
    return features.backbone_features(
        samples, ARCH, backbone, features.weights_digest(backbone), lambda label: train_transform(label == 1), 2, seed=0, cache_dir=cache, device=CPU
    )


def test_least_recently_used_entries_go_first_and_a_read_counts_as_use(tmp_path):
    folder = tmp_path / "cache" / feature_store.FEATURES / "x"
    paths = [folder / f"{i}.npy" for i in range(4)]
    for age, path in enumerate(paths):
        assert feature_store.write_entry(path, np.zeros(1000, np.uint8))
        os.utime(path, (time.time() - 1000 + age, time.time() - 1000 + age))  # 0 is the oldest
    assert feature_store.read_entry(paths[0]) is not None  # now the most recently used
    photo = write_image(tmp_path / "big.jpg", seed=1, size=(900, 600))
    open_reduced(photo, tmp_path / "cache")  # a decoded image counts toward the bound too
    size = sum(entry.bytes for entry in feature_store.entries(tmp_path / "cache"))
    removed = feature_store.enforce_bound(tmp_path / "cache", size - 1500)
    assert removed.files == 2 and [p.exists() for p in paths] == [True, False, False, True]
    assert feature_store.enforce_bound(tmp_path / "cache", 0).files == 3
    assert list(feature_store.entries(tmp_path / "cache")) == []


def test_a_run_leaves_the_store_under_its_bound_with_every_photo_computed(tmp_path, monkeypatch):
    backbone, samples = small_setup(tmp_path)
    entry_bytes = 2 * 512 * 13 * 13 * 2 + 128  # two float16 views of SqueezeNet's feature map, and the .npy header
    monkeypatch.setenv(feature_store.MAX_GB_ENV, str(2.5 * entry_bytes / feature_store.GB))
    stored = views(samples, backbone, tmp_path / "cache")
    assert len(stored.labels) == 6  # all computed and returned, though only two stay stored
    assert len(list(feature_store.entries(tmp_path / "cache"))) == 2
    monkeypatch.setenv(feature_store.MAX_GB_ENV, "lots")
    assert feature_store.max_bytes() == feature_store.DEFAULT_MAX_GB * feature_store.GB


def test_an_entry_evicted_between_listing_and_loading_is_computed_again(tmp_path, monkeypatch):
    """Another process evicts each entry just as this one opens it: the real read path must recompute, not crash."""
    backbone, samples = small_setup(tmp_path)
    reference = views(samples, backbone, tmp_path / "cache")
    real_load, evicted = np.load, []

    def evicted_just_before(path, *args, **kwargs):
        if str(path).endswith(".npy") and feature_store.FEATURES in str(path) and Path(path).exists():
            Path(path).unlink()  # what enforce_bound in a second process does at this very moment
            evicted.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", evicted_just_before)
    again = views(samples, backbone, tmp_path / "cache")
    assert len(evicted) == 6 and torch.equal(again.features, reference.features) and torch.equal(again.indices, reference.indices)


CONCURRENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np, torch
    from wildvision import feature_store, features
    from wildvision.data import scan_folder
    from wildvision.models import IMAGENET, build_model, split_at_head
    cache, data, out, role = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    if role == "evict":  # evict everything, over and over, until told to stop
        while not out.exists():
            feature_store.enforce_bound(cache, 0)
            time.sleep(0.002)
        sys.exit(0)
    torch.manual_seed(0)
    backbone, _ = split_at_head(build_model("squeezenet1_0", "none").eval(), "squeezenet1_0")
    samples, digest = scan_folder(data), features.weights_digest(backbone)
    for _ in range(int(role)):
        stored = features.eval_features(samples, "squeezenet1_0", backbone, digest, IMAGENET, cache, torch.device("cpu"))
    np.save(out, stored.features.numpy())
    """
)


def start(tmp_path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CONCURRENT, str(tmp_path / "cache"), str(tmp_path / "data"), *map(str, args)], stderr=subprocess.PIPE, text=True
    )


def test_runs_computing_and_evicting_the_same_entries_at_once_all_succeed(tmp_path):
    small_setup(tmp_path)
    computing = [start(tmp_path, tmp_path / f"out{i}.npy", 2) for i in range(2)]
    evicting = start(tmp_path, tmp_path / "out0.npy", "evict")  # stops once the first run is done
    for process in [*computing, evicting]:
        assert process.wait(timeout=120) == 0, process.stderr.read()[-2000:]
    first, second = (np.load(tmp_path / f"out{i}.npy") for i in range(2))
    # equal up to float16 rounding: a photo computed in another batch composition may differ in its last bit
    assert first.shape == (6, 1, 512, 13, 13) and np.allclose(first, second, rtol=2e-3, atol=2e-3)


def test_cache_info_counts_each_folder_and_cache_clear_empties_it(tmp_path, capsys):
    backbone, samples = small_setup(tmp_path)
    views(samples, backbone, tmp_path / "cache")
    open_reduced(write_image(tmp_path / "big.jpg", seed=1, size=(900, 600)), tmp_path / "cache")
    assert cli_main(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{ARCH} backbone outputs, training views (2 per photo, seed 0;" in lines[1] and "6 files, 0.002 GB" in lines[1]
    assert lines[2].startswith("images-256: decoded training photos") and "1 files" in lines[2]
    assert lines[3].startswith("total: 2 folders, 7 files, 0.002 GB of a bound of 20.000 GB")
    assert cli_main(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.startswith("removed 8 files, 0.002 GB")  # the entries and the key.json
    assert list(feature_store.entries(tmp_path / "cache")) == [] and feature_store.folders(tmp_path / "cache") == []
    assert len(views(samples, backbone, tmp_path / "cache").labels) == 6  # and the next run fills it again
