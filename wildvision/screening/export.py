"""What people confirmed in a screening job, taken out of it: a CSV of cases and an evidence pack.

`python -m wildvision export SCREEN_DIR` (the Review page calls the same functions; training_export.py writes a
training folder from the same decided cases):

- `--csv OUT` (export_csv): the confirmed cases, the items people decided the positive class (the model's
  positive class, wildvision.classes; "captive" for the shipped model), in scores.csv's order: path, sha256, probability, decision,
  reviewer, decided_at (UTC), note. The model's probability and the people's decision sit side by side. A job
  screened from a manifest of listings (listings.py) adds each photo's listing: listing_url, listing_id, title,
  listing_date, seller, platform and listing_notes (what was changed on the way in, such as a URL that is no link).
- `--zip OUT` (export_evidence_pack): an evidence pack to hand on: each confirmed photo byte for byte as it was
  screened (images/<row>-<name>), a Grad-CAM overlay of it (saliency/<row>-<name>.png), that CSV with the names of
  both files inside the pack (cases.csv), and README.txt saying what the pack is and what a saliency map is not
  (and, for a job with listings, each case's listing on one plain line: id, platform, date, seller, URL, title).

Why each rule:

- Only the bytes that were screened are exported: each file is read again and its SHA-256 compared with
  scores.csv's; a file deleted or changed since screening is skipped with its reason (evidence must be what the
  model scored and people saw). Photos from zips are read from the job's unpacked/ copies (files.jsonl).
- Names inside a pack or folder are `<scores.csv row, 6 digits>-<the file's own name, reduced to safe
  characters>`: unique (two posts may both be "1.jpg"), readable, and never a path taken from a scraped name.
- Nothing half-written is ever left under an output's name: CSVs and the pack are written to a temporary name
  and renamed into place (runs.write_atomic). A temporary file of the same output left by an export that was killed
  (its process is gone) is removed by the next export to that name (runs.remove_stale_temporaries).
- A job whose scores.csv does not match its file list (rows missing or extra, a malformed row, a SHA-256 that is not
  64 hex digits, a probability that is not one) is refused with nothing written (DamagedScores): an export of part
  of a job, or of a damaged hash, would look whole.
- Every CSV goes through wildvision.spreadsheet, so a reviewer's name, a note or a file name that a spreadsheet would
  run as a formula (=HYPERLINK(...), @SUM(...)) is written as text. File names are written with wording.plain_name:
  a name that is not UTF-8 shows its bytes as \\xe9 (a UTF-8 CSV cannot hold them raw), and a line break cannot
  forge a line of README.txt; scores.csv keeps the exact name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import textwrap
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from PIL import Image

from wildvision import runs
from wildvision.images import IMAGE_EXTENSIONS
from wildvision.predict import LoadedModel
from wildvision.screening import decisions, listings
from wildvision.screening.config import FILES, SCORES
from wildvision.screening.job import load_screen_model
from wildvision.screening.merge import check_columns
from wildvision.screening.review import Job, read_job
from wildvision.screening.sources import read_file_list
from wildvision.spreadsheet import csv_text
from wildvision.wording import plain_name

CASE_COLUMNS = ["path", "sha256", "probability", "decision", "reviewer", "decided_at", "note"]
PACK_COLUMNS = [*CASE_COLUMNS, "image", "saliency"]  # the photo and its map inside the pack ("" when skipped)
PACK_CSV, README = "cases.csv", "README.txt"
IMAGES, SALIENCY = "images", "saliency"
SALIENCY_METHOD = "gradcam"  # the map a non-expert reads best (wording.MAP_DESCRIPTIONS)
SALIENCY_SIZE = 640  # longest side of a map, as the Predict page shows it
CHUNK = 16  # photos read and explained at a time: memory stays bounded for a pack of thousands
NAME_CHARACTERS = 60
# What Pillow calls a format, as a file suffix training recognises (a listed file may have no image suffix)
FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}

Progress = Callable[[float], None]


class CaseFileError(ValueError):
    """A case's photo cannot be exported as it was screened; the message says why."""


class DamagedScores(ValueError):
    """A job's scores.csv does not match its file list; nothing was exported."""


class NoConfirmedCases(ValueError):
    """Nobody has decided any item of the job the positive class yet: there is nothing to export (not a fault)."""


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
    listing: listings.Listing | None = None  # the scraped listing the photo came from (a manifest's row)

    def csv_row(self) -> list[str]:
        """The case as a CASE_COLUMNS row, its path as one plain line (wording.plain_name)."""
        return [plain_name(self.path), self.sha256, self.probability, self.decision, self.reviewer, self.decided_at, self.note]


