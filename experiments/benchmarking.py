"""What the benchmarks share: where ../shared is, demo photos and subsets, training a run, interleaved timing."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wildvision.images import is_image_file
from wildvision.shared import shared_folder
from wildvision.training.config import TrainConfig
from wildvision.training.train import execute_run, start_run

SHARED = shared_folder()


def demo_folder(*parts: str) -> Path:
    """A folder of ../shared/demo-data; exits with a clear message where the demo data is missing."""
    folder = SHARED.joinpath("demo-data", *parts)
    if not folder.is_dir():
        sys.exit(f"needs the demo data in {folder} (set WILDVISION_SHARED to the folder that holds demo-data/)")
    return folder


def demo_photos(count: int) -> list[Path]:
    """`count` demo photos spread evenly over every demo folder (sorted, so every run uses the same ones)."""
    demo = demo_folder()
    photos = sorted(p for p in demo.rglob("*") if p.is_file() and is_image_file(p))
    if len(photos) < count:
        sys.exit(f"asked for {count} photos, but {demo} has only {len(photos)}")
    return [photos[i * len(photos) // count] for i in range(count)]


def subset(source: Path, target: Path, images: int, seed: int) -> Path:
    """Links to `images` files of `source`, the same share from every class folder."""
    rng = random.Random(seed)
    classes = sorted(d for d in source.iterdir() if d.is_dir())
    total = sum(len(list(d.iterdir())) for d in classes)
    for class_dir in classes:
        files = sorted(class_dir.iterdir())
        (target / class_dir.name).mkdir(parents=True)
        for file in rng.sample(files, max(2, round(images * len(files) / total))):
            (target / class_dir.name / file.name).symlink_to(file)
    return target


def train(config: TrainConfig, runs_dir: Path, name: str) -> Path:
    """A run trained to the end exactly as `python -m wildvision train` does; returns its folder."""
    run_dir = start_run(config, runs_dir, name)
    execute_run(run_dir)
    return run_dir


def time_interleaved(variants: dict[str, Callable[[Sequence], object]], warm_up: Sequence, timed: Sequence, repeat: int) -> dict[str, list[float]]:
    """Seconds per call of each variant on `timed`, `repeat` times, after one call on `warm_up`.

    The repeats are interleaved, so a burst of load elsewhere on a shared machine hits every variant
    alike; callers report the best repeat, the one least disturbed.
    """
    for run in variants.values():  # one-time kernel, autograd, file-cache and thread start-up costs
        run(warm_up)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, run in variants.items():
            start = time.perf_counter()
            run(timed)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def report_throughput(count: int, seconds: dict[str, list[float]], width: int = 16) -> dict[str, float]:
    """Print each variant's best images per second (and every repeat's) for `count` images; return the best rates."""
    throughput = {name: count / min(times) for name, times in seconds.items()}
    for name, value in throughput.items():
        repeats = ", ".join(f"{count / t:.1f}" for t in seconds[name])
        print(f"  {name:{width}s} {value:7.1f} images/s  (repeats: {repeats})")
    return throughput
