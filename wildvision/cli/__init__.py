"""The command line: `python -m wildvision COMMAND --help` explains each command.

Each module here registers its commands and their options in one place (`register`); this one builds the parser
from them and turns a user's mistake into one `error:` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from wildvision import case_export, decisions, screening
from wildvision.cli import data, explain, models, training
from wildvision.cli.options import USER_ERRORS
from wildvision.wording import error_text
from wildvision.worker import log_to_console


def _command(sub, name: str, help_text: str, description: str, add_arguments, run) -> None:
    """A subcommand whose module defines its own arguments and what it runs (screening, decisions, wordnet_filter)."""
    parser = sub.add_parser(name, help=help_text, description=description)
    add_arguments(parser)
    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wildvision", description="Train, evaluate and use image classifiers that flag online wildlife trade (Kulkarni & Di Minin, 2022)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training.register(sub)
    models.register(sub)
    data.register(sub)
    _command(
        sub,
        "screen",
        "score folders, zips or lists of images with a model, as a resumable screening job",
        "Score every image of each SOURCE (a folder, searched recursively; a zip; or a text file listing image paths) "
        "and write a screening folder under --screens-dir: config.json, status.json and scores.csv (path, sha256, probability, "
        "label, unlike_training, duplicate_group, error). Files that cannot be read are listed with their reason. Killed at any "
        "moment, --resume SCREEN_DIR finishes it with every file scored exactly once. --slurm-tasks N lists the files here and "
        "scores them as a SLURM job array of N shards (--dry-run prints its batch script).",
        screening.add_screen_arguments,
        screening.run_screen,
    )
    _command(
        sub,
        "review",
        "record people's decisions on a screening job's images, or list them",
        "Decisions (captive / not / unsure, with reviewer, note and time) are kept in the screening folder's "
        "decisions.sqlite with their full history; the model's scores are never changed.",
        decisions.add_review_arguments,
        decisions.run_review,
    )
    _command(
        sub,
        "export",
        "export a screening job's confirmed cases: a CSV, an evidence pack, or a training folder",
        "Take out what people decided in a completed screening job: --csv the confirmed cases (decided the positive class) with "
        "score, reviewer, time and note; --zip an evidence pack (those photos byte for byte, a saliency map of each, the CSV and a "
        "README); --training-folder every photo decided a class, copied into a training folder for `train --data` with a manifest, "
        "reporting photos that are the same photo as a test-set image. Nothing is written when any check fails (exit code 2); "
        "exit code 1 when some photos were gone or changed since screening and were left out.",
        case_export.add_export_arguments,
        case_export.run_export,
    )

    explain.register(sub)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_console()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:  # with the advice its hint code gives (wildvision.wording.HINTS), in the command line's words
        print(f"error: {error_text(error, 'cli')}", file=sys.stderr)
        return 2
