"""Honest estimates from an audit sample (issue 23, "Monitoring a market"): do the 95% intervals hold?

On real demo photos: test_out_pet's photos are split in two halves (seeded, as bench_retrain.py splits them); a
screening job scores one half with the default model (the other half is never screened). For each of --seeds seeds
a fresh audit sample of --size distinct photos is drawn (audit.draw), every sampled photo is decided with its true
folder label (captive -> the job's positive class, other -> its negative one), and estimates.job_estimates gives the
precision, recall and trade count at the job's line. The truth is the same three figures over all the job's distinct
photos, from their folder labels, at the same line. Reported: the share of intervals that contain the truth, and
their mean width. Between seeds the job's decisions.sqlite is removed, so each seed starts from a job nobody audited.

The last line is `ratio: <lowest of the three coverages>` (target >= 0.9).

    python experiments/bench_audit.py [--seeds 20] [--size 150] [--split-seed 0]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
from benchmarking import demo_folder

from wildvision.inference import default_batch_size
from wildvision.predict import load_model
from wildvision.screening import audit, decisions, estimates, review
from wildvision.screening.decision_store import DATABASE
from wildvision.screening.job import create_screen, finish_screen


def half(seed: int) -> list[Path]:
    photos = sorted(p for part in ("captive", "other") for p in (demo_folder("test_out_pet") / part).iterdir())
    random.Random(seed).shuffle(photos)
    return sorted(photos[: len(photos) // 2])


def is_trade(path: str) -> bool:
    return Path(path).parent.name == "captive"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--size", type=int, default=150, help="distinct photos per audit sample (default: 150)")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "half.txt"
        listing.write_text("".join(f"{p}\n" for p in half(args.split_seed)))
        model = load_model("default", device="cpu")
        job_dir = finish_screen(create_screen([str(listing)], "default", model, default_batch_size(model.device), Path(scratch) / "screens"), model)
        job = review.read_job(job_dir)
        photos = audit.units(job_dir)
        flagged, trade = photos["score"] >= job.threshold, photos["path"].map(is_trade)
        truth = {
            "precision": (flagged & trade).sum() / flagged.sum(),
            "recall": (flagged & trade).sum() / trade.sum(),
            "prevalence": float(trade.sum()),
        }
        sizes = audit.strata(photos["score"], job.threshold).value_counts().to_dict()
        print(
            f"job: {len(photos):,} distinct photos, line {job.threshold:.4f}, strata {sizes}; truth: precision {truth['precision']:.3f}, "
            f"recall {truth['recall']:.3f}, {truth['prevalence']:.0f} trade photos"
        )
        hits = {name: [] for name in truth}
        widths = {name: [] for name in truth}
        for seed in range(args.seeds):
            for leftover in ("", "-wal", "-shm"):
                Path(f"{job_dir / DATABASE}{leftover}").unlink(missing_ok=True)
            sampled = audit.draw(job_dir, args.size, seed, "bench")
            labels = [job.positive if is_trade(p) else job.labels[1] for p in sampled]
            decisions.decide_each(job_dir, [("bench", p, label) for p, label in zip(sampled, labels)], "bench", allowed_labels=job.class_names)
            found = estimates.job_estimates(job_dir)
            for name, interval in (("precision", found.precision), ("recall", found.recall), ("prevalence", found.prevalence_count)):
                hits[name].append(interval.low <= truth[name] <= interval.high)
                widths[name].append(interval.high - interval.low)
            if seed == 0:
                print("\n".join(estimates.in_words(found)))
            print(
                f"seed {seed:2d}: n {found.n}, trade {found.n_trade}; precision {found.precision.low:.3f}-{found.precision.high:.3f}, "
                f"recall {found.recall.low:.3f}-{found.recall.high:.3f}, trade photos {found.prevalence_count.low:.0f}-{found.prevalence_count.high:.0f}"
            )
        coverage = {name: float(np.mean(hits[name])) for name in truth}
        for name in truth:
            print(f"{name}: coverage {coverage[name]:.2f} of {args.seeds} intervals, mean width {np.mean(widths[name]):.3f}")
        print(f"ratio: {min(coverage.values()):.2f}")


if __name__ == "__main__":
    main()
