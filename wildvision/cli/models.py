"""`predict`, `models` and `gain`: using and comparing models from the command line."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from wildvision import catalog, paper, runs
from wildvision.cli.options import add_runs_dir
from wildvision.models import ARCHITECTURES, PAPER_ARCHITECTURES
from wildvision.spreadsheet import csv_text
from wildvision.training.config import REGIMES
from wildvision.uploads import ZIP_EXTENSION, UploadLimits, unpack_uploads
from wildvision.wording import plain_name

# A zip given to `predict` is the user's own, but may come from anyone: member names and symlinks are
# never trusted, and bombs are capped, with room for far more photos than a browser upload.
CLI_ZIP_LIMITS = UploadLimits(max_images=200_000, max_zip_members=400_000, max_total_bytes=8 * 2**30)


def cmd_predict(args: argparse.Namespace) -> int:
    from wildvision.predict import expand_paths, load_model, predict_paths

    loaded = load_model(args.model, args.runs_dir, args.device)
    zips = [p for p in args.paths if Path(p).suffix.lower() == ZIP_EXTENSION and Path(p).is_file()]
    with tempfile.TemporaryDirectory(prefix="wildvision-zip-") as unpacked, contextlib.ExitStack() as stack:
        batch = unpack_uploads([(z, stack.enter_context(open(z, "rb"))) for z in zips], unpacked, CLI_ZIP_LIMITS)
        for note in batch.notes:
            print(note, file=sys.stderr)
        shown = {str(image.path): image.name for image in batch.images}  # "photos.zip/kennel/cat.jpg"
        paths = expand_paths([p for p in args.paths if p not in zips]) + [image.path for image in batch.images]
        if not paths:
            raise ValueError(f"no image files in {', '.join(args.paths)}")
        predictions = [replace(p, path=shown.get(p.path, p.path)) for p in predict_paths(loaded, paths, args.batch_size)]
    rows = [
        [
            plain_name(str(p.path)),
            f"{p.probability:.6f}",
            p.label,
            "" if p.unlike_training is None else f"{p.unlike_training:.4f}",
            "" if p.unusual is None else str(p.unusual).lower(),
        ]
        for p in predictions
        if p.error is None
    ]
    # the last two columns are empty without a novelty summary; names that would be formulas in a spreadsheet are text
    text = csv_text(["path", "probability", "label", "unlike_training", "unusual"], rows)
    if args.csv:
        runs.write_text_atomic(Path(args.csv), text)
    else:
        sys.stdout.write(text)
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        print(f"could not predict {p.path}: {p.error}", file=sys.stderr)
    if args.csv:
        print(f"wrote {len(predictions) - len(failed)} predictions to {args.csv}", file=sys.stderr)
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from wildvision.models import count_parameters

    print(f"{'architecture':<16}{'trainable parameters':>22}  origin")
    for arch in ARCHITECTURES:
        origin = "paper (Table S4)" if arch in PAPER_ARCHITECTURES else "extension"
        print(f"{arch:<16}{count_parameters(arch):>22,}  {origin}")
    return 0


def cmd_gain(args: argparse.Namespace) -> int:
    from wildvision.analysis.efficiency import efficiency_table
    from wildvision.analysis.tidy import PAPER, combined_results

    records = catalog.list_models(args.runs_dir, include_default=False) if args.source == "runs" else []
    origin = PAPER if args.source == "paper" else catalog.RUN
    table = efficiency_table(combined_results(records), origin, args.test, args.dataset, args.regime)  # says plainly when it cannot
    print(f"efficiency gain over squeezenet1_0 ({args.source}: {args.test}, {args.dataset}, {args.regime})")
    print(f"{'rank':<6}{'architecture':<16}{'F':>8}{'parameters':>14}{'gain per parameter':>22}")
    for row in table.itertuples():
        print(f"{row.rank:<6}{row.model:<16}{row.f_score:>8.3f}{row.params:>14,}{row.gain:>22.3e}")
    return 0


def register(sub) -> None:
    """The commands that use and compare models, and their options."""
    p = sub.add_parser(
        "predict", help="predict images with a trained model", description="Print path, probability of the positive class and label for each image."
    )
    p.add_argument(
        "--model", default="default", help="default (the shipped model), a run folder, a run name under --runs-dir, or a checkpoint.pt (default: default)"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of images, or zip files of images")
    p.add_argument("--csv", help="write the predictions to this CSV file instead of standard output")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: 8 on the CPU, 32 on a GPU)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_runs_dir(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "models",
        help="list architectures and their trainable parameter counts",
        description="List the architectures with a 2-class head and their trainable parameter counts (Table S4).",
    )
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "gain",
        help="rank architectures by efficiency gain over SqueezeNet",
        description="Efficiency gain (Section 3.3): (F - F_squeezenet) / (parameters - parameters_squeezenet), highest first.",
    )
    p.add_argument("--source", choices=("paper", "runs"), default="paper", help="the paper's reported F-scores, or own completed runs (default: paper)")
    p.add_argument("--test", default="test_in", help="test set: test_in, test_out_pet, test_out_nopet, or any name your runs used (default: test_in)")
    p.add_argument("--dataset", choices=paper.DATASETS, default="bg", help="trained with or without background images (default: bg)")
    p.add_argument("--regime", choices=REGIMES, default="transfer", help="training regime (default: transfer)")
    add_runs_dir(p)
    p.set_defaults(func=cmd_gain)
