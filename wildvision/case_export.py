"""What people confirmed in a screening job, taken out of it: a CSV of cases, an evidence pack, a training folder.

`python -m wildvision export SCREEN_DIR` (the Review page calls the same functions):

- `--csv OUT` (export_csv): the confirmed cases, the items people decided the positive class (config.json's
  class_names[-1], "captive" for the shipped model), in scores.csv's order: path, sha256, probability, decision,
  reviewer, decided_at (UTC), note. The model's probability and the people's decision sit side by side.
- `--zip OUT` (export_evidence_pack): an evidence pack to hand on: each confirmed photo byte for byte as it was
  screened (images/<row>-<name>), a Grad-CAM overlay of it (saliency/<row>-<name>.png), that CSV with the names of
  both files inside the pack (cases.csv), and README.txt saying what the pack is and what a saliency map is not.
- `--training-folder DIR` (export_training_folder): every photo decided one of the job's classes (not `unsure`),
  copied into a training folder that `train --data DIR` and the Train page take as it is (docs/data.md):
  DIR/<class>/reviewed/<row>-<name>, positive and negative class names as the job's model has them, with
  manifest.csv (file, class, source path, sha256, reviewer, decided_at, screening job, note, test_overlap).
  `--include DATA_FOLDER` links an existing training folder's class folders beside them (DIR/<class>/<its name>),
  since a run trains on one data folder; wildvision.data follows linked folders. Photos that are the same photo
  as a test-set image (identical bytes, or pHashes within datacheck.PHASH_THRESHOLD bits) are listed in
  test_overlap.csv: training on them would make those test sets' scores optimistic, unless the run leaves
  such test images out (TrainConfig.exclude_test_duplicates, `train --exclude-test-duplicates`).

Why each rule:

- Only the bytes that were screened are exported: each file is read again and its SHA-256 compared with
  scores.csv's; a file deleted or changed since screening is skipped with its reason (evidence must be what the
  model scored and people saw). Photos from zips are read from the job's unpacked/ copies (files.jsonl).
- Names inside a pack or folder are `<scores.csv row, 6 digits>-<the file's own name, reduced to safe
  characters>`: unique (two posts may both be "1.jpg"), readable, and never a path taken from a scraped name.
- Nothing half-written is ever left under an output's name: CSVs and the pack are written to a temporary name
  and renamed into place (runs.write_atomic), the training folder is built beside DIR and renamed onto it.
- Photos are copied, not linked, into a training folder: the screening folder may be deleted later. Included
  data folders are linked, not copied: they are already training folders and may be large.
- Identical photos decided the same class are written once (the manifest points each decision at that file).
- test_in is not compared: a run draws its own test_in from the training folder, and its split keeps copies of
  one photo on one side (docs/data.md). The test sets compared by default are those the job's model was
  evaluated on, where their folders are on this machine: a run's `tests`, or the demo data's
  test_out_pet and test_out_nopet for the shipped model.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sys
import textwrap
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from wildvision import catalog, datacheck, decisions, jobs, model_card, runs, screening
from wildvision.data import scan_folder
from wildvision.images import IMAGE_EXTENSIONS, is_image_file
from wildvision.predict import LoadedModel
from wildvision.review import Job, read_job
from wildvision.training.launch import named_folder_argument

CASE_COLUMNS = ["path", "sha256", "probability", "decision", "reviewer", "decided_at", "note"]
PACK_COLUMNS = [*CASE_COLUMNS, "image", "saliency"]  # the photo and its map inside the pack ("" when skipped)
MANIFEST_COLUMNS = ["file", "class", "source_path", "sha256", "reviewer", "decided_at", "screening_job", "note", "test_overlap"]
OVERLAP_COLUMNS = ["file", "source_path", "test_set", "test_image", "match", "phash_distance"]
PACK_CSV, README, MANIFEST, OVERLAP_CSV = "cases.csv", "README.txt", "manifest.csv", "test_overlap.csv"
EXPORTS, REQUESTS = "exports", "requests.jsonl"
IMAGES, SALIENCY = "images", "saliency"
REVIEWED = "reviewed"  # DIR/<class>/reviewed/: the job's photos, beside linked data folders of the same class
SALIENCY_METHOD = "gradcam"  # the map a non-expert reads best (wording.MAP_DESCRIPTIONS)
SALIENCY_SIZE = 640  # longest side of a map, as the Predict page shows it
CHUNK = 16  # photos read and explained at a time: memory stays bounded for a pack of thousands
NAME_CHARACTERS = 60
MIN_CLASS_IMAGES = 2  # training's stratified train/test_in split needs two photos of every class folder
# What Pillow calls a format, as a file suffix training recognises (a listed file may have no image suffix)
FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}

Progress = Callable[[float], None]


class CaseFileError(ValueError):
    """A case's photo cannot be exported as it was screened; the message says why."""


