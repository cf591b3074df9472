"""Every photo people decided in a screening job, as a training folder that `train --data DIR` takes as it is.

`python -m wildvision export SCREEN_DIR --training-folder DIR` (export_training_folder; the Review page too): every
photo decided one of the job's classes (not `unsure`), copied into DIR/<class>/reviewed/<row>-<name>, positive and
negative class names as the job's model has them (docs/data.md), with manifest.csv (file, class, source path,
sha256, reviewer, decided_at, screening job, note, test_overlap, and for a job screened from a manifest of listings
listing_url, listing_id, listing_date, platform; spreadsheet-safe, names as wording.plain_name writes them). `--include DATA_FOLDER` links an existing training
folder's class folders beside them (DIR/<class>/<its name>), since a run trains on one data folder; wildvision.data
follows linked folders. Photos that are the same photo as a test-set image (identical bytes, or pHashes within
photos.PHASH_THRESHOLD bits) are listed in test_overlap.csv: training on them would make those test sets' scores
optimistic, unless the run leaves such test images out (TrainConfig.exclude_test_duplicates,
`train --exclude-test-duplicates`).

Why each rule:

- Only the bytes that were screened are exported, under `<row>-<name>` (export.case_bytes, export.export_name).
- The training folder is built beside DIR and renamed onto it: a killed export never leaves half a folder.
- Photos are copied, not linked: the screening folder may be deleted later. Included data folders are linked, not
  copied: they are already training folders and may be large.
- Identical photos decided the same class are written once (the manifest points each decision at that file).
- test_in is not compared: a run draws its own test_in from the training folder, and its split keeps copies of
  one photo on one side (docs/data.md). The test sets compared by default are those the job's model was
  evaluated on, where their folders are on this machine: a run's `tests`, or the demo data's
  test_out_pet and test_out_nopet for the shipped model.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wildvision import catalog, model_card, photos, runs
from wildvision.data import scan_folder
from wildvision.images import is_image_file
from wildvision.screening.config import read_config
from wildvision.screening.export import Case, CaseFileError, Skipped, case_bytes, decided_cases, export_name, writable_parent
from wildvision.screening.review import Job, read_job
from wildvision.spreadsheet import csv_text
from wildvision.wording import plain_name

MANIFEST_COLUMNS = ["file", "class", "source_path", "sha256", "reviewer", "decided_at", "screening_job", "note", "test_overlap"]
OVERLAP_COLUMNS = ["file", "source_path", "test_set", "test_image", "match", "phash_distance"]
LISTING_MANIFEST_COLUMNS = ["listing_url", "listing_id", "listing_date", "platform"]  # added for a job with listings (listings.py)
MANIFEST, OVERLAP_CSV = "manifest.csv", "test_overlap.csv"
REVIEWED = "reviewed"  # DIR/<class>/reviewed/: the job's photos, beside linked data folders of the same class
MIN_CLASS_IMAGES = 2  # training's stratified train/test_in split needs two photos of every class folder


@dataclass(frozen=True)
class Included:
    """A linked data folder's class folder: the link in the training folder, what it points to, its images."""

    link: Path
    target: Path
    images: int


@dataclass(frozen=True)
class Overlap:
    """An exported photo that is the same photo as an image of a test set (identical bytes, or pHashes `distance` bits apart)."""

    file: str
    test_set: str
    test_image: Path
    identical: bool
    distance: int


@dataclass(frozen=True)
class TrainingFolder:
    """What export_training_folder wrote: reviewed images per class, the files, links, test sets compared and what matched."""

    path: Path
    positive: str
    counts: dict[str, int]
    files: tuple[str, ...]  # relative to `path`, e.g. captive/reviewed/000003-cage.jpg
    included: tuple[Included, ...]
    test_sets: dict[str, Path]
    overlaps: tuple[Overlap, ...]
    conflicts: tuple[str, ...]  # paths of identical photos decided two different classes (training leaves them out)
    skipped: tuple[Skipped, ...]

    @property
    def with_background(self) -> bool:
        """Whether a background/ folder is there, which training uses only when asked (--with-background)."""
        return (self.path / "background").is_dir()


def training_folder_summary(folder: str | Path) -> str:
    """A written training folder in words: its reviewed photos by class, and how many copy a test-set photo."""
    with open(Path(folder) / MANIFEST, newline="", encoding="utf-8") as handle:
        classes = Counter(row["class"] for row in csv.DictReader(handle))
    with open(Path(folder) / OVERLAP_CSV, newline="", encoding="utf-8") as handle:
        overlapping = {row["file"] for row in csv.DictReader(handle)}
    words = f"{sum(classes.values()):,} reviewed photos ({', '.join(f'{name} {count:,}' for name, count in sorted(classes.items()))})"
    return words + (f"; {len(overlapping):,} of them copy a test-set photo" if overlapping else "")


def model_test_sets(screen_dir: str | Path) -> dict[str, Path]:
    """The out-of-distribution test sets the job's model was evaluated on, by name, where their folders exist here
    (catalog.test_folders of its record); none for a checkpoint outside a readable run folder."""
    model_file = str(read_config(Path(screen_dir)).model_file or "")
    try:
        record = catalog.default_model() if model_file == model_card.DEFAULT_NAME else catalog.read_model(Path(model_file).parent)
    except runs.RunError:
        return {}
    return {} if record is None else catalog.test_folders(record)


