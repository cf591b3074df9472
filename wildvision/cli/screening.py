"""The screening commands: `screen` (start or resume a job, or submit it to SLURM), `review` (people's decisions) and
`export` (what they confirmed), each registered with its options here and printing what it did.

Every screening process, in the background or as a SLURM array task, runs `python -m wildvision screen --resume
SCREEN_DIR ...`: there is no other entry point to keep in step with this one.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from wildvision import jobs, runs, slurm
from wildvision.screening import background, decisions
from wildvision.screening.config import SCORES, SCREENS_DIR_ENV, default_screens_dir, read_config
from wildvision.screening.decisions import UNSURE, Decision
from wildvision.screening.export import PACK_CSV, README, Skipped, check_output_file, confirmed_cases, export_csv, export_evidence_pack
from wildvision.screening.job import CANCELLED_MESSAGE, load_screen_model, model_file, outcome, resume_screen, screen
from wildvision.screening.merge import counts_line
from wildvision.screening.review import Job, read_job
from wildvision.screening.scoring import Shard, parse_shard
from wildvision.screening.sources import check_sources
from wildvision.screening.training_export import MANIFEST, OVERLAP_CSV, TrainingFolder, model_test_sets, plan_training_folder, write_training_folder
from wildvision.training.launch import named_folder_argument
from wildvision.wording import plain_name


def register(sub) -> None:
    """Add `screen`, `review` and `export` to the command line's subcommands."""
    commands = (
        (
            "screen",
            "score folders, zips or lists of images with a model, as a resumable screening job",
            (
                "Score every image of each SOURCE (a folder, searched recursively; a zip; or a text file listing image paths) "
                "and write a screening folder under --screens-dir: config.json, status.json and scores.csv (path, sha256, probability, "
                "label, unlike_training, duplicate_group, error). Files that cannot be read are listed with their reason. Killed at any "
                "moment, --resume SCREEN_DIR finishes it with every file scored exactly once. --slurm-tasks N lists the files here and "
                "scores them as a SLURM job array of N shards (--dry-run prints its batch script)."
            ),
            add_screen_arguments,
            run_screen,
        ),
        (
            "review",
            "record people's decisions on a screening job's images, or list them",
            (
                "Decisions (captive / not / unsure, with reviewer, note and time) are kept in the screening folder's "
                "decisions.sqlite with their full history; the model's scores are never changed."
            ),
            add_review_arguments,
            run_review,
        ),
        (
            "export",
            "export a screening job's confirmed cases: a CSV, an evidence pack, or a training folder",
            (
                "Take out what people decided in a completed screening job: --csv the confirmed cases (decided the positive class) with "
                "score, reviewer, time and note; --zip an evidence pack (those photos byte for byte, a saliency map of each, the CSV and a "
                "README); --training-folder every photo decided a class, copied into a training folder for `train --data` with a manifest, "
                "reporting photos that are the same photo as a test-set image. Nothing is written when any check fails (exit code 2); "
                "exit code 1 when some photos were gone or changed since screening and were left out."
            ),
            add_export_arguments,
            run_export,
        ),
    )
    for name, help_text, description, add_arguments, run in commands:
        parser = sub.add_parser(name, help=help_text, description=description)
        add_arguments(parser)
        parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# python -m wildvision screen
# ---------------------------------------------------------------------------------------------