@dataclass(frozen=True)
class Case:
    """One decided item: where it is in scores.csv (row, from 1), its file on disk, the model's score and the people's decision."""

    row: int
    path: str  # as scores.csv spells it (a zip member is "archive.zip/member")
    file: str | None  # the file on disk (files.jsonl); None when there was nothing to read
    sha256: str
    probability: str  # as scores.csv has it; "" when the model could not read the file
    error: str  # scores.csv's reason the model could not read it; "" when it could
    decision: str
    reviewer: str
    decided_at: str  # UTC, ISO 8601
    note: str

    def csv_row(self) -> list[str]:
        """The case as a CASE_COLUMNS row."""
        return [self.path, self.sha256, self.probability, self.decision, self.reviewer, self.decided_at, self.note]


@dataclass(frozen=True)
class Skipped:
    """A case whose photo was left out, and why (gone, changed since screening, never readable)."""

    path: str
    reason: str


@dataclass(frozen=True)
class CsvExport:
    """The confirmed cases' CSV as written: where, and how many rows."""

    path: Path
    cases: int


@dataclass(frozen=True)
class EvidencePack:
    """What an evidence pack holds: cases.csv rows, the members written, and the cases whose photo was left out."""

    path: Path
    cases: int
    images: tuple[str, ...]
    saliency_maps: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    members: tuple[str, ...]


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


# ---------------------------------------------------------------------------------------------
# The job and its decided cases
# ---------------------------------------------------------------------------------------------


def decided_cases(screen_dir: str | Path, labels: Iterable[str] | None = None) -> list[Case]:
    """The items people decided (one of `labels`; None: any label, unsure too), in scores.csv's order.

    Reads the decision store only when it exists: exporting never creates one."""
    job = read_job(screen_dir)
    if not (job.path / decisions.DATABASE).is_file():
        return []
    decided = decisions.current(job.path)
    wanted = None if labels is None else set(labels)
    cases = []
    with open(job.path / screening.SCORES, newline="", encoding="utf-8") as handle:
        for row_number, (row, listed) in enumerate(zip(csv.DictReader(handle), screening.read_file_list(job.path), strict=False), 1):
            if row["path"] != listed.path:
                raise runs.RunError(f"{job.path}: row {row_number} of {screening.SCORES} ({row['path']}) is not {screening.FILES}'s ({listed.path})")
            decision = decided.get(row["path"])
            if decision is None or (wanted is not None and decision.label not in wanted):
                continue
            cases.append(
                Case(
                    row=row_number,
                    path=row["path"],
                    file=listed.file,
                    sha256=row["sha256"],
                    probability=row["probability"],
                    error=row["error"],
                    decision=decision.label,
                    reviewer=decision.reviewer,
                    decided_at=decision.decided_at,
                    note=decision.note or "",
                )
            )
    return cases


def confirmed_cases(screen_dir: str | Path) -> list[Case]:
    """The items people decided the positive class, refused when there are none (an empty export would look like a finding)."""
    job = read_job(screen_dir)
    cases = decided_cases(job.path, [job.positive])
    if not cases:
        raise ValueError(f"no confirmed cases in {job.path}: nobody has decided any item {job.positive!r} yet (record decisions with `review`)")
    return cases


