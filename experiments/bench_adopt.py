"""Adopting a retrained model for a 10,000-photo screening job (issue 23): rescore.use_model re-scores it from the
stored features as a new version of its scores, with no photo decoded again.

The job is made from real demo photos, then enlarged: --photos demo photos are screened with the default model, decided
by their folder, and the default model retrained on them (screening.retrain); then the job's rows and stored features
are repeated, each copy under its own path, to --rows rows (the features are real demo features, repeated: re-scoring
costs the same whatever the photos are). Each repeat adopts the retrained model on a fresh copy of that job, timed from
the call to its return: loading the model, the head and the novelty score on every row, scores.csv rewritten, the old
version kept, config.json, status.json and versions.json written.

The last line is `ratio: <best seconds / 5>` (target <= 1: at most 5 s for 10,000 photos on 2 CPU cores).

    python experiments/bench_adopt.py [--rows 10000] [--photos 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmarking import demo_photos

from wildvision import runs
from wildvision.inference import default_batch_size
from wildvision.predict import load_model
from wildvision.screening import decisions, job_features, rescore
from wildvision.screening.config import FILES, SCORES, read_config, write_config
from wildvision.screening.job import create_screen, finish_screen
from wildvision.screening.merge import SCORES_COLUMNS
from wildvision.screening.retrain import retrain


def enlarge(screen_dir: Path, rows: int) -> None:
    """Repeat the job's rows (scores.csv, files.jsonl, features.npy) to `rows`, each copy's paths made distinct."""
    with open(screen_dir / SCORES, newline="", encoding="utf-8") as handle:
        scored = list(csv.DictReader(handle))
    files = (screen_dir / FILES).read_text(encoding="utf-8").splitlines()
    _, stored = job_features.read_features(screen_dir)
    stored = np.array(stored)
    copies = -(-rows // len(scored))
    with open(screen_dir / SCORES, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SCORES_COLUMNS)
        for i in range(rows):
            row = scored[i % len(scored)] | {"path": f"{scored[i % len(scored)]['path']}#{i // len(scored)}"}
            writer.writerow([row[column] for column in SCORES_COLUMNS])
    listed = [json.loads(files[i % len(files)]) for i in range(rows)]
    (screen_dir / FILES).write_text(
        "".join(json.dumps([f"{entry[0]}#{i // len(files)}", *entry[1:]]) + "\n" for i, entry in enumerate(listed)), encoding="utf-8"
    )
    np.save(screen_dir / job_features.FEATURES, np.tile(stored, (copies, 1))[:rows])
    config = read_config(screen_dir)
    write_config(screen_dir, dataclasses.replace(config, files=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the enlarged job (default: 10,000)")
    parser.add_argument("--photos", type=int, default=64, help="demo photos actually screened (default: 64)")
    parser.add_argument("--repeat", type=int, default=3, help="adoptions timed, each on a fresh copy (default: 3)")
    args = parser.parse_args()
    loaded = load_model("default")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        listing = scratch / "photos.txt"
        listing.write_text("".join(f"{photo}\n" for photo in demo_photos(args.photos)), encoding="utf-8")
        job = finish_screen(create_screen([str(listing)], "default", loaded, default_batch_size(loaded.device), scratch / "screens", "market"), loaded)
        with open(job / SCORES, newline="", encoding="utf-8") as handle:
            readable = [row["path"] for row in csv.DictReader(handle) if not row["error"]]
        truth = lambda path: "captive" if Path(path).parent.name == "captive" else "not_captive"
        decisions.decide_each(job, [("", path, truth(path)) for path in readable], "bench")
        run_dir = retrain(job, "default", "bench", scratch / "runs", held_out=set()).run_dir
        enlarge(job, args.rows)
        print(f"a job of {args.rows:,} rows: {args.photos} screened demo photos' rows and features repeated", flush=True)
        times = []
        for repeat in range(args.repeat):
            copy = Path(shutil.copytree(job, scratch / f"copy-{repeat}"))
            started = time.perf_counter()
            entry = rescore.use_model(copy, run_dir, "bench")
            times.append(time.perf_counter() - started)
            assert entry["version"] == 2 and runs.read_json(copy / runs.STATUS)["state"] == "completed"
        print(f"adopting: {', '.join(f'{t:.2f}' for t in times)} s (best {min(times):.2f} s)")
    print(f"ratio: {min(times) / 5:.3f}")


if __name__ == "__main__":
    main()
