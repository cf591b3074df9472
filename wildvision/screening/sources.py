"""What a screening job's sources hold: every file accounted for, as a row to score or a row saying why it cannot be.

A source is a folder (searched recursively), a zip, a single image, a text file listing image paths one a line, or a
manifest of scraped listings (.csv or .jsonl: a photo a row with its listing's URL, id, date, seller..., listings.py).
A user who screens a folder expects every file in it to be in the results, so nothing is passed over silently:
images are rows to score; a zip, whether given directly or found inside a folder, is opened with uploads' checks
(path traversal, symbolic links, zip bombs...), its images rows to score and every other member a row with its
reason; any other file, a folder that cannot be opened or a link to a folder is a row saying why it was not scored.
Device files, FIFOs and sockets are never read: refused as sources (check_sources), a row "not a regular file" when
met in a folder, and not opened when a list file names them (scoring checks again before reading). A list file is at
most MAX_LIST_BYTES with lines of at most MAX_LINE_CHARS; only its lines naming image files are photos, the rest rows.
Only system files that hold no photos (uploads.is_metadata: .DS_Store, Thumbs.db, macOS ._ and __MACOSX files) are
left out, and the caller says how many in the job's log (listing_note).

The job's file list (files.jsonl) is written once, before any scoring, and never changes: one JSON
[path as given or listed, file on disk, error] a line. The listings of rows that came from a manifest are written with
it, into listings.jsonl (listings.LISTINGS), renamed into place just before files.jsonl. Zip members that pass uploads' checks are unpacked into the
job's unpacked/ under numbered names (member names are never used as paths).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from wildvision import roots, runs
from wildvision.images import IMAGE_EXTENSIONS, is_image_file
from wildvision.screening import listings
from wildvision.screening.config import FILES, UNPACKED
from wildvision.uploads import ZIP_EXTENSION, UploadLimits, ZipRefused, is_metadata, member_suffix, open_zip, zip_members

# as `predict`'s zips: the user's own archive, but its members may come from anyone
ZIP_LIMITS = UploadLimits(max_images=400_000, max_zip_members=400_000, max_total_bytes=8 * 2**30)
MAX_LIST_BYTES = 50 * 2**20  # a list file's size at most: 50 MB holds about a million paths
MAX_LINE_CHARS = 4096  # a list file's line at most (PATH_MAX on Linux)
LINES_CHECKED = 1000  # a list file's first lines, checked for at least one photo path before a job starts
NOT_REGULAR = "not a regular file (a device, a pipe or a socket): not read"
NOT_AN_IMAGE = f"not an image or a zip (screening reads {', '.join(sorted(IMAGE_EXTENSIONS))} files and zips of them)"
OUTSIDE_ROOTS = "outside the folders this server reads (a link or a listed path leading elsewhere): not read"
NOT_A_PHOTO_PATH = f"not a photo path (a list file's lines name {', '.join(sorted(IMAGE_EXTENSIONS))} files; screen folders and zips as sources)"


@dataclass(frozen=True)
class Listed:
    """One row of the file list: the path as the user knows it, the file to read (None: nothing to read), or why not."""

    path: str
    file: str | None
    error: str | None = None
    listing: listings.Listing | None = None  # the scraped listing of a manifest's row


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


def _not_regular(path: str | Path) -> str | None:
    """Why `path` (links followed) must not be read: a device file (/dev/zero never ends), a FIFO (blocks) or a
    socket; None for a regular file or folder, and for a path that cannot be stat'ed (reading it then says why)."""
    try:
        roots.regular(path)
    except roots.OutsideRoots:
        return NOT_REGULAR
    return None


def _why_not_read(path: Path, within: tuple[str, ...] | None) -> str | None:
    """Why a file met in a folder or named by a list file is not read: not a regular file, or (for a job started from
    a page, which records its data roots in `within`) leading outside them; None when it may be read."""
    if why := _not_regular(path):
        return why
    return OUTSIDE_ROOTS if within is not None and not roots.inside(path, within) else None


