"""Epoch times of real training runs, per architecture and regime, on any device (issue 5, item 5).

For each architecture it trains, through `start_run`/`execute_run` as `python -m wildvision train`
does, on a training folder (default ../shared/demo-data/train, background included):

- transfer, plain loop (`feature_views=0`): the backbone runs on every image every epoch;
- transfer on stored backbone features: computed once, then only the head trains;
- combi: one head-only epoch (stored features), then all layers (Table S5: batch 15, lr 0.0005).

On CUDA that is the GPU path: mixed precision (float16 autocast + GradScaler), channels_last,
cudnn.benchmark, pinned memory and DataLoader workers. Architectures without offline ImageNet weights
can be timed from random weights (`--random-weights`): the work per epoch is the same, the scores are not
meaningful. Prints one line per epoch and a summary; the last line is `ratio: <plain transfer epoch /
stored-features epoch>` for the first architecture.

    python experiments/bench_epochs.py [--archs resnet18 vgg19_bn] [--device cuda] [--random-weights] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from benchmarking import SHARED, subset, train

from wildvision import runs
from wildvision.evaluate import resolve_device
from wildvision.training.config import TrainConfig


def random_stock_weights(arch: str, folder: Path) -> str:
    """A state dict of the stock 1000-class model from random init, saved where `--weights PATH` can read it."""
    path = folder / f"{arch}-random.pth"
    torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "demo-data" / "train"))
    parser.add_argument("--archs", nargs="+", default=["resnet18", "vgg19_bn"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=TrainConfig.num_workers)
    parser.add_argument("--random-weights", action="store_true", help="time from random stock weights (no download needed)")
    parser.add_argument("--quick", action="store_true", help="squeezenet1_0 from random weights on 150 images (a CPU check of this script)")
    args = parser.parse_args()
    if args.quick:
        args.archs, args.random_weights = ["squeezenet1_0"], True
    if not Path(args.data).is_dir():
        sys.exit(f"no training folder at {args.data} (pass --data, or set WILDVISION_SHARED)")
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"device {device} ({name}), torch {torch.__version__}, {args.workers} loader workers, "
        f"mixed precision {'on' if device.type == 'cuda' else 'off (CPU)'}, channels_last on"
    )

    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.data = str(subset(Path(args.data), Path(tmp) / "data", 150, seed=0))
        for arch in args.archs:
            weights = random_stock_weights(arch, Path(tmp)) if args.random_weights else "imagenet"
            common = {
                "arch": arch,
                "data": str(Path(args.data).resolve()),
                "with_background": True,
                "weights": weights,
                "device": str(device),
                "num_workers": args.workers,
                "cache_dir": str(Path(tmp) / "cache"),
            }
            variants = {
                "transfer, plain loop": TrainConfig(regime="transfer", feature_views=0, epochs=2, patience=2, **common),
                "transfer, stored features": TrainConfig(regime="transfer", epochs=3, patience=3, **common),
                "combi": TrainConfig(regime="combi", head_epochs=1, epochs=3, patience=3, **common),
            }
            times = {}
            for variant, config in variants.items():
                rows = runs.read_metrics(train(config, Path(tmp) / "runs", f"{arch}-{variant.replace(', ', '-').replace(' ', '_')}"))
                for row in rows:
                    build = row.get("feature_cache_s")
                    print(
                        f"{arch:>10} | {variant:<26} | epoch {row['epoch']} ({row['phase']}): {row['epoch_time_s']:7.2f} s"
                        + (f", of which computing stored features {build:.2f} s" if build else "")
                        + f" | {row['train_images']} images, val F {row['val_f_score']:.3f}"
                    )
                # The first epoch of a process pays for cudnn.benchmark's search and the loader's warm-up.
                later = [r["epoch_time_s"] for r in rows if not r.get("feature_cache_s")][1:] or [rows[-1]["epoch_time_s"]]
                times[variant] = (statistics.median(later), rows)
            plain, stored = times["transfer, plain loop"][0], times["transfer, stored features"][0]
            build = times["transfer, stored features"][1][0]["feature_cache_s"]
            all_layers = [r["epoch_time_s"] for r in times["combi"][1] if r["phase"] == "all_layers"]
            print(
                f"{arch}: transfer epoch plain {plain:.2f} s, on stored features {stored:.3f} s (computed once in {build:.1f} s); "
                f"combi all-layers epoch {statistics.median(all_layers):.2f} s"
            )
            summary.append(plain / stored)
    print("paper (Kulkarni & Di Minin 2022, RTX 2070, their data): 5.5-8.9 min per epoch")
    print(f"ratio: {summary[0]:.1f}")


if __name__ == "__main__":
    main()
