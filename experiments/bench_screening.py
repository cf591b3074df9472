"""Screening throughput against predict_paths on the same demo photos (issue 14, "screening jobs").

A screening job does more per image than predict_paths: SHA-256 and pHash of every file, the file list
and part files written atomically, status.json after every part, and duplicate groups at the end. This
measures what that costs. On N demo photos and the default model, in one process, after a warm-up, each
repeat times in turn:

- predict_paths: what `python -m wildvision predict` runs (threads decode the next batches meanwhile);
- screening job: `create_screen` on a list file of the same photos, then `finish_screen`, in a
  fresh job folder every time (listing, scoring, hashing, merging scores.csv with duplicate groups).

Each throughput is the best of the repeats, interleaved so that no variant is spared a busy spell. The
last line is `ratio: <screening / predict_paths throughput>` (target >= 0.9).

    python experiments/bench_screening.py [--images 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from benchmarking import demo_photos, report_throughput, time_interleaved

from wildvision.inference import default_batch_size, loader_threads
from wildvision.predict import LoadedModel, load_model, predict_paths
from wildvision.screening.job import create_screen, finish_screen


def screening_job(loaded: LoadedModel, photos: Sequence[Path], folder: Path) -> Path:
    """A whole job on a list file of `photos`, as `python -m wildvision screen LIST` runs it."""
    listing = folder / f"list-{len(list(folder.iterdir()))}.txt"
    listing.write_text("".join(f"{photo}\n" for photo in photos), encoding="utf-8")
    screen_dir = create_screen([str(listing)], "default", loaded, default_batch_size(loaded.device), folder / "screens")
    return finish_screen(screen_dir, loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="demo photos to score (default: 300)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats of every variant; the best is reported (default: 3)")
    args = parser.parse_args()
    paths = demo_photos(args.images)
    loaded = load_model("default", device="cpu")
    with tempfile.TemporaryDirectory(prefix="wildvision-bench-screen-") as scratch:
        folder = Path(scratch)
        variants = {
            "predict_paths": lambda photos: predict_paths(loaded, photos),
            "screening job": lambda photos: screening_job(loaded, photos, folder),
        }
        seconds = time_interleaved(variants, paths[:64], paths, args.repeat)
    print(
        f"{len(paths)} demo photos, default model ({loaded.arch}) on CPU, {torch.get_num_threads()} torch threads, "
        f"{len(os.sched_getaffinity(0))} cores, batch size {default_batch_size(loaded.device)}, "
        f"loader threads {loader_threads()}; best of {args.repeat} interleaved repeats"
    )
    throughput = report_throughput(len(paths), seconds, width=16)
    print(f"ratio: {throughput['screening job'] / throughput['predict_paths']:.2f}")


if __name__ == "__main__":
    main()