def _folder_files(folder: Path, unpack_dir: Path, left_out: list[str], within: tuple[str, ...] | None = None) -> Iterator[Listed]:
    """Every file under `folder`, recursively, in a stable order, without holding the whole tree in memory: images,
    the members of its zips (each unpacked under its own numbered folder of `unpack_dir`) and rows for the rest.
    Links to folders are rows, not followed (roots.walk without following links); a link to a device file, a FIFO or
    a socket is a row, never read."""
    unopened: list[OSError] = []
    zips = 0
    for directory, subfolders, names in roots.walk(folder, follow_links=False, onerror=unopened.append):
        yield from (Listed(str(error.filename), None, f"folder cannot be opened ({error.strerror or error})") for error in unopened)
        unopened.clear()
        for name in [name for name in subfolders if os.path.islink(os.path.join(directory, name))]:
            yield Listed(os.path.join(directory, name), None, "a link to a folder, not followed: screen that folder itself")
        for name in sorted(names):
            path = Path(directory) / name
            if is_metadata(os.path.relpath(path, folder)):
                left_out.append(str(path))
            elif (is_image_file(path) or path.suffix.lower() == ZIP_EXTENSION) and (why := _why_not_read(path, within)):
                yield Listed(str(path), None, why)
            elif is_image_file(path):
                yield Listed(str(path), os.path.abspath(path))
            elif path.suffix.lower() == ZIP_EXTENSION:
                zips += 1
                yield from _zip_members(path, unpack_dir / f"{zips:05d}", left_out)
            else:
                yield Listed(str(path), None, NOT_AN_IMAGE)
    yield from (Listed(str(error.filename), None, f"folder cannot be opened ({error.strerror or error})") for error in unopened)


