"""The command line: `python -m wildvision COMMAND --help` explains each command.

Each module here registers its commands and their options in one place (`register`); this one builds the parser
from them and turns a user's mistake into one `error:` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from wildvision.cli import audit, cache, data, explain, models, report, retrain, screening, training
from wildvision.cli.options import USER_ERRORS
from wildvision.wording import error_text
from wildvision.worker import log_to_console


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wildvision", description="Train, evaluate and use image classifiers that flag online wildlife trade (Kulkarni & Di Minin, 2022)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training.register(sub)
    models.register(sub)
    data.register(sub)
    screening.register(sub)
    explain.register(sub)
    cache.register(sub)
    retrain.register(sub)
    audit.register(sub)
    report.register(sub)

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
