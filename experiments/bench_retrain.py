"""Retraining the default model on a job's decisions (issue 23, "a better model from people's decisions in a minute").

On real demo photos: test_out_pet's photos are split in two halves (seeded); a screening job scores one half with the
default model, and the first --decisions review items in the Review page's order (review.queue with its default
filters: flagged, then uncertain, highest score first) are decided with their true folder label (captive ->
captive, other -> not_captive), every repost with its photo, as the page decides them. `retrain` is timed on the job
(in this process, as wildvision.screening.retrain.retrain; no audit sample is drawn for the job, so nothing is held
out: audit.audit_paths is empty). Then the base and the retrained model are evaluated on the other half, which was never screened, each at its
own threshold: precision, recall and F of the captive class. Both models share the backbone, so the other half's
features are computed once by a forward pass (novelty.backbone_features, float32) and each head is applied to them:
exactly what a forward pass of either model gives.

The last line is `ratio: <retrain seconds / 60>` (target <= 1: within a minute on 2 CPU cores).

    python experiments/bench_retrain.py [--decisions 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmarking import demo_folder

from wildvision import novelty
from wildvision.evaluate import compute_metrics
from wildvision.inference import default_batch_size
from wildvision.models import head
from wildvision.predict import load_model
from wildvision.screening import decisions, review
from wildvision.screening.job import create_screen, finish_screen
from wildvision.screening.retrain import head_probabilities, retrain


def halves(seed: int) -> tuple[list[Path], list[Path]]:
    photos = sorted(p for part in ("captive", "other") for p in (demo_folder("test_out_pet") / part).iterdir())
    random.Random(seed).shuffle(photos)
    return sorted(photos[: len(photos) // 2]), sorted(photos[len(photos) // 2 :])


def truth(path: str) -> int:
    return int(Path(path).parent.name == "captive")


def decide_in_review_order(screen_dir: Path, count: int) -> int:
    """Decide the first `count` items of the Review page's queue with their true labels; returns how many were decided."""
    job = review.read_job(screen_dir)
    items = review.with_decisions(review.read_items(screen_dir), decisions.current(screen_dir))
    shown = review.queue(items, job.threshold, review.Filters(), job.unusual_level).head(count)
    for path in shown["path"]:
        review.decide_photo(job, items, path, job.class_names[truth(path)], "bench")
    return len(shown)


def line(name: str, labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> str:
    at = compute_metrics(labels.tolist(), probabilities.tolist(), threshold)
    precision, recall = at["positive_precision"], at["positive_recall"]
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f"{name:<10} threshold {threshold:.3f}: precision {precision:.3f}, recall {recall:.3f}, F {f:.3f} (captive class); weighted F {at['f_score']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=200, help="review items decided (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split in halves (default: 0)")
    args = parser.parse_args()
    screened, held = halves(args.seed)
    base = load_model("default")
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "market.txt"
        listing.write_text("".join(f"{photo}\n" for photo in screened), encoding="utf-8")
        print(f"screening {len(screened):,} photos of test_out_pet with the default model ...", flush=True)
        screen_dir = finish_screen(create_screen([str(listing)], "default", base, default_batch_size(base.device), Path(scratch) / "screens"), base)
        decided = decide_in_review_order(screen_dir, args.decisions)
        print(f"decided {decided} review items in the Review page's order", flush=True)
        started = time.perf_counter()
        result = retrain(screen_dir, "default", "bench", Path(scratch) / "runs")
        seconds = time.perf_counter() - started
        print(
            f"retrain: {seconds:.1f} s; decisions used {result.lineage['decisions_used']} (distinct photos), each weighing {result.lineage['decision_weight']}"
        )
        retrained = load_model(result.run_dir)
        print(f"evaluating on the {len(held):,} never-screened photos ...", flush=True)
        features = novelty.backbone_features(base, held)
        readable = ~np.isnan(features[:, 0])
        labels = np.array([truth(str(p)) for p in held])[readable]
        print(f"never-screened half: {len(labels):,} photos, {int(labels.sum())} captive")
        for name, model in (("base", base), ("retrained", retrained)):
            print(line(name, labels, head_probabilities(head(model.model, model.arch), features[readable]), model.threshold))
    print(f"ratio: {seconds / 60:.3f}")


if __name__ == "__main__":
    main()