def _lines(listing: Path) -> Iterator[tuple[str, bool]]:
    """A list file's lines without their line ends, each with whether it was cut at MAX_LINE_CHARS (the rest of a
    longer line is read in bounded pieces and dropped, so one endless line never fills memory)."""
    with open(listing, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        while line := handle.readline(MAX_LINE_CHARS + 1):
            cut = len(line) > MAX_LINE_CHARS and not line.endswith("\n")
            while cut and (rest := handle.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield line.rstrip("\r\n"), cut


def _list_file(listing: Path, within: tuple[str, ...] | None = None) -> Iterator[Listed]:
    """The paths in a text file, one a line (blank lines and # comments skipped); relative ones are relative to the
    file's folder. Only lines naming an image file are photos to read; any other line (a zip, a folder, /dev/zero,
    a line of /etc/passwd) and a line over MAX_LINE_CHARS are rows saying why they were not read."""
    for path, cut in _lines(listing):
        if cut:
            yield Listed(path[:80] + "…", None, f"line too long (over {MAX_LINE_CHARS:,} characters): not a path")
        elif not path.strip() or path.lstrip().startswith("#"):
            continue
        elif not is_image_file(Path(path)):
            yield Listed(path, None, NOT_A_PHOTO_PATH)
        elif within is not None and not roots.inside(listing.parent / path, within):
            yield Listed(path, None, OUTSIDE_ROOTS)
        else:
            yield Listed(path, os.path.abspath(listing.parent / path))


def _manifest(manifest: Path, within: tuple[str, ...] | None = None) -> Iterator[Listed]:
    """A manifest's rows (listings.manifest_rows) as a list file's lines: image paths relative to the manifest's
    folder, only image files read, none outside `within`; every row keeps its listing, and a malformed one its reason."""
    for row in listings.manifest_rows(manifest):
        if row.error is not None:
            yield Listed(row.image, None, row.error, row.listing)
        elif not is_image_file(Path(row.image)):
            yield Listed(row.image, None, NOT_A_PHOTO_PATH, row.listing)
        elif within is not None and not roots.inside(manifest.parent / row.image, within):
            yield Listed(row.image, None, OUTSIDE_ROOTS, row.listing)
        else:
            yield Listed(row.image, os.path.abspath(manifest.parent / row.image), None, row.listing)


def iter_sources(sources: list[str], unpack_dir: Path, left_out: list[str], within: tuple[str, ...] | None = None) -> Iterator[Listed]:
    """Every file the sources name, in order: folders recursively, zips unpacked into `unpack_dir`, list files line by
    line. The system files left out are added to `left_out` (their paths), for the job's log. `within`: the data roots
    of a job started from a page (ScreenConfig.read_roots), which files found in the sources must not lead out of;
    None for a job started from the command line, which reads what its user can."""
    for number, source in enumerate(sources, 1):
        path = Path(source)
        if why := _not_regular(path):  # checked when the job began; a source may have been replaced since
            yield Listed(source, None, why)
        elif path.is_dir():
            yield from _folder_files(path, unpack_dir / f"{number:03d}", left_out, within)
        elif path.suffix.lower() == ZIP_EXTENSION:
            yield from _zip_members(path, unpack_dir / f"{number:03d}", left_out)
        elif is_image_file(path):
            yield Listed(source, os.path.abspath(path))
        elif listings.is_manifest(path):
            yield from _manifest(path, within)
        else:
            yield from _list_file(path, within)


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


def write_file_list(screen_dir: Path, sources: list[str], left_out: list[str], within: tuple[str, ...] | None = None) -> int:
    """Write files.jsonl (streamed, then renamed into place) and return how many rows it has; the system files
    left out are added to `left_out`; `within` as iter_sources'. Rows from a manifest have their listings written to
    listings.jsonl, renamed into place before files.jsonl (whose presence says the list is whole)."""
    count = 0
    listed = screen_dir / f".{listings.LISTINGS}.{os.getpid()}.tmp"

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle, open(listed, "w", encoding="utf-8", errors="surrogateescape") as extra:
            for row in iter_sources(sources, screen_dir / UNPACKED, left_out, within):
                handle.write(json.dumps([row.path, row.file, row.error]) + "\n")
                if row.listing is not None:
                    extra.write(listings.listing_json(count, row.listing))
                count += 1
            for written in (handle, extra):
                written.flush()
                os.fsync(written.fileno())
        if listed.stat().st_size:
            os.replace(listed, screen_dir / listings.LISTINGS)

    try:
        runs.write_atomic(screen_dir / FILES, write)
    finally:
        listed.unlink(missing_ok=True)
    return count


def read_file_list(screen_dir: Path) -> Iterator[Listed]:
    """files.jsonl's rows, in list order."""
    with open(screen_dir / FILES, encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            yield Listed(*json.loads(line))


def _list_problem(source: str) -> str | None:
    """Why a list file cannot be a source: over MAX_LIST_BYTES, or none of its first lines names a photo (a text file
    that is not a list of photos, such as /etc/passwd, would otherwise become thousands of rows)."""
    size = os.stat(source).st_size
    if size > MAX_LIST_BYTES:
        return f"{source} is {size / 2**20:,.1f} MB: a list of photo paths may be at most {MAX_LIST_BYTES // 2**20} MB (split it, or screen the folder itself)"
    paths = (path for path, cut in islice(_lines(Path(source)), LINES_CHECKED) if not cut and path.strip() and not path.lstrip().startswith("#"))
    if not any(is_image_file(Path(path)) for path in paths):
        return f"{source} names no photo in its first {LINES_CHECKED:,} lines: a list file holds one photo path a line ({', '.join(sorted(IMAGE_EXTENSIONS))})"
    return None


def check_sources(sources: list[str]) -> None:
    """A ValueError naming every source that cannot be screened, before anything is read: missing, not a regular
    file or folder (a device, a FIFO, a socket), or a list file too large or listing no photos."""
    if not sources:
        raise ValueError("give at least one folder, zip, list file or manifest of listings to screen")
    missing = [source for source in sources if not Path(source).exists()]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    devices = [source for source in sources if _not_regular(source)]
    if devices:
        raise ValueError(
            f"{', '.join(devices)}: not a regular file or folder (a device, a pipe or a socket); screening reads folders, zips, photos, lists of photo paths and manifests of listings"
        )
    lists = [source for source in sources if Path(source).is_file() and Path(source).suffix.lower() != ZIP_EXTENSION and not is_image_file(Path(source))]
    problems = [problem for source in lists if (problem := listings.manifest_problem(source) if listings.is_manifest(source) else _list_problem(source))]
    if problems:
        raise ValueError("; ".join(problems))
