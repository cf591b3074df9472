"""Options more than one command takes, declared once."""

from __future__ import annotations

import argparse
from pathlib import Path

from wildvision import runs
from wildvision.data import DataFolderError
from wildvision.images import ImageError
from wildvision.models import WeightsError
from wildvision.predict import CheckpointError
from wildvision.training.config import TrainConfig
from wildvision.training.launch import named_folder_argument
from wildvision.wording import CLASS_FOLDERS

USER_ERRORS = (DataFolderError, WeightsError, runs.RunError, CheckpointError, ImageError, ValueError, OSError)  # one error line, exit 2


def test_folder(text: str) -> tuple[str, str]:
    """A test set for `data check`: NAME=DIR, or a bare DIR named by its folder (test_out_pet)."""
    return named_folder_argument(text if "=" in text else f"{Path(text).name}={text}")


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=str(runs.default_runs_dir()), help="folder that holds the run folders (default: $WILDVISION_RUNS_DIR, else runs)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `train` and `grid`: data, test sets and hyperparameter overrides."""
    parser.add_argument("--data", required=True, help=f"training folder: one sub-folder per class ({CLASS_FOLDERS})")
    parser.add_argument("--positive", default="captive", help="name of the positive class folder; every other folder is negative (default: captive)")
    parser.add_argument(
        "--test",
        action="append",
        type=named_folder_argument,
        default=[],
        metavar="NAME=DIR",
        help="an extra test set, laid out like the training folder; repeat for more (e.g. test_out_pet=DIR)",
    )
    parser.add_argument("--epochs", type=int, default=200, help="most epochs to train; early stopping usually ends sooner (default: 200)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default: Table S5, 15 head-only, 35 all layers)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: Table S5, 75 head-only, 15 all layers)")
    parser.add_argument("--lr", type=float, help="SGD learning rate (default: Table S5, 0.001 head-only, 0.0005 all layers)")
    parser.add_argument("--head-epochs", type=int, default=10, help="combi regime: epochs of head-only training before all layers train (default: 10)")
    parser.add_argument(
        "--target-precision",
        type=float,
        default=0.95,
        help="the decision threshold is the lowest whose positive-class precision on test_in reaches this, but never below 0.5 "
        "(test_in is easy: a lower line flags many everyday photos); with --calibrate-on, on that test set and with no floor (default: 0.95)",
    )
    parser.add_argument(
        "--exclude-test-duplicates",
        action="store_true",
        help="leave out test images that are the same photo as a training image (exact or near copies); they are reported either way",
    )
    parser.add_argument(
        "--calibrate-on",
        metavar="NAME",
        help="choose the decision threshold on this --test set instead of test_in, with no floor: a labelled set like the photos "
        "the model will check (your own market); that set's numbers are then optimistic",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the split, initialisation and augmentation (default: 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--workers", type=int, default=TrainConfig.num_workers, help=f"image-loading worker processes (default: {TrainConfig.num_workers})")
    parser.add_argument(
        "--feature-views",
        type=int,
        default=TrainConfig.feature_views,
        help="head-only epochs (transfer; combi's first phase) train the head on this many stored augmented views "
        f"per image, computed once; 0 runs the backbone every epoch instead (default: {TrainConfig.feature_views})",
    )
    parser.add_argument("--cache-dir", help="where decoded images and backbone features are kept (default: $WILDVISION_CACHE_DIR or ~/.cache/wildvision)")
    add_runs_dir(parser)


def training_options(args: argparse.Namespace) -> dict:
    """TrainConfig's fields from the options `train` and `grid` share (all but architecture, regime, background, weights)."""
    return {
        "data": str(Path(args.data).resolve()),
        "positive": args.positive,
        "tests": dict(args.test),
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_epochs": args.head_epochs,
        "seed": args.seed,
        "device": args.device,
        "num_workers": args.workers,
        "split": getattr(args, "split", None),
        "target_precision": args.target_precision,
        "calibrate_on": args.calibrate_on,
        "exclude_test_duplicates": args.exclude_test_duplicates,
        "feature_views": args.feature_views,
        "cache_dir": args.cache_dir and str(Path(args.cache_dir).resolve()),
    }
