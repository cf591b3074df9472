"""The command line: `python -m wildvision SUBCOMMAND --help` explains each subcommand."""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from wildvision import case_export, catalog, datacheck, decisions, paper, runs, screening, slurm, wordnet_filter
from wildvision.data import DataFolderError
from wildvision.explain import gallery
from wildvision.images import ImageError
from wildvision.models import ARCHITECTURES, PAPER_ARCHITECTURES, WeightsError, imagenet_weights_problem
from wildvision.predict import CheckpointError
from wildvision.training.config import REGIMES, TrainConfig
from wildvision.training.launch import PAPER_GRID, list_runs_shown, named_folder_argument, parse_weights, resolve_weights
from wildvision.uploads import ZIP_EXTENSION, UploadLimits, unpack_uploads
from wildvision.wording import CLASS_FOLDERS, error_text
from wildvision.worker import log_to_console, print_results, train_one, train_queue

USER_ERRORS = (DataFolderError, WeightsError, runs.RunError, CheckpointError, ImageError, ValueError, OSError)


def _test_folder(text: str) -> tuple[str, str]:
    """A test set for `data check`: NAME=DIR, or a bare DIR named by its folder (test_out_pet)."""
    return named_folder_argument(text if "=" in text else f"{Path(text).name}={text}")


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=str(runs.default_runs_dir()), help="folder that holds the run folders (default: $WILDVISION_RUNS_DIR, else runs)")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `train` and `grid`: data, test sets and hyperparameter overrides."""
    parser.add_argument("--data", required=True, help=f"training folder: one sub-folder per class ({CLASS_FOLDERS})")
    parser.add_argument("--positive", default="captive", help="name of the positive class folder; every other folder is negative (default: captive)")
    parser.add_argument(
        "--test",
        action="append",
        type=named_folder_argument,
        default=[],
        metavar="NAME=DIR",
        help="an extra test set, laid out like the training folder; repeat for more (e.g. test_out_pet=DIR)",
    )
    parser.add_argument("--epochs", type=int, default=200, help="most epochs to train; early stopping usually ends sooner (default: 200)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default: Table S5, 15 head-only, 35 all layers)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: Table S5, 75 head-only, 15 all layers)")
    parser.add_argument("--lr", type=float, help="SGD learning rate (default: Table S5, 0.001 head-only, 0.0005 all layers)")
    parser.add_argument("--head-epochs", type=int, default=10, help="combi regime: epochs of head-only training before all layers train (default: 10)")
    parser.add_argument(
        "--target-precision",
        type=float,
        default=0.95,
        help="the decision threshold is the lowest whose positive-class precision on test_in reaches this, but never below 0.5 "
        "(test_in is easy: a lower line flags many everyday photos); with --calibrate-on, on that test set and with no floor (default: 0.95)",
    )
    parser.add_argument(
        "--exclude-test-duplicates",
        action="store_true",
        help="leave out test images that are the same photo as a training image (exact or near copies); they are reported either way",
    )
    parser.add_argument(
        "--calibrate-on",
        metavar="NAME",
        help="choose the decision threshold on this --test set instead of test_in, with no floor: a labelled set like the photos "
        "the model will check (your own market); that set's numbers are then optimistic",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the split, initialisation and augmentation (default: 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--workers", type=int, default=TrainConfig.num_workers, help=f"image-loading worker processes (default: {TrainConfig.num_workers})")
    parser.add_argument(
        "--feature-views",
        type=int,
        default=TrainConfig.feature_views,
        help="head-only epochs (transfer; combi's first phase) train the head on this many stored augmented views "
        f"per image, computed once; 0 runs the backbone every epoch instead (default: {TrainConfig.feature_views})",
    )
    parser.add_argument("--cache-dir", help="where decoded images and backbone features are kept (default: $WILDVISION_CACHE_DIR or ~/.cache/wildvision)")
    _add_runs_dir(parser)


def _training_options(args: argparse.Namespace) -> dict:
    """TrainConfig's fields from the options `train` and `grid` share (all but architecture, regime, background, weights)."""
    return {
        "data": str(Path(args.data).resolve()),
        "positive": args.positive,
        "tests": dict(args.test),
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_epochs": args.head_epochs,
        "seed": args.seed,
        "device": args.device,
        "num_workers": args.workers,
        "split": getattr(args, "split", None),
        "target_precision": args.target_precision,
        "calibrate_on": args.calibrate_on,
        "exclude_test_duplicates": args.exclude_test_duplicates,
        "feature_views": args.feature_views,
        "cache_dir": args.cache_dir and str(Path(args.cache_dir).resolve()),
    }


def cmd_train(args: argparse.Namespace) -> int:
    from wildvision.training.train import start_run

    weights = resolve_weights(args.weights) if args.weights else None
    config = TrainConfig(arch=args.arch, regime=args.regime, with_background=args.with_background, weights=weights, **_training_options(args))
    if config.regime != "scratch" and config.weights in (None, "imagenet"):
        problem = imagenet_weights_problem(config.arch)
        if problem:  # say so before a run folder is made that could only fail
            raise WeightsError(problem, hint="offline_weights")
    run_dir = start_run(config, args.runs_dir, args.name)
    print(f"run folder: {run_dir}", flush=True)
    return 0 if train_one(run_dir) else 1


