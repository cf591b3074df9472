"""A second run of the same architecture against the first, through the feature store (issue 21, item 4).

Two transfer runs of MobileNetV2 from the offline weights in ../shared/weights, as `python -m wildvision train` makes
them (start_run, then execute_run), in one process with a fresh cache folder and runs folder, so the first starts cold:

1. the demo data with its background class (bg), tested on test_in (its split), test_out_pet and test_out_nopet;
2. the same architecture on the other dataset (no_bg: the same folder without background/), on the same test sets.

The second run splits other photos, so about a fifth of its training photos were in the first run's test_in: their
training views are new to the store. Every other photo's features (training views, and the evaluation view that
serves validation, evaluation and the novelty summary) come from the store.

For each run it prints the wall time as a user waits for it (checking the photos, the comparison with the default
model, which reuses the default model's stored scores on the demo test sets, features, epochs, evaluation and the
novelty summary), each phase's time, and the store's files written; then, not timed, the largest difference between
the first run's stored-feature probabilities and a full forward pass on its test sets; and as the last line
`ratio: <second run's wall time / first run's>` (issue 21: target at most 0.25).

    python experiments/bench_feature_store.py [--photos N] [--epochs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchmarking import SHARED, demo_folder, subset

from wildvision import feature_store, runs
from wildvision.cache import CACHE_DIR_ENV
from wildvision.evaluate import evaluate_samples, resolve_device
from wildvision.models import normalisation
from wildvision.predict import load_model
from wildvision.training import progress
from wildvision.training.config import TrainConfig
from wildvision.training.run_data import prepare_tests, samples_in_split
from wildvision.training.train import execute_run, start_run

ARCH = "mobilenet_v2"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-bnfolded.pth"
TESTS = ("test_out_pet", "test_out_nopet")
CHECKING = "checking the photos (split, copies)"
PHASE_NAMES = {
    progress.COMPARISON: "comparison with the default model",
    progress.FEATURES: "features",
    progress.EPOCHS: "epochs",
    progress.EVALUATION: "evaluation",
    progress.NOVELTY: "novelty summary",
}


def record_phases(marks: list[tuple[str, float]]) -> None:
    """Note when each phase of a run begins, as the run's progress tracker enters it (observation only)."""
    start, epoch = progress.Tracker.start, progress.Tracker.epoch

    def timed_start(self, phase, *args, **kwargs):
        marks.append((phase, time.perf_counter()))
        return start(self, phase, *args, **kwargs)

    def timed_epoch(self, *args, **kwargs):
        if self.phase != progress.EPOCHS:
            marks.append((progress.EPOCHS, time.perf_counter()))
        return epoch(self, *args, **kwargs)

    progress.Tracker.start, progress.Tracker.epoch = timed_start, timed_epoch


def entry_files(cache: Path) -> dict[str, int]:
    return {info.name: info.files for info in feature_store.folders(cache)}


def timed_run(config: TrainConfig, runs_dir: Path, name: str, marks: list[tuple[str, float]], cache: Path) -> tuple[Path, float]:
    """Run it as `python -m wildvision train` does and print its wall time, phases and the store files it wrote."""
    before = entry_files(cache)
    marks.clear()
    started = time.perf_counter()
    run_dir = start_run(config, runs_dir, name)
    marks.append((CHECKING, started))
    execute_run(run_dir)
    wall = time.perf_counter() - started
    marks.sort(key=lambda mark: mark[1])
    ends = [at for _, at in marks[1:]] + [started + wall]
    seconds: dict[str, float] = {}
    for (phase, at), end in zip(marks, ends):
        seconds[phase] = seconds.get(phase, 0.0) + end - at
    epochs = runs.read_metrics(run_dir)
    results = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
    print(f"\n{name}: {config.dataset}, {epochs[0]['train_images']} training photos, {len(epochs)} epochs; wall time {wall:.1f} s end to end")
    for phase, spent in seconds.items():
        print(f"  {PHASE_NAMES.get(phase, phase):36s} {spent:8.1f} s  {spent / wall:6.1%}")
    print("  test sets: " + ", ".join(f"{n} F {r['f_score']:.3f} ({r['n_images']} photos, {r['eval_time_s']:.1f} s)" for n, r in results.items()))
    after = entry_files(cache)
    written = {folder: after[folder] - before.get(folder, 0) for folder in after if after[folder] != before.get(folder, 0)}
    print("  store files written: " + (", ".join(f"{n} files in {folder}" for folder, n in written.items()) or "none"))
    return run_dir, wall


def full_pass_difference(run_dir: Path, config: TrainConfig) -> None:
    """Not timed: the run's stored-feature probabilities against a full forward pass of its best model."""
    loaded = load_model(run_dir, device=config.device)
    train, test_in = samples_in_split(config, runs.read_json(run_dir / runs.SPLIT), "split")
    scores = runs.read_json(run_dir / runs.SCORES)
    results = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
    for name, samples in ({"test_in": test_in} | prepare_tests(config, train)).items():
        metrics, full = evaluate_samples(loaded.model, samples, loaded.device, num_workers=config.num_workers, normalisation=normalisation(ARCH))
        difference = np.abs(np.subtract(scores[name]["probabilities"], full["probabilities"]))
        same_f = "same F" if metrics["f_score"] == results[name]["f_score"] else f"F {results[name]['f_score']:.4f} against {metrics['f_score']:.4f}"
        print(f"  {name}: largest probability difference {difference.max():.1e} (mean {difference.mean():.1e}, {len(difference)} photos), {same_f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, help="a stratified subset of this many training photos, and half as many per test set, for a quick try")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not WEIGHTS.is_file():
        raise SystemExit(f"needs the offline MobileNetV2 weights {WEIGHTS}")
    load = os.getloadavg()
    print(f"{ARCH}, transfer, {args.epochs} epochs, device {resolve_device(args.device)}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")

    marks: list[tuple[str, float]] = []
    record_phases(marks)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        os.environ[CACHE_DIR_ENV] = str(cache)  # every part of the run, the comparison included, uses this fresh cache
        data, tests = demo_folder("train"), {name: demo_folder(name) for name in TESTS}
        if args.photos:
            data = subset(data, Path(tmp) / "train", args.photos, seed=0)
            tests = {name: subset(folder, Path(tmp) / name, args.photos // 2, seed=0) for name, folder in tests.items()}
        common = {
            "arch": ARCH,
            "regime": "transfer",
            "data": str(data),
            "weights": str(WEIGHTS),
            "tests": {name: str(folder) for name, folder in tests.items()},
            "epochs": args.epochs,
            "device": args.device,
            "cache_dir": str(cache),
        }
        first_config, second_config = (TrainConfig(with_background=background, **common) for background in (True, False))
        first, first_wall = timed_run(first_config, Path(tmp) / "runs", "first", marks, cache)
        _, second_wall = timed_run(second_config, Path(tmp) / "runs", "second", marks, cache)
        print(f"\nstore after both runs: {sum(info.bytes for info in feature_store.folders(cache)) / 1e6:.1f} MB in {cache}")
        print("first run, not timed: stored-feature probabilities against a full forward pass of its best model")
        full_pass_difference(first, first_config)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)")
    print(f"first run {first_wall:.1f} s, second run {second_wall:.1f} s")
    print(f"ratio: {second_wall / first_wall:.3f}")


if __name__ == "__main__":
    main()