def add_screen_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m wildvision screen`."""
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="folders of images (searched recursively), zips of images, text files listing image paths, or .csv/.jsonl manifests of scraped listings (docs/cli.md)",
    )
    parser.add_argument("--resume", metavar="SCREEN_DIR", help="finish a killed, failed or cancelled screening job instead of starting one")
    parser.add_argument(
        "--shard",
        type=_shard_argument,
        metavar="I/N",
        help="with --resume: score only the parts whose number modulo N is I, as SLURM array task I of N does; "
        "whichever shard finds every part written merges scores.csv",
    )
    parser.add_argument(
        "--model", default="default", help="default (the shipped model), a run folder, a run name under $WILDVISION_RUNS_DIR, or a checkpoint.pt"
    )
    parser.add_argument("--name", help="the job folder's name (default: the first source's name)")
    parser.add_argument("--screens-dir", type=Path, help=f"where job folders go (default: ${SCREENS_DIR_ENV}, else screens/)")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto (a GPU when there is one; default: cpu); with --slurm-tasks, what each task uses (cpu, cuda or cuda:N)",
    )
    cluster = parser.add_argument_group("SLURM", "with --slurm-tasks; the job folder (--screens-dir) must be on a filesystem the compute nodes share")
    cluster.add_argument(
        "--slurm-tasks",
        type=int,
        metavar="N",
        help="list the files here, then score them as one SLURM job array of N tasks (task I scores the parts whose number modulo N is I) and return",
    )
    cluster.add_argument("--dry-run", action="store_true", help="print the batch script that --slurm-tasks would submit; create and submit nothing")
    slurm.add_settings_arguments(cluster)


def _shard_argument(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_screen(args: argparse.Namespace) -> int:
    """`python -m wildvision screen`: 0 when every file was scored (or a SLURM job submitted, or a shard done), 1 when
    some files could not be read, 2 on bad arguments, 130 when cancelled."""
    if bool(args.resume) == bool(args.sources):
        print("error: give SOURCE... to start a screening job, or --resume SCREEN_DIR to finish one (not both)", file=sys.stderr)
        return 2
    cluster = args.slurm_tasks is not None
    if (args.shard and not args.resume) or (cluster and args.resume) or (args.dry_run and not cluster):
        print("error: --shard goes with --resume, --slurm-tasks with SOURCE..., --dry-run with --slurm-tasks", file=sys.stderr)
        return 2
    if cluster:
        return run_slurm_screen(args)
    try:
        if args.resume:
            screen_dir = resume_screen(Path(args.resume), args.device, shard=args.shard)
        else:
            screen_dir = screen(args.sources, args.model, args.name, args.screens_dir, args.device)
    except jobs.Cancelled:
        print(f"cancelled: {CANCELLED_MESSAGE}", file=sys.stderr)
        return jobs.CANCELLED_EXIT
    completed, counts = outcome(screen_dir)
    if not completed:  # a shard whose parts are done while other shards' are not
        print(f"shard {args.shard[0]}/{args.shard[1]} of {screen_dir}: its parts are scored; the shard that finishes last merges scores.csv")
        return 0
    if counts is None:  # completed by a wildvision that did not count
        print(f"{screen_dir / SCORES}: completed")
        return 0
    positive = read_config(screen_dir).positive
    print(f"screened {counts_line(counts, positive)}; scores in {screen_dir / SCORES}")
    return 1 if counts["unreadable"] else 0


def run_slurm_screen(args: argparse.Namespace) -> int:
    """`screen SOURCE... --slurm-tasks N [--dry-run]`: print the batch script, then (unless a dry run) submit it."""
    settings = slurm.settings_from_arguments(args, background.JOB_NAME)
    check_sources(args.sources)
    model_file(args.model)
    script = background.screen_script(args.slurm_tasks, settings, args.device)
    print(script, end="", flush=True)
    screens_dir = args.screens_dir or default_screens_dir()
    if args.dry_run:
        name = runs.safe_name(args.name or Path(args.sources[0]).stem or "screen")
        print(
            f"dry run: the job folder would be {screens_dir}/{name}-TIME-xxxx, its files listed here, then {args.slurm_tasks} tasks "
            "submitted from its slurm/ folder; nothing was created or submitted",
            file=sys.stderr,
        )
        return 0
    try:
        screen_dir = background.submit_screen(args.sources, args.model, screens_dir, args.slurm_tasks, settings, args.name, args.device)
    except slurm.SlurmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    task = slurm.read_task(screen_dir)
    config = read_config(screen_dir)
    files = int(config.files or 0)
    print(f"submitted SLURM job {task['job_id']}: {args.slurm_tasks} tasks scoring {files:,} files; batch script and task output in {task['submission']}")
    print(f"screening folder: {screen_dir}")
    print("follow it with `squeue` or the dashboard; scores.csv is written when the last task finishes")
    if files and args.slurm_tasks > -(-files // int(config.part_size or 1)):
        print("note: there are fewer parts than tasks, so some tasks have nothing to score", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# python -m wildvision review
# ---------------------------------------------------------------------------------------------


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m wildvision review`."""
    parser.add_argument("screen_dir", metavar="SCREEN_DIR", help="a screening folder (screens/<id>, the one holding scores.csv)")
    parser.add_argument(
        "--decide",
        action="append",
        default=[],
        metavar="PATH=LABEL",
        help=f"decide one item: PATH as written in scores.csv, LABEL a class name or {UNSURE}; repeat for more (all are saved together or none)",
    )
    parser.add_argument(
        "--import",
        dest="import_csv",
        metavar="CSV",
        help="apply a CSV of decisions with the columns path,label and optionally note, all recorded as decided by --reviewer",
    )
    parser.add_argument("--list", action="store_true", help="print the current decisions and the measured precision of the flags (the default)")
    parser.add_argument("--reviewer", help="who decides (default: your user name)")
    parser.add_argument("--note", help="a note kept with each --decide decision")


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise ValueError("cannot tell your user name here: give --reviewer NAME") from None


def _parse_decide(text: str) -> tuple[str, str]:
    path, equals, label = text.rpartition("=")  # a path may hold '=', a label never does
    if not equals or not path:
        raise ValueError(f"--decide {text}: write PATH=LABEL, e.g. --decide photos/1.jpg=captive")
    return path, label


def run_review(args: argparse.Namespace) -> int:
    """Save the decisions given, or list the current ones with the measured precision of the flags."""
    classes = decisions.screen_classes(args.screen_dir)
    reviewer = args.reviewer or _user_name()
    if args.decide:
        count = decisions.decide_each(args.screen_dir, [(f"--decide {text}", *_parse_decide(text)) for text in args.decide], reviewer, args.note, classes)
        print(f"saved {count} decision{'s' * (count != 1)} by {reviewer}")
    if args.import_csv:
        count = decisions.import_csv(args.screen_dir, args.import_csv, reviewer, classes)
        print(f"imported {count} decision{'s' * (count != 1)} from {args.import_csv}")
    if args.list or not (args.decide or args.import_csv):
        _print_list(decisions.current(args.screen_dir), decisions.scored_items(args.screen_dir), positive_label=classes[-1])
    return 0


def _print_list(decided: dict[str, Decision], items: Mapping[str, Mapping[str, str]] | None, positive_label: str) -> None:
    if not decided:
        print("no decisions yet")
        return
    for d in decided.values():
        print("\t".join(map(plain_name, [d.path, d.label, d.reviewer, d.decided_at] + ([d.note] if d.note else []))))
    counts = Counter(d.label for d in decided.values())
    summary = f"{len(decided)} decided ({', '.join(f'{label} {n}' for label, n in sorted(counts.items()))})"
    flagged = None if items is None else {path for path, row in items.items() if row.get("label") == positive_label}
    measured = decisions.measured_precision(decided.values(), positive_label, flagged)
    scope = "flagged items" if flagged is not None else "items"
    if measured.n:
        summary += (
            f"; measured precision {measured.precision:.1%} (95% interval {measured.low:.1%} to {measured.high:.1%}), "
            f"{measured.n} {scope} decided {positive_label} or not"
        )
    else:
        summary += f"; no {scope} decided {positive_label} or not yet, so no measured precision"
    print(summary)


# ---------------------------------------------------------------------------------------------
# python -m wildvision export
# ---------------------------------------------------------------------------------------------


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m wildvision export`."""
    parser.add_argument("screen_dir", metavar="SCREEN_DIR", help="a completed screening folder (screens/<id>, the one holding scores.csv)")
    parser.add_argument(
        "--csv", type=Path, metavar="OUT", help="write the confirmed cases (decided the positive class) to this CSV: path, sha256, probability, decision, ..."
    )
    parser.add_argument(
        "--zip", type=Path, metavar="OUT", help="write an evidence pack: the confirmed photos byte for byte, a saliency map of each, cases.csv and README.txt"
    )
    parser.add_argument("--no-saliency", action="store_true", help="leave the saliency maps out of --zip (faster; needed when the job's model changed)")
    parser.add_argument(
        "--training-folder",
        type=Path,
        metavar="DIR",
        help="copy every photo decided a class (not unsure) into DIR/<class>/reviewed/, with manifest.csv: a training folder for "
        "`train --data DIR`; DIR must be new or empty",
    )
    parser.add_argument(
        "--include",
        action="append",
        type=Path,
        default=[],
        metavar="DATA_FOLDER",
        help="with --training-folder: link this training folder's class folders in beside the reviewed photos (e.g. ../shared/demo-data/train); repeatable",
    )
    parser.add_argument(
        "--test-set",
        action="append",
        type=named_folder_argument,
        default=[],
        metavar="NAME=DIR",
        help="with --training-folder: also report photos that are the same photo as an image of this test set "
        "(the test sets the job's model was evaluated on are compared when on this machine); repeatable",
    )
    parser.add_argument("--device", default="cpu", help="where --zip computes the saliency maps: cpu, cuda or cuda:N (default: cpu)")


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'s' * (count != 1)}"