def case_columns(cases: Sequence[Case]) -> list[str]:
    """CASE_COLUMNS, and the listing's columns when any case came from a manifest of listings."""
    return [*CASE_COLUMNS, *listings.LISTING_COLUMNS] if any(case.listing for case in cases) else list(CASE_COLUMNS)


def case_cells(case: Case, columns: Sequence[str]) -> list[str]:
    """A case's row under `columns` (case_columns): csv_row, then its listing's cells where the columns have them."""
    return case.csv_row() + (listings.listing_cells(case.listing) if len(columns) > len(CASE_COLUMNS) else [])


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


# ---------------------------------------------------------------------------------------------
# The job and its decided cases
# ---------------------------------------------------------------------------------------------


SHA256 = re.compile(r"[0-9a-f]{64}")


def _score_problem(row: dict, listed_path: str | None) -> str | None:
    """What is wrong with one scores.csv row beside its files.jsonl entry, or None."""
    if None in row or None in row.values():
        return "it does not have the header's columns"
    if listed_path is None:
        return f"{FILES} lists fewer files"
    if row["path"] != listed_path:
        return f"its path is not {FILES}'s ({plain_name(listed_path)})"
    if (row["sha256"] or not row["error"]) and not SHA256.fullmatch(row["sha256"]):
        return "its SHA-256 is not 64 hexadecimal digits"
    if row["error"]:
        return None if not row["probability"] else "it has both a probability and an error"
    try:
        probability = float(row["probability"])
    except ValueError:
        return "its probability is not a number"
    return None if 0 <= probability <= 1 and not math.isnan(probability) else "its probability is not between 0 and 1"


def checked_scores(job: Job) -> list[tuple[int, dict, str | None]]:
    """(row number from 1, scores.csv row, file on disk) for every listed file, refused as a whole (DamagedScores)
    when scores.csv does not match files.jsonl: an export must never look whole while part of the job is missing."""
    listed = list(read_file_list(job.path))
    rows = []
    with open(job.path / SCORES, newline="", encoding="utf-8", errors="surrogateescape") as handle:  # names as listed
        reader = csv.DictReader(handle)
        check_columns(reader.fieldnames, job.path / SCORES)
        try:
            for number, row in enumerate(reader, 1):
                problem = _score_problem(row, listed[number - 1].path if number <= len(listed) else None)
                if problem:
                    raise DamagedScores(f"row {number:,} of {SCORES}: {problem}")
                rows.append((number, row, listed[number - 1].file))
        except (csv.Error, DamagedScores) as error:
            raise DamagedScores(
                f"screening job {job.name} cannot be exported: {error}; the job's folder was changed or damaged, and nothing was written"
            ) from None
    if len(rows) != len(listed):
        raise DamagedScores(
            f"screening job {job.name} cannot be exported: {FILES} lists {len(listed):,} files but {SCORES} has {len(rows):,} rows; "
            "the job's folder was changed or damaged, and nothing was written"
        )
    return rows


def decided_cases(screen_dir: str | Path, labels: Iterable[str] | None = None) -> list[Case]:
    """The items people decided (one of `labels`; None: any label, unsure too), in scores.csv's order; refused when
    scores.csv does not match the file list (checked_scores). Reading the decisions never creates their store."""
    job = read_job(screen_dir)
    decided = decisions.current(job.path)
    listed = listings.read_listings(job.path)
    wanted = None if labels is None else set(labels)
    cases = []
    for row_number, row, file in checked_scores(job):
        decision = decided.get(row["path"])
        if decision is None or (wanted is not None and decision.label not in wanted):
            continue
        cases.append(
            Case(
                row=row_number,
                path=row["path"],
                file=file,
                sha256=row["sha256"],
                probability=row["probability"],
                error=row["error"],
                decision=decision.label,
                reviewer=decision.reviewer,
                decided_at=decision.decided_at,
                note=decision.note or "",
                listing=listed.get(row_number - 1),
            )
        )
    return cases


def confirmed_cases(screen_dir: str | Path) -> list[Case]:
    """The items people decided the positive class, refused when there are none (an empty export would look like a finding)."""
    job = read_job(screen_dir)
    cases = decided_cases(job.path, [job.positive])
    if not cases:
        raise NoConfirmedCases(f"no confirmed cases in {job.path}: nobody has decided any item {job.positive!r} yet (record decisions with `review`)")
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


# Writing
# ---------------------------------------------------------------------------------------------


