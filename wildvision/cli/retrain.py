"""`retrain`: a new head for a screening job's model, trained on its base training photos plus the job's decisions."""

from __future__ import annotations

import argparse

from wildvision.cli.options import add_runs_dir
from wildvision.screening.retrain import retrain


def cmd_retrain(args: argparse.Namespace) -> int:
    """Retrain, say what went into it, and print the new run's folder last (scripts read the last line)."""
    result = retrain(args.screen_dir, args.base, args.name, args.runs_dir)
    lineage = result.lineage
    used = ", ".join(f"{count:,} {name}" for name, count in lineage["decisions_used"].items())
    print(
        f"trained on {lineage['base_training_photos']:,} base training photos and {used} decided photos (distinct photos, each weighing {lineage['decision_weight']})"
    )
    print(
        f"left out: {lineage['unsure_left_out']:,} unsure, {lineage['held_out_photos']:,} decided photos of the audit sample, {lineage['conflicting_reposts_left_out']:,} reposts decided both ways"
    )
    print(f"threshold {result.threshold:.4f}; {lineage['seconds']} s")
    print(result.run_dir)
    return 0


def register(sub) -> None:
    """The `retrain` command and its options."""
    p = sub.add_parser(
        "retrain",
        help="retrain a screening job's model on people's decisions in about a minute (a new run folder)",
        description="Fit a new head for the base model on its own training photos plus the screening job's decided photos, from the "
        "backbone features the job stored (no photo decoded again), and write it as an ordinary run folder: Results, Predict, Review, "
        "evaluate and explain use it as any run. Unsure decisions and the job's audit sample are left out. The last line is the new run's folder.",
    )
    p.add_argument("screen_dir", metavar="SCREEN_DIR", help="a completed screening job folder")
    p.add_argument(
        "--base", default="default", metavar="default|RUN", help="the model to retrain: default (the shipped model) or a run folder or name (default: default)"
    )
    p.add_argument("--name", default=None, help="the new run's name (default: retrained-<job folder>)")
    add_runs_dir(p)
    p.set_defaults(func=cmd_retrain)