def case_bytes(case: Case) -> bytes:
    """The photo's bytes exactly as the model scored them; CaseFileError when it cannot be read or is no longer the same file."""
    if case.error or not case.sha256:
        raise CaseFileError(f"the model could not read it when screening ({case.error or 'no file'})")
    if case.file is None:
        raise CaseFileError("there was no file to read")
    try:
        data = Path(case.file).read_bytes()
    except FileNotFoundError:
        raise CaseFileError(f"{case.file} is gone (moved or deleted since screening)") from None
    except OSError as error:
        raise CaseFileError(f"{case.file} cannot be read ({error.strerror or error})") from None
    if hashlib.sha256(data).hexdigest() != case.sha256:
        raise CaseFileError(f"{case.file} changed since screening (its SHA-256 is not the one scored)")
    return data


def export_name(case: Case, data: bytes | None = None) -> str:
    """`<row>-<name>`: the scores.csv row makes it unique, the file's own name (safe characters only) keeps it readable.

    A name without an image suffix gets the one its bytes call for (`data`), since training lists files by suffix."""
    base = PurePosixPath(case.path.replace("\\", "/")).name
    stem, suffix = os.path.splitext(base)
    if suffix.lower() not in IMAGE_EXTENSIONS:
        stem, suffix = base, _sniffed_suffix(data)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip(".-")[:NAME_CHARACTERS].strip(".-") or "image"
    return f"{case.row:06d}-{stem}{suffix.lower()}"


def _sniffed_suffix(data: bytes | None) -> str:
    try:
        with Image.open(io.BytesIO(data or b"")) as image:
            return FORMAT_SUFFIXES.get(image.format or "", ".png")
    except (OSError, ValueError, Image.DecompressionBombError):
        return ".png"  # it was decoded when screened; wildvision opens an image by its content, whatever its suffix


# ---------------------------------------------------------------------------------------------
# From the dashboard: exports as background processes, into the job's exports/ folder
# ---------------------------------------------------------------------------------------------


def exports_folder(screen_dir: str | Path) -> Path:
    """SCREEN_DIR/exports/: what the Review page exported, and console.log, the background exports' output."""
    return Path(screen_dir) / EXPORTS


@dataclass(frozen=True)
class ExportRequest:
    """An export the Review page started: what it writes, and where it stands (written, running or failed)."""

    kind: str  # "evidence pack" or "training folder"
    output: Path
    state: str
    detail: str = ""  # why it failed; for a written training folder, what it holds


def start_export(screen_dir: str | Path, kind: str, output: str | Path, arguments: Sequence[str]) -> None:
    """Run `python -m wildvision export SCREEN_DIR ARGUMENTS...` in the background and note it in exports/requests.jsonl:
    an evidence pack's saliency maps and a training folder's copies take minutes for thousands of photos, which the
    dashboard never waits for. `output` is what the arguments write (a pack, or a training folder)."""
    folder = exports_folder(screen_dir)
    folder.mkdir(exist_ok=True)
    pid = jobs.spawn("wildvision", ["export", str(Path(screen_dir).resolve()), *map(str, arguments)], folder / jobs.CONSOLE)
    with open(folder / REQUESTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, "output": str(Path(output).resolve()), "pid": pid, "started_at": runs.now()}) + "\n")


def export_requests(screen_dir: str | Path) -> list[ExportRequest]:
    """The exports the Review page started for the job, newest first, each written, running or failed (with the
    error the export printed)."""
    path = exports_folder(screen_dir) / REQUESTS
    if not path.is_file():
        return []
    requests = []
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        request = json.loads(line)
        output = Path(request["output"])
        if output.is_file() or (output / MANIFEST).is_file():
            requests.append(ExportRequest(request["kind"], output, "written", training_folder_summary(output) if output.is_dir() else ""))
        elif jobs.process_alive(int(request["pid"])):
            requests.append(ExportRequest(request["kind"], output, "running"))
        else:
            requests.append(ExportRequest(request["kind"], output, "failed", jobs.last_error(exports_folder(screen_dir) / jobs.CONSOLE)))
    return requests