def _print_skipped(skipped: Sequence[Skipped]) -> None:
    for item in skipped:
        print(f"left out {plain_name(item.path)}: {plain_name(item.reason)}", file=sys.stderr)


def _print_training_folder(folder: TrainingFolder, job: Job) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(folder.counts.items()))
    print(f"wrote training folder {folder.path}: {_plural(len(folder.files), 'reviewed photo')} ({counts}), listed in {MANIFEST}")
    for included in folder.included:
        print(f"  linked {included.link.relative_to(folder.path)} -> {included.target} ({_plural(included.images, 'image')})")
    if folder.conflicts:
        print(
            f"  {_plural(len(folder.conflicts), 'photo')} decided two different classes (training leaves them out): {', '.join(map(plain_name, folder.conflicts))}"
        )
    compared = ", ".join(f"{name} ({path})" for name, path in folder.test_sets.items()) or "none (give --test-set NAME=DIR)"
    print(f"  compared with the test sets: {compared}")
    tests = " ".join(f"--test {name}={path}" for name, path in folder.test_sets.items())
    background = " --with-background" if folder.with_background else ""
    positive = "" if folder.positive == "captive" else f" --positive {folder.positive}"
    if folder.overlaps:
        matching = len({o.file for o in folder.overlaps})
        print(f"  {_plural(matching, 'reviewed photo')} {'is' if matching == 1 else 'are'} the same photo as a test-set image (listed in {OVERLAP_CSV}):")
        for o in folder.overlaps:
            print(
                f"    {o.file} = {o.test_set}: {plain_name(str(o.test_image))} ({'identical' if o.identical else f'near-duplicate, pHash {o.distance} bits apart'})"
            )
        print(
            "  train with --exclude-test-duplicates (the Train page: 'Leave out test photos that copy a training photo') so those test sets' scores stay honest:"
        )
        print(
            f"  python -m wildvision train --arch {job.architecture} --regime transfer --data {folder.path}{positive}{background} --exclude-test-duplicates {tests}".rstrip()
        )
    else:
        print(
            f"  none is the same photo as a test-set image; train with: python -m wildvision train --arch ARCH --regime transfer --data {folder.path}{positive}{background} {tests}".rstrip()
        )


