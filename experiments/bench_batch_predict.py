"""Batch prediction throughput against a plain per-image loop and the bare forward pass (issue 5, "speed").

On N demo photos and the default model, in one process, after a warm-up, each repeat times in turn:

- per-image loop: open, transform and forward one photo at a time (inference_mode, channels_last), as
  a script without batching would;
- predict_paths: what the CLI and the Predict page run (inference.batches: threads decode the next batches
  meanwhile), the novelty score of each photo included, as the default model keeps a summary of its training photos;
- predict_paths without novelty: the same model without that summary, to show what the score costs;
- bare forward: the same model on ready tensors, in batches of the same size: the ceiling;
- DataLoader: the same batches from a torch DataLoader with worker processes, the alternative to threads;
- predict_paths at batch 32, the old default, to show what batch size costs on the CPU.

Each throughput is the best of the repeats: on a shared machine the fastest run is the one least
disturbed by other work, and the repeats are interleaved so that no variant is spared a busy spell.
The last line is `ratio: <predict_paths / bare forward throughput>` (issue 21: target >= 0.80; the 2-core
ceiling, where one core also decodes, is about 0.84).

    python experiments/bench_batch_predict.py [--images 300] [--batch-size 8] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch
from benchmarking import demo_photos, report_throughput, time_interleaved
from torch.utils.data import DataLoader, Dataset

from wildvision.data import eval_transform
from wildvision.images import open_image
from wildvision.inference import default_batch_size, loader_threads, positive_probabilities
from wildvision.predict import LoadedModel, load_model, predict_paths


def per_image_loop(loaded: LoadedModel, paths: list[Path]) -> list[float]:
    transform = eval_transform(loaded.normalisation)
    probabilities = []
    with torch.inference_mode():
        for path in paths:
            batch = transform(open_image(path))[None].to(loaded.device, memory_format=torch.channels_last)
            probabilities.append(positive_probabilities(loaded.model(batch))[0].item())
    return probabilities


def bare_forward(loaded: LoadedModel, tensors: torch.Tensor, batch_size: int) -> None:
    with torch.inference_mode():
        for start in range(0, len(tensors), batch_size):
            loaded.model(tensors[start : start + batch_size])


class _Photos(Dataset):
    def __init__(self, paths: list[Path], transform: Callable):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(open_image(self.paths[index]))


def dataloader_predict(loaded: LoadedModel, paths: list[Path], batch_size: int, workers: int) -> list[float]:
    loader = DataLoader(_Photos(paths, eval_transform(loaded.normalisation)), batch_size=batch_size, num_workers=workers)
    probabilities: list[float] = []
    with torch.inference_mode():
        for batch in loader:
            logits = loaded.model(batch.to(loaded.device, memory_format=torch.channels_last))
            probabilities += positive_probabilities(logits).tolist()
    return probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="demo photos to predict (default: 300; --quick: 48)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default: predict_paths' default on the CPU, 8)")
    parser.add_argument("--workers", type=int, default=None, help=f"loader threads for predict_paths (default: loader_threads(), here {loader_threads()})")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats of every variant; the best is reported (default: 3)")
    parser.add_argument("--quick", action="store_true", help="48 photos: under 3 minutes on 2 cores, even shared")
    args = parser.parse_args()
    count = 48 if args.quick else args.images
    paths = demo_photos(count)
    loaded = load_model("default", device="cpu")
    if loaded.novelty is None:
        raise SystemExit("the default model has no novelty summary: the benchmark measures predict_paths with it")
    without_novelty = dataclasses.replace(loaded, novelty=None)
    batch_size = args.batch_size or default_batch_size(loaded.device)
    transform = eval_transform(loaded.normalisation)
    tensors = torch.stack([transform(open_image(p)) for p in paths]).contiguous(memory_format=torch.channels_last)
    processes = max(1, loader_threads())

    variants: dict[str, Callable[[list[Path]], object]] = {
        "per-image loop": lambda photos: per_image_loop(loaded, photos),
        "predict_paths": lambda photos: predict_paths(loaded, photos, batch_size, args.workers),
        "predict_paths without novelty": lambda photos: predict_paths(without_novelty, photos, batch_size, args.workers),
        "bare forward": lambda photos: bare_forward(loaded, tensors[: len(photos)], batch_size),
        f"DataLoader, {processes} worker process{'es' if processes > 1 else ''}": lambda photos: dataloader_predict(loaded, photos, batch_size, processes),
        "predict_paths, batch 32": lambda photos: predict_paths(loaded, photos, 32, args.workers),
    }
    seconds = time_interleaved(variants, paths[:64], paths, args.repeat)

    reference = per_image_loop(loaded, paths)
    batched = [p.probability for p in predict_paths(loaded, paths, batch_size, args.workers)]
    difference = max(abs(a - b) for a, b in zip(reference, batched))
    print(
        f"{len(paths)} demo photos, default model ({loaded.arch}) on CPU, {torch.get_num_threads()} torch threads, "
        f"{len(os.sched_getaffinity(0))} cores, batch size {batch_size}, "
        f"loader threads {args.workers or loader_threads()}; best of {args.repeat} interleaved repeats"
    )
    throughput = report_throughput(len(paths), seconds, width=32)
    batch_vs_loop = throughput["predict_paths"] / throughput["per-image loop"]
    batch_vs_bare = throughput["predict_paths"] / throughput["bare forward"]
    print(f"predict_paths / per-image loop: {batch_vs_loop:.2f}x (target >= 2)")
    print(f"predict_paths / bare forward: {batch_vs_bare:.0%} (target >= 80%)")
    print(f"largest probability difference, predict_paths vs per-image loop: {difference:.1e} (must be <= 1e-5)")
    print(f"predict_paths without novelty / bare forward: {throughput['predict_paths without novelty'] / throughput['bare forward']:.0%}")
    print(f"ratio: {batch_vs_bare:.2f}")


if __name__ == "__main__":
    main()
