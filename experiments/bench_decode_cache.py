"""Loading a training epoch from large originals, with and without the decoded-image cache (issue 5, item 4).

Web photos are often several megapixels, while the models see 224 x 224. This writes N photos from
../shared/demo-data enlarged to `--megapixels` as JPEGs, then times full passes of the training
DataLoader (decode, Table S6 augmentation, batching; no model) over them: reading the originals every
epoch, and through `wildvision.cache` (the first pass decodes and stores each image at 256 px short
side, later passes read the stored copy). The last line is `ratio: <uncached / cached epoch time>`.

    python experiments/bench_decode_cache.py [--images 200] [--megapixels 12] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarking import demo_folder
from PIL import Image

from wildvision.data import make_loader, scan_folder


def enlarged_copies(source: Path, target: Path, images: int, megapixels: float) -> Path:
    for class_name in ("captive", "wild"):
        (target / class_name).mkdir(parents=True)
        for path in sorted((source / class_name).iterdir())[: images // 2]:
            with Image.open(path) as image:
                scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
                large = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
            large.save(target / class_name / f"{path.stem}.jpg", quality=90)
    return target


def epoch_seconds(samples, workers: int, image_cache: Path | None) -> float:
    started = time.perf_counter()
    for _ in make_loader(samples, train=True, batch_size=32, num_workers=workers, image_cache=image_cache):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="60 images, 2 timed epochs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs = 60, 2
    with tempfile.TemporaryDirectory() as tmp:
        data = enlarged_copies(demo_folder("train"), Path(tmp) / "data", args.images, args.megapixels)
        samples = scan_folder(data, with_background=False)
        size = sum(s.path.stat().st_size for s in samples) / len(samples) / 1e6
        cache = Path(tmp) / "cache"
        plain = [epoch_seconds(samples, args.workers, None) for _ in range(args.epochs)]
        first = epoch_seconds(samples, args.workers, cache)
        cached = [epoch_seconds(samples, args.workers, cache) for _ in range(args.epochs)]
        stored = sum(f.stat().st_size for f in cache.rglob("*.npy")) / 1e6
    print(f"{len(samples)} JPEGs of {args.megapixels:g} megapixels ({size:.1f} MB each), {args.workers} loader workers")
    print(f"epoch from originals: {', '.join(f'{t:.2f}' for t in plain)} s")
    print(f"first epoch through the cache (decodes and stores): {first:.2f} s; stored {stored:.1f} MB")
    print(f"later epochs through the cache: {', '.join(f'{t:.2f}' for t in cached)} s")
    print(f"ratio: {statistics.median(plain) / statistics.median(cached):.1f}")


if __name__ == "__main__":
    main()