def training_folder_summary(folder: str | Path) -> str:
    """A written training folder in words: its reviewed photos by class, and how many copy a test-set photo."""
    with open(Path(folder) / MANIFEST, newline="", encoding="utf-8") as handle:
        classes = Counter(row["class"] for row in csv.DictReader(handle))
    with open(Path(folder) / OVERLAP_CSV, newline="", encoding="utf-8") as handle:
        overlapping = {row["file"] for row in csv.DictReader(handle)}
    words = f"{sum(classes.values()):,} reviewed photos ({', '.join(f'{name} {count:,}' for name, count in sorted(classes.items()))})"
    return words + (f"; {len(overlapping):,} of them copy a test-set photo" if overlapping else "")


def new_pack_path(screen_dir: str | Path) -> Path:
    """Where the next evidence pack of the job goes: exports/evidence-<UTC time>.zip."""
    return exports_folder(screen_dir) / f"evidence-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.zip"


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def check_output_file(out: str | Path) -> Path:
    """`out` as a file that can be written (its folder exists and is writable), so a refusal comes before any work."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{out} is a folder: give the name of the file to write")
    return _writable_parent(out, "write")


def _writable_parent(out: Path, verb: str) -> Path:
    if not out.parent.is_dir():
        raise ValueError(f"cannot {verb} {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot {verb} {out}: the folder {out.parent} is not writable")
    return out


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def cases_csv(screen_dir: str | Path) -> tuple[str, int]:
    """The confirmed cases as CSV text (CASE_COLUMNS) and how many there are (the Review page's download)."""
    cases = confirmed_cases(screen_dir)
    return _csv_text(CASE_COLUMNS, (case.csv_row() for case in cases)), len(cases)


def export_csv(screen_dir: str | Path, out: str | Path) -> CsvExport:
    """Write the confirmed cases to `out` (CASE_COLUMNS), atomically; returns what was written."""
    text, count = cases_csv(screen_dir)
    out = check_output_file(out)
    runs.write_text_atomic(out, text)
    return CsvExport(out, count)


def _member(name: str, when: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.external_attr = 0o644 << 16  # unzipped files readable by everyone, as files people save are
    return info


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pack_readme(job: Job, exported_at: str, cases: int, images: int, saliency: bool, skipped: Sequence[Skipped]) -> str:
    """README.txt: what the pack is, from which job and model, and how far each part of it goes."""
    positive = job.positive
    described = {
        PACK_CSV: f"One row per case: the photo's path as screened, its SHA-256, the model's probability of {positive!r}, "
        "the people's decision, who decided, when (UTC) and their note; `image` and `saliency` name its files in this pack.",
        f"{IMAGES}/": f"Each photo byte for byte as it was screened: its SHA-256 is the one in {PACK_CSV}.",
        f"{SALIENCY}/": (
            f"A Grad-CAM map of each photo, laid over it: the brighter an area, the more it pushed the model's score for {positive!r} up. "
            "A map shows where the model looked. It is not proof of anything: the decision is the people's."
        )
        if saliency
        else "Not made for this pack.",
    }
    lines = [
        "wildvision evidence pack",
        "",
        f"Screening job: {job.name} ({job.path.resolve()}), started {job.created_at or 'at an unrecorded time'}",
        f"Model: {job.model} ({job.architecture})" + ("" if job.model_file == job.model else f", checkpoint {job.model_file}"),
        f"Threshold: {job.threshold:g} (photos scoring at or above it were flagged {positive!r})"
        + (f"; adopted by {job.adopted.reviewer} on {job.adopted.adopted_at}, the model's own is {job.model_threshold:g}" if job.adopted else ""),
        f"Exported: {exported_at} (UTC)",
        f"Cases: {cases} photos people decided {positive!r}; {images} of them are in this pack",
        "",
    ]
    for name, text in described.items():
        lines += [name, *textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent="  ")]
    lines += ["", "The model's score is a pointer for a person to check, never proof of trade."]
    if skipped:
        lines += ["", f"Not in this pack ({len(skipped)}; their rows in {PACK_CSV} name no image):"]
        lines += [f"  {s.path}: {s.reason}" for s in skipped]
    return "\n".join(lines) + "\n"


def export_evidence_pack(
    screen_dir: str | Path,
    out: str | Path,
    saliency: bool = True,
    device: str = "cpu",
    progress: Progress | None = None,
    loaded: LoadedModel | None = None,
) -> EvidencePack:
    """Write the evidence pack to `out` (a zip, renamed into place when whole) and return what it holds.

    saliency: add a Grad-CAM overlay per photo from the job's own model (refused when that model changed since the
    job: its maps would not be the model that flagged). A case whose photo cannot be exported as screened keeps
    its cases.csv row without an image and is listed in README.txt and in `skipped`; when no photo can be, nothing
    is written. loaded: the job's model (screening.load_screen_model) when the caller holds it already; else it is
    loaded on `device`. progress: called with the fraction of cases done."""
    from wildvision.explain.saliency import examine, overlay  # captum and the network only when a pack is made

    job = read_job(screen_dir)
    cases = confirmed_cases(job.path)
    out = check_output_file(out)
    if saliency and loaded is None:
        loaded = screening.load_screen_model(job.path, device)
    elif not saliency:
        loaded = None
    now = datetime.now().astimezone()
    exported_at = runs.now()
    images: dict[int, str] = {}
    maps: dict[int, str] = {}
    skipped: list[Skipped] = []
    members: list[str] = []

    def add(archive: zipfile.ZipFile, name: str, data: bytes | str, compress: int = zipfile.ZIP_STORED) -> None:
        archive.writestr(_member(name, now), data, compress_type=compress)  # photos and PNGs are compressed already
        members.append(name)

    def pack(archive: zipfile.ZipFile) -> None:
        for start in range(0, len(cases), CHUNK):
            readable: list[tuple[Case, str]] = []
            for case in cases[start : start + CHUNK]:
                try:
                    data = case_bytes(case)
                except CaseFileError as error:
                    skipped.append(Skipped(case.path, str(error)))
                    continue
                images[case.row] = f"{IMAGES}/{export_name(case, data)}"
                add(archive, images[case.row], data)
                readable.append((case, images[case.row]))
            if loaded is not None and readable:
                # the files were read and checked a moment ago; examine reads them again to decode them
                for (case, name), examined in zip(readable, examine(loaded, [case.file for case, _ in readable], SALIENCY_METHOD, SALIENCY_SIZE)):
                    if examined.explanation is not None:
                        maps[case.row] = f"{SALIENCY}/{PurePosixPath(name).stem}.png"
                        add(archive, maps[case.row], _png(overlay(examined.image, examined.explanation.heatmap)))
            if progress is not None:
                progress(min(1.0, (start + CHUNK) / len(cases)))
        if not images:
            raise ValueError(f"none of the {len(cases)} confirmed photos can be exported as screened, e.g. {skipped[0].path}: {skipped[0].reason}")
        rows = (case.csv_row() + [images.get(case.row, ""), maps.get(case.row, "")] for case in cases)
        add(archive, PACK_CSV, _csv_text(PACK_COLUMNS, rows), zipfile.ZIP_DEFLATED)
        add(archive, README, _pack_readme(job, exported_at, len(cases), len(images), saliency, skipped), zipfile.ZIP_DEFLATED)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                pack(archive)
            handle.flush()  # the zip's central directory is written when it closes, above
            os.fsync(handle.fileno())

    runs.write_atomic(out, write)
    return EvidencePack(out, len(cases), tuple(images.values()), tuple(maps.values()), tuple(skipped), tuple(members))


# ---------------------------------------------------------------------------------------------
# Training folder
# ---------------------------------------------------------------------------------------------


def model_test_sets(screen_dir: str | Path) -> dict[str, Path]:
    """The out-of-distribution test sets the job's model was evaluated on, by name, where their folders exist here
    (catalog.test_folders of its record); none for a checkpoint outside a readable run folder."""
    model_file = str(runs.read_json(Path(screen_dir) / runs.CONFIG).get("model_file", ""))
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


def find_test_overlaps(files: Mapping[str, Path], test_sets: Mapping[str, Path], threshold: int = datacheck.PHASH_THRESHOLD) -> list[Overlap]:
    """Each of `files` (by key) that is the same photo as a test-set image: identical bytes, or pHashes at most
    `threshold` bits apart, as datacheck and training judge it (datacheck.image_facts; its in-memory cache makes
    a second look at the same test sets cheap)."""
    keys = list(files)
    mine = datacheck.all_facts([files[key] for key in keys])
    tests = [(name, path) for name, folder in test_sets.items() for path in _image_files(Path(folder))]
    theirs = datacheck.all_facts([path for _, path in tests])
    by_sha: dict[str, list[int]] = defaultdict(list)
    for index, facts in enumerate(theirs):
        by_sha[facts.sha256].append(index)
    hashed = [index for index, facts in enumerate(theirs) if facts.phash is not None]
    hashes = np.array([theirs[index].phash for index in hashed], dtype=np.uint64)
    overlaps = []
    for key, facts in zip(keys, mine):
        found = {index: 0 for index in by_sha.get(facts.sha256, [])}
        if facts.phash is not None and len(hashes):
            distances = np.bitwise_count(hashes ^ np.uint64(facts.phash))
            for position in np.nonzero(distances <= threshold)[0].tolist():
                found.setdefault(hashed[position], int(distances[position]))
        for index, distance in sorted(found.items()):
            identical = theirs[index].sha256 == facts.sha256
            overlaps.append(Overlap(key, tests[index][0], tests[index][1], identical, 0 if identical else distance))
    return overlaps


def check_training_target(out: str | Path) -> Path:
    """`out` as a training folder to create: new, or an empty folder; never one holding anything (it may be someone's data)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder: give a new folder for the training data (nothing was written)")
    return _writable_parent(out, "create")


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
    manifest = [
        [file, case.decision, case.path, case.sha256, case.reviewer, case.decided_at, job.name, case.note, " | ".join(matched.get(file, []))]
        for file, case in rows
    ]
    runs.write_text_atomic(root / MANIFEST, _csv_text(MANIFEST_COLUMNS, manifest))
    overlap_rows = [
        [o.file, source[o.file], o.test_set, str(o.test_image), "identical" if o.identical else "near-duplicate", str(o.distance)] for o in overlaps
    ]
    runs.write_text_atomic(root / OVERLAP_CSV, _csv_text(OVERLAP_COLUMNS, overlap_rows))
    counts = Counter(file.split("/")[0] for file in files)
    conflicts = tuple(case.path for _, case in rows if len(classes_of[case.sha256]) > 1)
    return _Written(dict(counts), tuple(files), tuple(included), tuple(overlaps), conflicts, tuple(skipped))


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
        print(f"left out {item.path}: {item.reason}", file=sys.stderr)


def _print_training_folder(folder: TrainingFolder, job: Job) -> None:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(folder.counts.items()))
    print(f"wrote training folder {folder.path}: {_plural(len(folder.files), 'reviewed photo')} ({counts}), listed in {MANIFEST}")
    for included in folder.included:
        print(f"  linked {included.link.relative_to(folder.path)} -> {included.target} ({_plural(included.images, 'image')})")
    if folder.conflicts:
        print(f"  {_plural(len(folder.conflicts), 'photo')} decided two different classes (training leaves them out): {', '.join(folder.conflicts)}")
    compared = ", ".join(f"{name} ({path})" for name, path in folder.test_sets.items()) or "none (give --test-set NAME=DIR)"
    print(f"  compared with the test sets: {compared}")
    tests = " ".join(f"--test {name}={path}" for name, path in folder.test_sets.items())
    background = " --with-background" if folder.with_background else ""
    positive = "" if folder.positive == "captive" else f" --positive {folder.positive}"
    if folder.overlaps:
        matching = len({o.file for o in folder.overlaps})
        print(f"  {_plural(matching, 'reviewed photo')} {'is' if matching == 1 else 'are'} the same photo as a test-set image (listed in {OVERLAP_CSV}):")
        for o in folder.overlaps:
            print(f"    {o.file} = {o.test_set}: {o.test_image} ({'identical' if o.identical else f'near-duplicate, pHash {o.distance} bits apart'})")
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
    loaded = screening.load_screen_model(job.path, args.device) if args.zip and not args.no_saliency else None  # refused when the model changed
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
