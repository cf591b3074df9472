"""How long the Review page takes to render a screening job of 10,000 photos (issue 14: target at most 1 s).

Writes a completed job folder as `python -m wildvision screen` leaves it (config.json, status.json, files.jsonl and
scores.csv, with reposts and unreadable rows), whose files cycle through 48 generated 1024 x 768 JPEGs, and 500
decisions in its SQLite store. Then renders app_pages/review.py with Streamlit's AppTest, which runs the page script as
the server would: first with every cache empty (the first visitor after the job finished: scores.csv read, 12
thumbnails decoded), then again (each click after that: decisions re-read, the queue re-sorted). Imports are paid
beforehand, as on a running server. The last line is `ratio: <first render in seconds / 1 s>`.

    python experiments/bench_review_page.py [--items 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from wildvision import model_card, runs
from wildvision.screening import decisions
from wildvision.screening.config import FILES, SCORES
from wildvision.screening.merge import SCORES_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the page imports app_pages.widgets, as Home.py's navigation runs it from the clone
TARGET_S = 1.0
PHOTOS = 48


def write_job(screen_dir: Path, items: int, photos: list[Path]) -> None:
    """A completed job of `items` rows: one in 20 a repost of the row before it, one in 100 unreadable."""
    rng = np.random.default_rng(0)
    screen_dir.mkdir(parents=True)
    config = {"model": "default", "model_file": model_card.DEFAULT_NAME, "architecture": model_card.ARCH, "threshold": 0.5}
    config |= {
        "class_names": ["not_captive", "captive"],
        "sources": [str(screen_dir.parent / "market")],
        "sources_as_given": ["market"],
        "files": items,
        "created_at": runs.now(),
    }
    runs.write_json_atomic(screen_dir / runs.CONFIG, config)
    runs.write_status(screen_dir, "completed", done=items, total=items, seconds_left=0)
    with open(screen_dir / FILES, "w", encoding="utf-8") as listing, open(screen_dir / SCORES, "w", newline="", encoding="utf-8") as scores:
        writer = csv.writer(scores)
        writer.writerow(SCORES_COLUMNS)
        group = 0
        for index in range(items):
            path = f"market/day-{index // 1000:02d}/post-{index:06d}.jpg"
            file = str(photos[index % len(photos)])
            listing.write(json.dumps([path, file, None]) + "\n")
            if index % 100 == 99:
                writer.writerow([path, "", "", "", "", "", "corrupt or truncated image"])
                continue
            group = group if index % 20 == 19 else index + 1
            probability = float(rng.beta(0.6, 0.9))
            label = "captive" if probability >= 0.5 else "not_captive"
            writer.writerow([path, f"{index:064x}", f"{probability:.6f}", label, f"{rng.gamma(4, 0.1):.4f}", group, ""])


def render_seconds(screens_dir: Path) -> float:
    os.environ["WILDVISION_SCREENS_DIR"] = str(screens_dir)
    started = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app_pages" / "review.py"), default_timeout=120).run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"the Review page raised: {at.exception[0].message}")
    shown = at.get("image")
    if len(shown) < 12:
        raise RuntimeError(f"the page showed {len(shown)} photos, not a page of 12: it did not render the job")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        photos = []
        for index in range(PHOTOS):
            pixels = np.random.default_rng(index).integers(0, 256, (768 // 8, 1024 // 8, 3), dtype=np.uint8)
            photos.append(folder / f"photo-{index}.jpg")
            Image.fromarray(pixels).resize((1024, 768)).save(photos[-1], quality=90)
        screen_dir = folder / "screens" / "market-10k"
        write_job(screen_dir, args.items, photos)
        with open(screen_dir / SCORES, newline="", encoding="utf-8") as handle:
            decided = [row["path"] for row in csv.DictReader(handle) if not row["error"]][: args.items // 20]
        decisions.decide(screen_dir, decided, "captive", "bench")
        for module in ("app_pages.widgets", "wildvision.explain.saliency", "wildvision.screening.review", "wildvision.screening.background"):
            importlib.import_module(module)  # the page's imports (torch, captum), as on a server that is already up
        first = render_seconds(screen_dir.parent)
        again = [render_seconds(screen_dir.parent) for _ in range(args.repeat)]
    print(f"{args.items:,} screened items, {len(decided):,} decided")
    print(f"first render (caches empty): {first:.2f} s")
    print(f"later renders: median {statistics.median(again):.2f} s over {args.repeat}")
    print(f"target: at most {TARGET_S:.0f} s")
    print(f"ratio: {first / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
