"""What a screening job's sources hold: every file accounted for, as a row to score or a row saying why it cannot be.

A source is a folder (searched recursively), a zip, a single image, or a text file listing image paths one a line.
A user who screens a folder expects every file in it to be in the results, so nothing is passed over silently:
images are rows to score; a zip, whether given directly or found inside a folder, is opened with uploads' checks
(path traversal, symbolic links, zip bombs...), its images rows to score and every other member a row with its
reason; any other file, a folder that cannot be opened or a link to a folder is a row saying why it was not scored.
Only system files that hold no photos (uploads.is_metadata: .DS_Store, Thumbs.db, macOS ._ and __MACOSX files) are
left out, and the caller says how many in the job's log (listing_note).

The job's file list (files.jsonl) is written once, before any scoring, and never changes: one JSON
[path as given or listed, file on disk, error] a line. Zip members that pass uploads' checks are unpacked into the
job's unpacked/ under numbered names (member names are never used as paths).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wildvision import runs
from wildvision.images import IMAGE_EXTENSIONS, is_image_file
from wildvision.screening.config import FILES, UNPACKED
from wildvision.uploads import ZIP_EXTENSION, UploadLimits, ZipRefused, is_metadata, member_suffix, open_zip, zip_members

# as `predict`'s zips: the user's own archive, but its members may come from anyone
ZIP_LIMITS = UploadLimits(max_images=400_000, max_zip_members=400_000, max_total_bytes=8 * 2**30)
NOT_AN_IMAGE = f"not an image or a zip (screening reads {', '.join(sorted(IMAGE_EXTENSIONS))} files and zips of them)"


@dataclass(frozen=True)
class Listed:
    """One row of the file list: the path as the user knows it, the file to read (None: nothing to read), or why not."""

    path: str
    file: str | None
    error: str | None = None


def _zip_members(archive_path: Path, target: Path, left_out: list[str]) -> Iterator[Listed]:
    """A zip's image members written to `target` under numbered names; every other member is a row with its reason.

    uploads.zip_members judges each member (path traversal, absolute names, symbolic links, password protection,
    size caps, members that inflate beyond what they claim, names that are not images'); member names are only ever
    shown, never used as paths. Archivers' metadata is left out and added to `left_out`."""
    try:
        archive = open_zip(archive_path, ZIP_LIMITS)
    except ZipRefused as error:
        yield Listed(str(archive_path), None, str(error))
        return
    with archive:
        left_out.extend(f"{archive_path}/{info.filename}" for info in archive.infolist() if not info.is_dir() and is_metadata(info.filename))
        target.mkdir(parents=True, exist_ok=True)
        for member in zip_members(archive, ZIP_LIMITS):
            shown = f"{archive_path}/{member.name}"
            if member.data is None:
                yield Listed(shown, None, f"zip member {member.refused}")
                continue
            path = target / f"{member.number:06d}{member_suffix(member.name)}"
            path.write_bytes(member.data)
            yield Listed(shown, str(path.resolve()))


def _folder_files(folder: Path, unpack_dir: Path, left_out: list[str]) -> Iterator[Listed]:
    """Every file under `folder`, recursively, in a stable order, without holding the whole tree in memory: images,
    the members of its zips (each unpacked under its own numbered folder of `unpack_dir`) and rows for the rest."""
    unopened: list[OSError] = []
    zips = 0
    for directory, subfolders, names in os.walk(folder, onerror=unopened.append):
        yield from (Listed(str(error.filename), None, f"folder cannot be opened ({error.strerror or error})") for error in unopened)
        unopened.clear()
        subfolders.sort()
        for name in [name for name in subfolders if os.path.islink(os.path.join(directory, name))]:
            yield Listed(os.path.join(directory, name), None, "a link to a folder, not followed: screen that folder itself")
        for name in sorted(names):
            path = Path(directory) / name
            if is_metadata(os.path.relpath(path, folder)):
                left_out.append(str(path))
            elif is_image_file(path):
                yield Listed(str(path), os.path.abspath(path))
            elif path.suffix.lower() == ZIP_EXTENSION:
                zips += 1
                yield from _zip_members(path, unpack_dir / f"{zips:05d}", left_out)
            else:
                yield Listed(str(path), None, NOT_AN_IMAGE)
    yield from (Listed(str(error.filename), None, f"folder cannot be opened ({error.strerror or error})") for error in unopened)


def _list_file(listing: Path) -> Iterator[Listed]:
    """The paths in a text file, one a line (blank lines and # comments skipped); relative ones are relative to the file's folder."""
    with open(listing, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            path = line.rstrip("\r\n")
            if path.strip() and not path.lstrip().startswith("#"):
                yield Listed(path, os.path.abspath(listing.parent / path))


def iter_sources(sources: list[str], unpack_dir: Path, left_out: list[str]) -> Iterator[Listed]:
    """Every file the sources name, in order: folders recursively, zips unpacked into `unpack_dir`, list files line by
    line. The system files left out are added to `left_out` (their paths), for the job's log."""
    for number, source in enumerate(sources, 1):
        path = Path(source)
        if path.is_dir():
            yield from _folder_files(path, unpack_dir / f"{number:03d}", left_out)
        elif path.suffix.lower() == ZIP_EXTENSION:
            yield from _zip_members(path, unpack_dir / f"{number:03d}", left_out)
        elif is_image_file(path):
            yield Listed(source, os.path.abspath(path))
        else:
            yield from _list_file(path)


def listing_note(files: int, left_out: list[str], shown: int = 3) -> str:
    """The job log's line on its file list: how many files, and how many system files were left out (a few named)."""
    note = f"listed {files:,} file{'s' if files != 1 else ''}"
    if not left_out:
        return note
    named = ", ".join(left_out[:shown]) + (f" and {len(left_out) - shown:,} more" if len(left_out) > shown else "")
    plural = "s" if len(left_out) != 1 else ""
    return (
        f"{note}; left out {len(left_out):,} system file{plural} that hold no photos (.DS_Store, Thumbs.db, desktop.ini, macOS ._ and __MACOSX files): {named}"
    )


def write_file_list(screen_dir: Path, sources: list[str], left_out: list[str]) -> int:
    """Write files.jsonl (streamed, then renamed into place) and return how many rows it has; the system files
    left out are added to `left_out`."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:
            for row in iter_sources(sources, screen_dir / UNPACKED, left_out):
                handle.write(json.dumps([row.path, row.file, row.error]) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())

    runs.write_atomic(screen_dir / FILES, write)
    return count


def read_file_list(screen_dir: Path) -> Iterator[Listed]:
    """files.jsonl's rows, in list order."""
    with open(screen_dir / FILES, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            yield Listed(*json.loads(line))


def check_sources(sources: list[str]) -> None:
    """A ValueError naming every source that does not exist."""
    if not sources:
        raise ValueError("give at least one folder, zip or list file to screen")
    missing = [source for source in sources if not Path(source).exists()]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