def _image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, following linked folders (test sets are often links), each folder walked once."""
    files, visited = [], set()
    for directory, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        subfolders.sort()
        files += [Path(directory) / name for name in sorted(names) if is_image_file(Path(name)) and (Path(directory) / name).is_file()]
    return files


def find_test_overlaps(files: Mapping[str, Path], test_sets: Mapping[str, Path]) -> list[Overlap]:
    """Each of `files` (by key) that is the same photo as a test-set image (photos.overlaps: identical bytes, or
    pHashes at most photos.PHASH_THRESHOLD bits apart, as data check and training judge it)."""
    keys = list(files)
    tests = [(name, path) for name, folder in test_sets.items() for path in _image_files(Path(folder))]
    mine = photos.all_facts([files[key] for key in keys])
    theirs = photos.all_facts([path for _, path in tests])
    found = []
    for number, index, distance in photos.overlaps(mine, theirs):
        identical = theirs[index].sha256 == mine[number].sha256
        found.append(Overlap(keys[number], tests[index][0], tests[index][1], identical, distance))
    return found


def check_training_target(out: str | Path) -> Path:
    """`out` as a training folder to create: new, or an empty folder; never one holding anything (it may be someone's
    data). A killed export's half-built folder beside it is removed (runs.remove_stale_temporaries)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder: give a new folder for the training data (nothing was written)")
    return runs.remove_stale_temporaries(writable_parent(out, "create"))


def included_classes(data_folder: str | Path, positive: str) -> dict[str, tuple[Path, int]]:
    """An existing training folder's class folders (background/ too) and their image counts, refused when it is not
    a training folder (data.scan_folder's check, the one training makes)."""
    folder = Path(data_folder)
    counts = Counter(sample.class_name for sample in scan_folder(folder, positive, with_background=True))
    return {name: ((folder / name).resolve(), counts[name]) for name in sorted(counts)}


def _check_class_sizes(reviewed: Mapping[str, int], bases: Sequence[tuple[Path, Mapping[str, tuple[Path, int]]]], positive: str) -> None:
    """Refuse a folder that training would refuse: without the positive class or any negative one, or with a class
    folder of fewer than MIN_CLASS_IMAGES photos (the train/test_in split is stratified by class folder)."""
    totals: Counter[str] = Counter(reviewed)
    for _, found in bases:
        totals.update({name: count for name, (_, count) in found.items()})
    described = ", ".join(f"{name} {count}" for name, count in sorted(totals.items()))
    if positive not in totals or not set(totals) - {positive}:
        lacking = f"no photo of the positive class {positive!r}" if positive not in totals else "no negative photos"
        raise ValueError(f"the training folder would have {lacking} ({described}): decide more items or include a training folder")
    small = [name for name, count in sorted(totals.items()) if count < MIN_CLASS_IMAGES]
    if small:
        raise ValueError(
            f"the training folder's {', '.join(small)} would hold fewer than {MIN_CLASS_IMAGES} photos ({described}), and training splits "
            "every class folder between train and test_in: decide more items, or include a training folder with that class"
        )


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    taken.add(candidate)
    return candidate


@dataclass(frozen=True)
class TrainingPlan:
    """A training folder export, checked and ready to write (plan_training_folder): nothing is written yet."""

    job: Job
    out: Path
    cases: tuple[Case, ...]
    bases: tuple[tuple[Path, dict[str, tuple[Path, int]]], ...]  # each included folder, its class folders and their images
    test_sets: dict[str, Path]


def plan_training_folder(
    screen_dir: str | Path, out: str | Path, include: Sequence[str | Path] = (), test_sets: Mapping[str, str | Path] | None = None
) -> TrainingPlan:
    """Every check of export_training_folder, before anything is written, so that a caller exporting several things
    can refuse them all at once. Refused when `out` holds anything, nothing was decided, an included folder is not a
    training folder, a test-set folder is missing, or training would refuse the folder (_check_class_sizes)."""
    job = read_job(screen_dir)
    out = check_training_target(out)
    cases = decided_cases(job.path, job.class_names)
    if not cases:
        raise ValueError(f"nothing in {job.path} has been decided {' or '.join(map(repr, job.class_names))} yet (unsure says neither): nothing to export")
    tests = {name: Path(folder) for name, folder in (model_test_sets(job.path) if test_sets is None else test_sets).items()}
    missing = [f"{name}={folder}" for name, folder in tests.items() if not folder.is_dir()]
    if missing:
        raise ValueError(f"no such test-set folder: {', '.join(missing)}")
    bases = tuple((Path(folder), included_classes(folder, job.positive)) for folder in include)
    distinct = {(case.decision, case.sha256) for case in cases if case.sha256 and not case.error}  # identical photos are written once
    _check_class_sizes(Counter(decision for decision, _ in distinct), bases, job.positive)
    return TrainingPlan(job, out, tuple(cases), bases, tests)


