"""Transfer-regime epochs on stored backbone features against the plain loop (issue 5, item 1).

Trains the same transfer run twice, from the same weights, split and seed, in one process: once with
the plain loop (`feature_views=0`: the backbone runs on every image every epoch) and once on stored
features (`wildvision.features`: the backbone runs once per stored view, then only the head trains),
on a stratified subset of ../shared/demo-data/train with background images. Both go through
`start_run`/`execute_run`, exactly as `python -m wildvision train` does.

Prints each run's epoch times and test_in F, the one-off cost of computing the features, and as its
last line `ratio: <plain epoch time / stored-features epoch time>` (medians; an epoch here is
training plus the test_in validation pass, the time a user waits between epochs; the epoch that
computes the features is left out and reported on its own).

    python experiments/bench_transfer_cache.py [--arch efficientnet_lite0] [--images 1000] [--epochs 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch
from benchmarking import SHARED, demo_folder, subset, train

from wildvision import runs
from wildvision.training.config import TrainConfig

OFFLINE_WEIGHTS = {  # weights that need no download
    "efficientnet_lite0": "imagenet",
    "mobilenet_v2": str(SHARED / "weights" / "mobilenet_v2-imagenet-bnfolded.pth"),
    "squeezenet1_0": str(SHARED / "weights" / "squeezenet1_0-imagenet-deepcompression.pth"),
}
LEARNING_RATES = {"squeezenet1_0": 0.0001}  # its offline weights' activation scale needs a lower rate (README)


def timed_run(config: TrainConfig, runs_dir: Path, name: str) -> tuple[list[dict], dict]:
    """The run's per-epoch metrics, and its results with the test_in probabilities added."""
    run_dir = train(config, runs_dir, name)
    results = runs.read_json(run_dir / runs.RESULTS)
    results["test_in_probabilities"] = runs.read_json(run_dir / runs.SCORES)["test_in"]["probabilities"]
    return runs.read_metrics(run_dir), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_lite0", choices=sorted(OFFLINE_WEIGHTS))
    parser.add_argument("--images", type=int, default=1000, help="training-folder images to use, train and test_in together (default: 1000)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--views", type=int, default=TrainConfig.feature_views, help="stored views per training image")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="300 images, 3 epochs, 3 views: a few minutes on a 2-core CPU")
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs, args.views = 300, 3, 3

    with tempfile.TemporaryDirectory() as tmp:
        data = subset(demo_folder("train"), Path(tmp) / "data", args.images, seed=0)
        common = {
            "arch": args.arch,
            "regime": "transfer",
            "data": str(data),
            "with_background": True,
            "weights": OFFLINE_WEIGHTS[args.arch],
            "lr": LEARNING_RATES.get(args.arch),
            "epochs": args.epochs,
            "patience": args.epochs,
            "device": args.device,
            "num_workers": min(4, os.cpu_count() or 1),
            "cache_dir": str(Path(tmp) / "cache"),
        }
        torch.manual_seed(0)
        plain_rows, plain = timed_run(TrainConfig(feature_views=0, **common), Path(tmp) / "runs", "plain")
        stored_rows, stored = timed_run(TrainConfig(feature_views=args.views, **common), Path(tmp) / "runs", "stored")

    n_train = plain_rows[0]["train_images"]
    print(f"{args.arch}, transfer, {n_train} training images, {args.epochs} epochs, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'epoch':>5} {'plain epoch s':>14} {'stored epoch s':>15} {'plain train s':>14} {'stored train s':>15}")
    for plain_row, stored_row in zip(plain_rows, stored_rows):
        stored_epoch = stored_row["epoch_time_s"] - stored_row.get("feature_cache_s", 0)
        print(
            f"{plain_row['epoch']:>5} {plain_row['epoch_time_s']:>14.2f} {stored_epoch:>15.3f} {plain_row['train_time_s']:>14.2f} {stored_row['train_time_s']:>15.3f}"
        )
    build = stored_rows[0]["feature_cache_s"]
    plain_epoch = statistics.median(r["epoch_time_s"] for r in plain_rows)
    stored_epoch = statistics.median(r["epoch_time_s"] for r in stored_rows[1:]) if len(stored_rows) > 1 else stored_rows[0]["epoch_time_s"] - build
    plain_train = statistics.median(r["train_time_s"] for r in plain_rows)
    stored_train = statistics.median(r["train_time_s"] for r in stored_rows)
    print(f"features computed once ({args.views} views per training image + test_in): {build:.1f} s = {build / plain_epoch:.1f} plain epochs")
    print(f"training only, median: plain {plain_train:.2f} s, stored {stored_train:.3f} s: {plain_train / stored_train:.0f}x")
    f_plain, f_stored = plain["test_sets"]["test_in"]["f_score"], stored["test_sets"]["test_in"]["f_score"]
    print(
        f"test_in F: plain {f_plain:.4f}, stored features {f_stored:.4f}, difference {f_stored - f_plain:+.4f} "
        f"({plain['test_sets']['test_in']['n_images']} images; best epochs {plain['best_epoch']} and {stored['best_epoch']})"
    )
    difference = [abs(a - b) for a, b in zip(plain["test_in_probabilities"], stored["test_in_probabilities"])]
    print(f"test_in probabilities of the two models differ by {statistics.mean(difference):.4f} on average (largest {max(difference):.4f})")
    print(f"ratio: {plain_epoch / stored_epoch:.1f}")


if __name__ == "__main__":
    main()
