"""Measure novelty scores (wildvision.novelty) on the demo data and write the default model's summary.

The default model's training photos are demo-data/train minus its split.json test_in, as
train.prepare_data splits them with experiments/build_default_model.py's settings (this script checks
that the split it gets names the same test_in). Each variant's summary is fitted on the training
photos' features, its warning level set on test_in; then how well its score tells test_in from each
out-of-distribution set's negatives ("other": photos that are neither captive nor like the training
negatives) is measured by AUROC, beside the share of each set above the warning level. The captive
photos of the out-of-distribution sets are listed for information: they are the model's own kind of
positive, so a low share there is right.

The backbone features are cached in --cache (a few MB), so a second run measures in seconds.

    python experiments/measure_novelty.py [--shared ../shared] [--cache /tmp/wildvision-novelty-features.npz]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from wildvision import novelty, runs
from wildvision.model_card import DEFAULT_DIR, training_config
from wildvision.predict import load_model
from wildvision.training.train import prepare_data

ROOT = Path(__file__).resolve().parents[1]
SIZE_BUDGET = 2_000_000  # bytes: the summary ships in the package beside a head of a few kB
VARIANTS = ((1, 1280), (5, 1280), (1, 256), (5, 256), (10, 256), (5, 128), (10, 128), (5, 64))  # (k, PCA dims); 1280 keeps every dimension


def demo_sets(demo: Path) -> dict[str, list[Path]]:
    """The default model's train and test_in photos, and each out-of-distribution set's folders."""
    config = training_config(demo)
    train, test_in, _, _ = prepare_data(config)
    shipped = runs.read_json(DEFAULT_DIR / runs.SPLIT)["test_in"]
    if sorted(str(s.path.relative_to(demo / "train")) for s in test_in) != sorted(shipped):
        raise SystemExit("the split differs from the default model's split.json: rebuild the default model first")
    sets = {"train": [s.path for s in train], "test_in": [s.path for s in test_in]}
    for name in ("test_out_pet", "test_out_nopet"):
        for part in ("other", "captive"):
            sets[f"{name}/{part}"] = sorted((demo / name / part).iterdir())
    return sets


def cached_features(sets: dict[str, list[Path]], cache: Path) -> dict[str, np.ndarray]:
    if cache.is_file():
        with np.load(cache) as stored:
            return dict(stored)
    loaded = load_model("default")
    features = {}
    for name, paths in sets.items():
        print(f"features of {len(paths)} {name} images ...", flush=True)
        features[name] = novelty.backbone_features(loaded, paths)
    np.savez(cache, **features)
    return features


def mahalanobis_scores(train: np.ndarray, labels: np.ndarray, sets: dict[str, np.ndarray], dims: int) -> dict[str, np.ndarray]:
    """The comparison: distance to the nearest class mean under one shared, shrunk covariance (Lee et al. 2018),
    on the unit-length features projected onto their `dims` leading principal components."""
    centre = (train / np.linalg.norm(train, axis=1, keepdims=True)).mean(axis=0)
    basis = np.linalg.svd(train / np.linalg.norm(train, axis=1, keepdims=True) - centre, full_matrices=False)[2][:dims].T
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True) - centre) @ basis
    train = unit(train)
    means = np.stack([train[labels == c].mean(axis=0) for c in np.unique(labels)])
    precision = LedoitWolf().fit(train - means[np.searchsorted(np.unique(labels), labels)]).precision_
    out = {}
    for name, features in sets.items():
        centred = unit(features)[:, None, :] - means[None]
        out[name] = np.einsum("nci,ij,ncj->nc", centred, precision, centred).min(axis=1)
    return out


def report(name: str, scores: dict[str, np.ndarray], level: float, size: int) -> float:
    """Print one variant's line; returns its mean AUROC over the two out-of-distribution negative sets."""
    aurocs = {}
    for ood in ("test_out_pet/other", "test_out_nopet/other"):
        y = np.r_[np.zeros(len(scores["test_in"])), np.ones(len(scores[ood]))]
        aurocs[ood] = roc_auc_score(y, np.r_[scores["test_in"], scores[ood]])
    above = "  ".join(f"{s} {np.mean(scores[s] > level):.1%}" for s in scores if s != "train")
    print(f"{name:<24} {size / 1e6:5.2f} MB  AUROC pet/other {aurocs['test_out_pet/other']:.3f}  nopet/other {aurocs['test_out_nopet/other']:.3f}")
    print(f"{'':<24} above the warning level: {above}")
    return float(np.mean(list(aurocs.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding demo-data/ (default: ../shared)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "wildvision-novelty-features.npz"), help="feature cache file")
    args = parser.parse_args()
    demo = Path(args.shared).resolve() / "demo-data"
    sets = demo_sets(demo)
    features = cached_features(sets, Path(args.cache))
    measured = {name: f for name, f in features.items() if name != "train"}
    with tempfile.TemporaryDirectory() as scratch:
        for k, dims in VARIANTS:
            summary = novelty.fit_summary(features["train"], features["test_in"], arch="efficientnet_lite0", k=k, dims=dims)
            novelty.save(summary, Path(scratch) / novelty.FILE)
            size = (Path(scratch) / novelty.FILE).stat().st_size
            report(f"kNN k={k}, PCA {dims}", {name: novelty.score(summary, f) for name, f in measured.items()}, summary.warning_level, size)
    labels = np.array([p.parent.name for p in sets["train"]])  # captive, wild, background
    for dims in (1280, 256):
        maha = mahalanobis_scores(features["train"], labels, measured, dims)
        level = float(np.quantile(maha["test_in"], novelty.IN_DISTRIBUTION_SHARE, method="inverted_cdf"))
        size = 2 * (dims * dims + (1280 * dims if dims < 1280 else 0) + 3 * dims)  # float16 precision, PCA basis, class means
        report(f"Mahalanobis, PCA {dims}", maha, level, size)
    shipped = novelty.fit_summary(features["train"], features["test_in"], arch="efficientnet_lite0")
    novelty.save(shipped, DEFAULT_DIR / novelty.FILE)
    size = (DEFAULT_DIR / novelty.FILE).stat().st_size
    print(f"wrote {DEFAULT_DIR / novelty.FILE} (k={shipped.k}, PCA {shipped.components.shape[1]}, {size:,} bytes, warning level {shipped.warning_level:.4f})")
    if size > SIZE_BUDGET:
        raise SystemExit(f"the summary is {size:,} bytes, over the budget of {SIZE_BUDGET:,}")


if __name__ == "__main__":
    main()