def cmd_resume(args: argparse.Namespace) -> int:
    return train_queue([runs.resolve_run(run, args.runs_dir) for run in args.run])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from wildvision.training.train import add_test_sets

    run_dir = runs.resolve_run(args.run, args.runs_dir)
    add_test_sets(run_dir, dict(args.test), args.device)
    print_results(run_dir)
    return 0


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
    out = open(args.csv, "w", newline="", encoding="utf-8") if args.csv else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["path", "probability", "label", "unlike_training", "unusual"])  # the last two empty without a summary
        for p in predictions:
            if p.error is None:
                unlike = "" if p.unlike_training is None else f"{p.unlike_training:.4f}"
                writer.writerow([p.path, f"{p.probability:.6f}", p.label, unlike, "" if p.unusual is None else str(p.unusual).lower()])
    finally:
        if args.csv:
            out.close()
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        print(f"could not predict {p.path}: {p.error}", file=sys.stderr)
    if args.csv:
        print(f"wrote {len(predictions) - len(failed)} predictions to {args.csv}", file=sys.stderr)
    return 1 if failed else 0


def cmd_grid(args: argparse.Namespace) -> int:
    from wildvision.training.launch import grid_name, launch_grid, load_grid, select_grid
    from wildvision.training.train import execute_run, start_run

    weights = parse_weights(args.weights)
    entries = load_grid(args.gridfile)
    chosen = select_grid(entries, args.only)
    if args.launcher == "slurm":
        from wildvision.slurm import SlurmError, batch_script, read_task, settings_from_arguments

        settings = settings_from_arguments(args)
        print(batch_script(len(chosen), settings), end="", flush=True)
        for index, entry in enumerate(chosen):
            print(f"# task {index}: {grid_name(entry)}", file=sys.stderr)
        if args.dry_run:
            print(f"dry run: {len(chosen)} of {len(entries)} configurations; nothing was created or submitted", file=sys.stderr)
            return 0
        configs = [TrainConfig.from_grid_entry(entry, weights=weights, **_training_options(args)) for entry in chosen]
        try:
            run_dirs = launch_grid(configs, args.runs_dir, settings)
        except SlurmError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        task = read_task(run_dirs[0])
        print(f"submitted SLURM job {task['job_id']}: {len(run_dirs)} tasks; batch script and task output in {task['submission']}")
        for run_dir in run_dirs:
            print(f"run folder: {run_dir}")
        print("follow them with `squeue`, `python -m wildvision runs` or the dashboard's Train page")
        return 0
    if args.dry_run:
        raise ValueError("--dry-run shows the SLURM batch script; use it with --launcher slurm")
    print(f"{len(chosen)} of {len(entries)} configurations to run", flush=True)
    failures = []
    for position, entry in enumerate(chosen, 1):
        name = grid_name(entry)
        print(f"[{position}/{len(chosen)}] {name}", flush=True)
        try:
            run_dir = start_run(TrainConfig.from_grid_entry(entry, weights=weights, **_training_options(args)), args.runs_dir)
            print(f"run folder: {run_dir}", flush=True)
            execute_run(run_dir)
        except USER_ERRORS as error:
            print(f"{name} failed: {error_text(error, 'cli')}", file=sys.stderr)
            failures.append(name)
    print(f"{len(chosen) - len(failures)} completed, {len(failures)} failed{': ' + ', '.join(failures) if failures else ''}")
    return 1 if failures else 0


