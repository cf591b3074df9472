"""`train`, `resume`, `evaluate`, `grid` and `runs`: training runs from the command line."""

from __future__ import annotations

import argparse
import sys

from wildvision import catalog, runs, slurm
from wildvision.cli.options import USER_ERRORS, add_runs_dir, add_training_options, training_options
from wildvision.models import ARCHITECTURES, WeightsError, imagenet_weights_problem
from wildvision.training.config import REGIMES, TrainConfig
from wildvision.training.launch import PAPER_GRID, list_runs_shown, named_folder_argument, parse_weights, resolve_weights
from wildvision.wording import error_text
from wildvision.worker import print_results, train_one, train_queue


def cmd_train(args: argparse.Namespace) -> int:
    from wildvision.training.train import start_run

    weights = resolve_weights(args.weights) if args.weights else None
    config = TrainConfig(arch=args.arch, regime=args.regime, with_background=args.with_background, weights=weights, **training_options(args))
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
        configs = [TrainConfig.from_grid_entry(entry, weights=weights, **training_options(args)) for entry in chosen]
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
            run_dir = start_run(TrainConfig.from_grid_entry(entry, weights=weights, **training_options(args)), args.runs_dir)
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


def register(sub) -> None:
    """The training commands and their options."""
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
    add_training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a killed, failed, cancelled or queued run", description="Continue a run after its last completed epoch.")
    p.add_argument(
        "run",
        nargs="+",
        help="run folders (or names under --runs-dir), trained one after another; completed runs are skipped, and so are cancelled ones when several are given",
    )
    add_runs_dir(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a run's best model on more test sets",
        description="Evaluate a run's best model on test sets and add them to its results.json.",
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    p.add_argument("--test", action="append", type=named_folder_argument, required=True, metavar="NAME=DIR", help="a test set; repeat for more")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_runs_dir(p)
    p.set_defaults(func=cmd_evaluate)

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
    add_training_options(p)
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

    p = sub.add_parser("runs", help="list runs and their states", description="List the runs under --runs-dir, newest first.")
    add_runs_dir(p)
    p.set_defaults(func=cmd_runs)