def export_training_folder(
    screen_dir: str | Path, out: str | Path, include: Sequence[str | Path] = (), test_sets: Mapping[str, str | Path] | None = None
) -> TrainingFolder:
    """Lay out the reviewed photos as a training folder at `out` (see the module docstring) and return what was written.

    include: existing training folders whose class folders are linked in beside the reviewed photos.
    test_sets: the folders to compare the photos with, by name (None: model_test_sets). Refused as
    plan_training_folder says, with nothing written."""
    return write_training_folder(plan_training_folder(screen_dir, out, include, test_sets))


def write_training_folder(plan: TrainingPlan) -> TrainingFolder:
    """Write a checked plan: built beside its folder under a temporary name, checked as training will check it, then
    renamed onto it, so a killed export never leaves half a training folder under the name."""
    out = plan.out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        result = _write_training_folder(plan.job, tmp, plan.cases, plan.bases, plan.test_sets)
        scan_folder(tmp, plan.job.positive, with_background=True)  # what training checks first
        os.replace(tmp, out)  # onto a missing or empty folder: the whole folder appears at once
    except OSError as error:
        raise runs.RunError(f"could not write {out} ({error.strerror or error}): is the disk full or the folder read-only?") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TrainingFolder(
        out,
        plan.job.positive,
        result.counts,
        result.files,
        tuple(Included(out / link.relative_to(tmp), target, n) for link, target, n in result.included),
        plan.test_sets,
        result.overlaps,
        result.conflicts,
        result.skipped,
    )


@dataclass(frozen=True)
class _Written:
    counts: dict[str, int]
    files: tuple[str, ...]
    included: tuple[tuple[Path, Path, int], ...]
    overlaps: tuple[Overlap, ...]
    conflicts: tuple[str, ...]
    skipped: tuple[Skipped, ...]


def _write_training_folder(
    job: Job, root: Path, cases: Sequence[Case], bases: Sequence[tuple[Path, dict[str, tuple[Path, int]]]], tests: Mapping[str, Path]
) -> _Written:
    """Copy the cases' photos and link the included class folders into `root`, then write manifest.csv and test_overlap.csv."""
    root.mkdir()
    written: dict[tuple[str, str], str] = {}  # (class, sha256) -> file: identical photos of one class are written once
    rows: list[tuple[str, Case]] = []
    skipped: list[Skipped] = []
    classes_of: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        try:
            data = case_bytes(case)
        except CaseFileError as error:
            skipped.append(Skipped(case.path, str(error)))
            continue
        key = (case.decision, case.sha256)
        if key not in written:
            relative = f"{case.decision}/{REVIEWED}/{export_name(case, data)}"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
            written[key] = relative
        rows.append((written[key], case))
        classes_of[case.sha256].add(case.decision)
    if not rows:
        raise ValueError(f"none of the {len(cases)} decided photos can be exported as screened, e.g. {skipped[0].path}: {skipped[0].reason}")

    files = sorted(set(written.values()))
    _check_class_sizes(Counter(file.split("/")[0] for file in files), bases, job.positive)  # again, now that some may have been skipped

    included = []
    for base, class_folders in bases:
        for class_name, (target, count) in class_folders.items():
            folder = root / class_name
            folder.mkdir(exist_ok=True)
            link = folder / _unique(runs.safe_name(base.resolve().name), {entry.name for entry in folder.iterdir()} | {REVIEWED})
            link.symlink_to(target, target_is_directory=True)
            included.append((link, target, count))

    overlaps = find_test_overlaps({file: root / file for file in files}, tests)
    matched: dict[str, list[str]] = defaultdict(list)
    for overlap in overlaps:
        matched[overlap.file].append(f"{overlap.test_set}:{overlap.test_image}")
    source = {file: case.path for file, case in reversed(rows)}  # the first decided item written to each file
    listed = any(case.listing for _, case in rows)  # a job screened from a manifest of listings: where each photo was posted
    manifest = [
        [
            file,
            case.decision,
            plain_name(case.path),
            case.sha256,
            case.reviewer,
            case.decided_at,
            job.name,
            case.note,
            plain_name(" | ".join(matched.get(file, []))),
            *([getattr(case.listing, name, "") for name in LISTING_MANIFEST_COLUMNS] if listed else []),
        ]
        for file, case in rows
    ]
    runs.write_text_atomic(root / MANIFEST, csv_text([*MANIFEST_COLUMNS, *(LISTING_MANIFEST_COLUMNS if listed else [])], manifest))
    overlap_rows = [
        [o.file, plain_name(source[o.file]), o.test_set, plain_name(str(o.test_image)), "identical" if o.identical else "near-duplicate", o.distance]
        for o in overlaps
    ]
    runs.write_text_atomic(root / OVERLAP_CSV, csv_text(OVERLAP_COLUMNS, overlap_rows))
    counts = Counter(file.split("/")[0] for file in files)
    conflicts = tuple(case.path for _, case in rows if len(classes_of[case.sha256]) > 1)
    return _Written(dict(counts), tuple(files), tuple(included), tuple(overlaps), conflicts, tuple(skipped))
