"""What a saliency map costs against a plain forward pass (issue 5, "speed").

On N demo photos and the default model, in one process, after a warm-up, each repeat times in turn,
per image:

- forward: a batched inference_mode forward on ready tensors (the photos already transformed);
- forward from the photos: the same with `eval_transform` included, like for like with the maps;
- Saliency and Grad-CAM through `explain_many`, in its batches: from the decoded photo to the map at
  the photo's size, so transform, probability and resizing are in;
- the same, one photo per `explain` call, for reference.

Each time is the best of the repeats (on a shared machine the fastest run is the least disturbed one;
the repeats are interleaved so that no method is spared a busy spell). The last line is
`ratio: <the slower of batched Saliency and Grad-CAM per image / forward per image>`.

    python experiments/bench_saliency.py [--images 64] [--batch-size 8] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
from benchmarking import demo_photos, time_interleaved

from wildvision.data import eval_transform
from wildvision.explain import saliency
from wildvision.images import open_image
from wildvision.predict import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="demo photos to explain (default: 64; --quick: 16)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per pass, for the forward and explain_many (default: 8, explain_many's)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats of every method; the best is reported (default: 3)")
    parser.add_argument("--quick", action="store_true", help="16 photos: well under 3 minutes on 2 cores")
    args = parser.parse_args()
    photos = [open_image(path) for path in demo_photos(16 if args.quick else args.images)]
    loaded = load_model("default", device="cpu")
    transform = eval_transform(loaded.normalisation)
    tensors = torch.stack([transform(photo) for photo in photos]).contiguous(memory_format=torch.channels_last)

    def forward(images: list) -> None:
        with torch.inference_mode():
            for start in range(0, len(images), args.batch_size):
                loaded.model(tensors[start : start + args.batch_size])

    def forward_from_photos(images: list) -> None:
        with torch.inference_mode():
            for start in range(0, len(images), args.batch_size):
                batch = torch.stack([transform(image) for image in images[start : start + args.batch_size]])
                loaded.model(batch.contiguous(memory_format=torch.channels_last))

    methods: dict[str, Callable[[list], object]] = {"forward": forward, "forward from the photos": forward_from_photos}
    for method in saliency.FAST_METHODS:
        methods[f"{method}, batched"] = lambda images, method=method: saliency.explain_many(loaded, images, method, batch_size=args.batch_size)
        methods[f"{method}, one at a time"] = lambda images, method=method: [saliency.explain(loaded, image, method) for image in images]
    seconds = {name: [t / len(photos) for t in times] for name, times in time_interleaved(methods, photos[: args.batch_size], photos, args.repeat).items()}
    best = {name: min(times) for name, times in seconds.items()}

    print(
        f"{len(photos)} demo photos, default model ({loaded.arch}) on CPU, {torch.get_num_threads()} torch threads, "
        f"{len(os.sched_getaffinity(0))} cores, batch size {args.batch_size}; best of {args.repeat} interleaved repeats"
    )
    for name, value in best.items():
        runs = ", ".join(f"{t * 1000:.1f}" for t in seconds[name])
        print(f"  {name:28s} {value * 1000:7.1f} ms per image  {value / best['forward']:5.2f}x forward  (repeats: {runs})")
    worst = max(best[f"{method}, batched"] for method in saliency.FAST_METHODS)
    print(
        f"slower of batched Saliency and Grad-CAM: {worst / best['forward']:.2f}x forward (target <= 3); "
        f"{worst / best['forward from the photos']:.2f}x the forward from the photos"
    )
    print(f"ratio: {worst / best['forward']:.2f}")


if __name__ == "__main__":
    main()