def run_export(args: argparse.Namespace) -> int:
    """`python -m wildvision export`: 0 when everything asked for was written whole, 1 when some photos had to be left out
    (named on stderr), 2 on bad input, with nothing written (every check comes before the first file)."""
    if not (args.csv or args.zip or args.training_folder):
        print("error: say what to export: --csv OUT, --zip OUT and/or --training-folder DIR", file=sys.stderr)
        return 2
    if (args.include or args.test_set) and not args.training_folder:
        print("error: --include and --test-set go with --training-folder DIR", file=sys.stderr)
        return 2
    job = read_job(args.screen_dir)
    if args.csv or args.zip:
        confirmed_cases(job.path)
    for out in (args.csv, args.zip):
        if out:
            check_output_file(out)
    plan = None
    if args.training_folder:
        tests = model_test_sets(job.path) | {name: Path(folder) for name, folder in args.test_set}
        plan = plan_training_folder(job.path, args.training_folder, args.include, tests)
    loaded = load_screen_model(job.path, args.device) if args.zip and not args.no_saliency else None  # refused when the model changed
    left_out = False
    if args.csv:
        written = export_csv(job.path, args.csv)
        print(f"wrote {_plural(written.cases, 'confirmed case')} to {written.path}")
    if args.zip:
        pack = export_evidence_pack(job.path, args.zip, saliency=not args.no_saliency, loaded=loaded)
        print(
            f"wrote evidence pack {pack.path}: {_plural(len(pack.images), 'photo')}, {_plural(len(pack.saliency_maps), 'saliency map')}, {PACK_CSV}, {README}"
        )
        _print_skipped(pack.skipped)
        left_out = left_out or bool(pack.skipped)
    if plan is not None:
        folder = write_training_folder(plan)
        _print_training_folder(folder, job)
        _print_skipped(folder.skipped)
        left_out = left_out or bool(folder.skipped)
    return 1 if left_out else 0
