"""`audit`: a screening job's audit sample (photos chosen at random) and the honest estimates its decisions give."""

from __future__ import annotations

import argparse
import getpass
import json

from wildvision.screening import audit, estimates


def cmd_audit(args: argparse.Namespace) -> int:
    """Grow the sample and list what still needs a decision, or print the estimates."""
    if args.estimate:
        found = estimates.job_estimates(args.screen_dir)
        if found is None:
            raise ValueError(f"screening job {args.screen_dir} has no audit sample yet: draw one with --size N")
        print(json.dumps(found.to_json(), indent=2) if args.json else "\n".join(estimates.in_words(found)))
        return 0
    if args.size is None:
        raise ValueError("say --size N to add N distinct photos to the audit sample, or --estimate to see the estimates")
    if args.json:
        raise ValueError("--json goes with --estimate")
    audit.draw(args.screen_dir, args.size, args.seed, getpass.getuser(), args.unit)
    for path in audit.to_decide(args.screen_dir):
        print(path)
    return 0


def register(sub) -> None:
    """The `audit` command and its options."""
    p = sub.add_parser(
        "audit",
        help="an audit sample of a screening job's photos chosen at random, and the precision, recall and trade count it measures",
        description="--size N adds N distinct photos, chosen at random by score band (flagged, uncertain, the rest), to the job's audit "
        "sample and prints, one per line, the sampled photos that still need a decision (decide them on the Review page or with `review`). "
        "The first draw records the seed, the line and the bands' sizes; later draws keep them, so the sample grows without changing. "
        "--estimate prints how many of the job's photos show trade, how many of them the line catches and how many of its flags are "
        "right, each with a 95%% interval, from the sample's decisions alone.",
    )
    p.add_argument("screen_dir", metavar="SCREEN_DIR", help="a completed screening job folder")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--size", type=int, default=None, metavar="N", help="add N distinct photos to the sample")
    action.add_argument("--estimate", action="store_true", help="print the estimates from the sample's decisions")
    p.add_argument("--seed", type=int, default=None, help="the first draw's random seed (default: a random one, recorded)")
    p.add_argument(
        "--unit",
        choices=(audit.PHOTO, audit.LISTING),
        default=None,
        help="on the first draw: what the sample and its estimates count, distinct photos (default) or listings (a job screened "
        "from a manifest of listings; a listing shows trade when one of its photos does)",
    )
    p.add_argument("--json", action="store_true", help="with --estimate: print JSON (precision, recall, prevalence, each with estimate, low, high; n)")
    p.set_defaults(func=cmd_audit)