def cmd_runs(args: argparse.Namespace) -> int:
    summaries, notes, slurm_problem = list_runs_shown(args.runs_dir)
    if not summaries:
        print(f"no runs in {args.runs_dir}")
        return 0
    if slurm_problem:
        print(slurm_problem, file=sys.stderr)
    print(f"{'run':<52}{'state':<12}{'epoch':>6}  {'test_in F':>9}")
    for run in summaries:
        test_in = catalog.from_run(run).results.get(catalog.IN_DISTRIBUTION)
        f_score = f"{test_in.f_score:.4f}" if test_in else ""
        print(f"{run.name:<52}{run.state:<12}{run.epoch or 0:>6}  {f_score:>9}  {notes.get(run.name, '')}".rstrip())
    return 0


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

    p = sub.add_parser(
        "train", help="train one model and write a run folder", description="Train one model in one of the paper's regimes and write a run folder."
    )
    p.add_argument("--arch", required=True, choices=ARCHITECTURES, help="architecture")
    p.add_argument("--regime", required=True, choices=REGIMES, help="transfer: head only; scratch: all layers from random init; combi: head, then all layers")
    p.add_argument("--with-background", action="store_true", help="include the background/ folder as extra negatives (the paper's data_bg)")
    p.add_argument(
        "--weights", help="imagenet (torchvision's, downloaded when online), none (random init), or PATH to a state dict (default: imagenet; none for scratch)"
    )
    p.add_argument("--split", help="reuse the train/test_in split of an earlier run (its split.json)")
    p.add_argument("--name", help="run name prefix (default: ARCH-REGIME-DATASET)")
    _add_training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a killed, failed, cancelled or queued run", description="Continue a run after its last completed epoch.")
    p.add_argument(
        "run",
        nargs="+",
        help="run folders (or names under --runs-dir), trained one after another; completed runs are skipped, and so are cancelled ones when several are given",
    )
    _add_runs_dir(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a run's best model on more test sets",
        description="Evaluate a run's best model on test sets and add them to its results.json.",
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    p.add_argument("--test", action="append", type=named_folder_argument, required=True, metavar="NAME=DIR", help="a test set; repeat for more")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    _add_runs_dir(p)
    p.set_defaults(func=cmd_evaluate)

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
    _add_runs_dir(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "grid",
        help="run a grid of configurations here one after another, or on a SLURM cluster (e.g. the paper's 24)",
        description="Run every configuration of a grid file (by default the paper's 24): here, one after another, "
        "or with --launcher slurm as one sbatch job array with a task per configuration.",
    )
    p.add_argument(
        "gridfile",
        nargs="?",
        default=str(PAPER_GRID),
        # named inside the package, not by its absolute path: the help must not depend on where the clone lives
        help="TOML file with [[run]] tables holding arch, regime and background "
        f"(default: the paper's 24 configurations in the package's {PAPER_GRID.parent.name}/{PAPER_GRID.name})",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="run only configurations whose name (ARCH-REGIME-bg|no_bg) matches one of these shell patterns, e.g. 'densenet*-combi-*'",
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="ARCH=PATH|imagenet|none",
        help="pretrained weights: ARCH=PATH (or ARCH=imagenet) for one architecture, *=PATH for every architecture not named, "
        "imagenet (default) or none for all; repeat for more. Scratch configurations always start from random init",
    )
    _add_training_options(p)
    cluster = p.add_argument_group("SLURM", "with --launcher slurm; the run folders (--runs-dir) must be on a filesystem the compute nodes share")
    cluster.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: train here, one after another, until all are done; slurm: submit one job array and return (default: local)",
    )
    cluster.add_argument("--dry-run", action="store_true", help="print the batch script and the task of each configuration; create and submit nothing")
    slurm.add_settings_arguments(cluster)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("data", help="check a dataset, or build a pet-free test set", description="Work on image folders before training on them.")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data_sub.add_parser(
        "check",
        help="find unreadable images, duplicates, near-duplicates and label conflicts",
        description="Per class folder: images, unreadable files, sizes and balance; exact duplicates (SHA-256) and near-duplicates "
        f"(perceptual hash, pHash within {datacheck.PHASH_THRESHOLD} of 64 bits) within the data, across its class folders and "
        "across the test sets; label conflicts (one photo under two classes). Every finding names its files. "
        "Exit code 0: nothing found; 1: findings; 2: a folder cannot be used.",
    )
    p.add_argument("folders", nargs="+", metavar="DIR", help="data folders, each with one sub-folder per class (e.g. ../shared/demo-data/train)")
    p.add_argument("--test", action="append", type=_test_folder, default=[], metavar="[NAME=]DIR", help="a test set to check against the data; repeat for more")
    p.add_argument("--positive", default="captive", help="the positive class folder (default: captive)")
    p.set_defaults(func=lambda args: datacheck.run_check(args.folders, args.test, args.positive))
    _command(
        data_sub,
        "wordnet-filter",
        "keep the captioned photos whose captions name no animal (the paper's test_out_nopet)",
        "Link into --out every photo of IMAGES_DIR whose captions name no noun under WordNet's animal.n.01 "
        "(people excluded), as the paper built test_out_nopet, and list the dropped ones with the words that matched. "
        "Works offline with Debian's WordNet (apt-get install wordnet-base).",
        wordnet_filter.add_filter_arguments,
        wordnet_filter.run_filter,
    )
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

    _command(
        sub,
        "explain",
        "an explanation gallery of a model's surest right and wrong answers on test sets (the paper's Figs 4 and 5)",
        "Score every image of each --test folder, pick per section the --top surest true positives, true negatives, false "
        "positives and false negatives at the model's threshold, explain only those (--method) and lay them out as "
        "gallery.png (about twice a screen, for a slide), gallery.pdf and gallery.json (the picks), under "
        "RUN/explanations/NAME-METHOD/ or --out. Exit code 2 on bad input (unknown run, missing test folder, no positive class).",
        gallery.add_explain_arguments,
        gallery.run_explain,
    )

    p = sub.add_parser("runs", help="list runs and their states", description="List the runs under --runs-dir, newest first.")
    _add_runs_dir(p)
    p.set_defaults(func=cmd_runs)

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
    _add_runs_dir(p)
    p.set_defaults(func=cmd_gain)
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