def check_output_file(out: str | Path) -> Path:
    """`out` as a file that can be written (its folder exists and is writable), so a refusal comes before any work;
    a killed export's temporary file of it is removed (runs.remove_stale_temporaries)."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{out} is a folder: give the name of the file to write")
    return runs.remove_stale_temporaries(writable_parent(out, "write"))


def writable_parent(out: Path, verb: str) -> Path:
    """`out`, refused when its folder is missing or not writable, so an export fails before any work (`verb`: write, create)."""
    if not out.parent.is_dir():
        raise ValueError(f"cannot {verb} {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot {verb} {out}: the folder {out.parent} is not writable")
    return out


def cases_csv(screen_dir: str | Path) -> tuple[str, int]:
    """The confirmed cases as CSV text (CASE_COLUMNS) and how many there are (the Review page's download)."""
    cases = confirmed_cases(screen_dir)
    columns = case_columns(cases)
    return csv_text(columns, (case_cells(case, columns) for case in cases)), len(cases)


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


def _listing_lines(cases: Sequence[Case]) -> list[str]:
    """README.txt's lines on the cases' listings: one plain line each (wording.plain_name, so a title's line break or
    Markdown cannot forge a line), its title cut to a line's length; the full fields are in cases.csv."""
    lines = []
    for case in cases:
        if (listing := case.listing) is not None:
            said = ", ".join(
                f"{name} {plain_name(value)}"
                for name, value in (("on", listing.platform), ("dated", listing.listing_date), ("seller", listing.seller))
                if value
            )
            lines.append(f"  row {case.row}: listing {plain_name(listing.listing_id) or '(no id)'}" + (f" {said}" if said else ""))
            lines.append(f"    URL: {listing.listing_url or '(none that is an http(s) address)'}")
            if listing.title:
                lines.append(f"    title: {plain_name(listing.title)[:200]}")
    return (
        ["", f"Listings ({sum(case.listing is not None for case in cases)} cases came from scraped listings; all their fields are in {PACK_CSV}):", *lines]
        if lines
        else []
    )


def _pack_readme(job: Job, exported_at: str, cases: int, images: int, saliency: bool, skipped: Sequence[Skipped], listed: Sequence[Case] = ()) -> str:
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
        f"Screening job: {plain_name(job.name)} ({plain_name(str(job.path.resolve()))}), started {job.created_at or 'at an unrecorded time'}",
        f"Model: {plain_name(job.model)} ({job.architecture})" + ("" if job.model_file == job.model else f", checkpoint {plain_name(job.model_file)}"),
        f"Threshold: {job.threshold:g} (photos scoring at or above it were flagged {positive!r})"
        + (f"; adopted by {plain_name(job.adopted.reviewer)} on {job.adopted.adopted_at}, the model's own is {job.model_threshold:g}" if job.adopted else ""),
        f"Exported: {exported_at} (UTC)",
        f"Cases: {cases} photos people decided {positive!r}; {images} of them are in this pack",
        "",
    ]
    for name, text in described.items():
        lines += [name, *textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent="  ")]
    lines += _listing_lines(listed)
    lines += ["", "The model's score is a pointer for a person to check, never proof of trade."]
    if skipped:
        lines += ["", f"Not in this pack ({len(skipped)}; their rows in {PACK_CSV} name no image):"]
        lines += [f"  {plain_name(s.path)}: {plain_name(s.reason)}" for s in skipped]
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
    is written. loaded: the job's model (load_screen_model) when the caller holds it already; else it is
    loaded on `device`. progress: called with the fraction of cases done."""
    from wildvision.explain.saliency import examine, overlay  # captum and the network only when a pack is made

    job = read_job(screen_dir)
    cases = confirmed_cases(job.path)
    out = check_output_file(out)
    if saliency and loaded is None:
        loaded = load_screen_model(job.path, device)
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
        columns = case_columns(cases)
        rows = (case_cells(case, columns) + [images.get(case.row, ""), maps.get(case.row, "")] for case in cases)
        add(archive, PACK_CSV, csv_text([*columns, *PACK_COLUMNS[len(CASE_COLUMNS) :]], rows), zipfile.ZIP_DEFLATED)
        add(archive, README, _pack_readme(job, exported_at, len(cases), len(images), saliency, skipped, cases), zipfile.ZIP_DEFLATED)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                pack(archive)
            handle.flush()  # the zip's central directory is written when it closes, above
            os.fsync(handle.fileno())

    runs.write_atomic(out, write)
    return EvidencePack(out, len(cases), tuple(images.values()), tuple(maps.values()), tuple(skipped), tuple(members))
