"""How long each dashboard page takes to render with many completed runs on disk (issue 5, item 6).

Creates a runs folder with N completed runs (copies of one real, freshly trained run under new names,
spread over the paper's architectures, regimes and datasets), then renders every page with Streamlit's
AppTest, which runs the page script exactly as the server would, and times it: first with the
page's caches empty (a visitor right after the runs changed), then again (the next visitors).
Python imports are paid once beforehand, as on a server that is already up. The last line is
`ratio: <seconds>`, the slowest page's first render.

    python experiments/bench_pages.py [--runs 200] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from wildvision import runs
from wildvision.training.config import TrainConfig
from wildvision.training.launch import grid_name, load_grid
from wildvision.training.train import execute_run, start_run

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"home": "Home.py"} | {name: f"app_pages/{name}.py" for name in ("train", "results", "efficiency", "generalisation", "predict")}


def seed_run(folder: Path) -> Path:
    """One real completed run: SqueezeNet from random init, 1 epoch on generated images (seconds on a CPU)."""
    import numpy as np
    from PIL import Image

    data = folder / "data"
    for class_name, offset in (("captive", 0), ("wild", 100)):
        (data / class_name).mkdir(parents=True)
        for index in range(10):
            pixels = np.random.default_rng(offset + index).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / class_name / f"{index}.png")
    config = TrainConfig(
        arch="squeezenet1_0",
        regime="scratch",
        data=str(data),
        epochs=1,
        batch_size=8,
        num_workers=0,
        device="cpu",
        tests={"test_out_pet": str(data), "test_out_nopet": str(data)},
    )
    run_dir = start_run(config, folder / "seed")
    execute_run(run_dir)
    return run_dir


def fill(runs_dir: Path, seed: Path, count: int) -> None:
    """`count` copies of the seed run, each claiming one of the paper's 24 configurations in turn."""
    entries = load_grid()
    for index in range(count):
        entry = entries[index % len(entries)]
        target = runs_dir / f"{grid_name(entry)}-{index:04d}"
        shutil.copytree(seed, target)
        config = runs.read_json(target / runs.CONFIG)
        config["train"].update(arch=entry["arch"], regime=entry["regime"], with_background=entry["background"])
        runs.write_json_atomic(target / runs.CONFIG, config)


def render_seconds(page: str) -> float:
    started = time.perf_counter()
    at = AppTest.from_file(str(ROOT / page), default_timeout=300).run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"{page} raised: {at.exception[0].message}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="completed runs on disk (default: 200)")
    parser.add_argument("--repeat", type=int, default=3, help="renders per page; the median is reported (default: 3)")
    parser.add_argument("--quick", action="store_true", help="one render per page after a warm-up (well under 3 minutes)")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        runs_dir = scratch / "runs"
        runs_dir.mkdir()
        fill(runs_dir, seed_run(scratch), args.runs)
        os.environ["WILDVISION_RUNS_DIR"] = str(scratch / "empty")
        for page in PAGES.values():
            render_seconds(page)  # imports, paid once per server
        os.environ["WILDVISION_RUNS_DIR"] = str(runs_dir)
        print(f"{len(runs.list_runs(runs_dir))} completed runs in {runs_dir}")
        print(f"{'page':<16}{'first render':>14}{'next renders':>14}")
        first = {}
        for name, page in PAGES.items():
            first[name] = render_seconds(page)
            again = statistics.median(render_seconds(page) for _ in range(repeat))
            print(f"{name:<16}{first[name]:>12.2f} s{again:>12.2f} s")
    slowest = max(first, key=first.get)
    print(f"slowest page: {slowest}")
    print(f"ratio: {first[slowest]:.2f}")


if __name__ == "__main__":
    main()
