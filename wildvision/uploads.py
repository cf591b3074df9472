"""Uploaded files (single images or zip archives of images) written safely to a folder for prediction.

The dashboard's Predict page receives bytes from the browser. Everything else in wildvision reads
images from paths through `images.open_image`, so uploads are written to a private temporary folder
under names we choose (numbered, never the uploaded names) and go through the same checks as any file.

A zip is untrusted input: a member named `../../x` or `/etc/x` (path traversal), a symlink, or a
"zip bomb" (a few KB that inflate to GBs, or millions of tiny members) must not hurt the server. So a
zip's members are read one by one, in memory, up to `UploadLimits`; unsafe members are skipped with a
note, and no member name is ever used as a path on disk.
"""

from __future__ import annotations

import functools
import hashlib
import io
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from wildvision.images import IMAGE_EXTENSIONS

ZIP_EXTENSION = ".zip"
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # what Finder and Windows Explorer leave in folders


@dataclass(frozen=True)
class UploadLimits:
    """Caps on what one request may unpack; generous for a folder of photos, small for a server."""

    max_images: int = 500  # images kept in all (a bigger batch belongs to `python -m wildvision predict`)
    max_zip_members: int = 5_000  # entries listed in one zip, folders and non-images included
    max_member_bytes: int = 50 * 2**20  # one uncompressed image
    max_total_bytes: int = 1 * 2**30  # everything uncompressed from all zips of one request


@dataclass(frozen=True)
class UploadedImage:
    name: str  # as the user knows it: "cat.jpg", or "photos.zip/kennel/cat.jpg" for a zip member
    path: Path  # where its bytes were written
    digest: str  # sha256 of the bytes: a cache key that does not depend on the name


@dataclass
class UploadBatch:
    images: list[UploadedImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line each: what was skipped and why


def unsafe_member_name(name: str) -> str | None:
    """Why a zip member's name is unsafe to honour (path traversal, absolute path), or None if it is fine."""
    if "\x00" in name:
        return "a NUL character in its name"
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in path.parts:
        return "a path that leads outside the zip"
    return None


def is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)  # 3: made on Unix


def is_metadata(name: str) -> bool:
    """Files that archivers add and no user counts as content: macOS resource forks, Finder and Windows files."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any(part == "__MACOSX" for part in parts) or (bool(parts) and (parts[-1].startswith("._") or parts[-1] in SYSTEM_FILES))


def member_suffix(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


def _summarise(reason: str, names: list[str], shown: int = 3) -> str:
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"skipped {len(names)} file{'s' if len(names) != 1 else ''} ({reason}): {listed}"


class Unpacker:
    """Writes accepted images into `folder` as 00001.jpg, 00002.png, ... and collects notes."""

    def __init__(self, folder: Path, limits: UploadLimits):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.unzipped = 0  # bytes inflated from zips so far, against limits.max_total_bytes
        self.full_noted = False
        self.batch = UploadBatch()

    @property
    def full(self) -> bool:
        return len(self.batch.images) >= self.limits.max_images

    def _note_full(self) -> None:
        if not self.full_noted:
            self.full_noted = True
            self.batch.notes.append(
                f"only the first {self.limits.max_images} images are used; for more, run "
                f"`python -m wildvision predict --model RUN FOLDER` on a computer with the images"
            )

    def add_image(self, name: str, data: bytes) -> None:
        if self.full:
            self._note_full()
            return
        path = self.folder / f"{len(self.batch.images) + 1:05d}{member_suffix(name)}"
        path.write_bytes(data)
        self.batch.images.append(UploadedImage(name, path, hashlib.sha256(data).hexdigest()))

    def add_upload(self, name: str, data: bytes | BinaryIO) -> None:
        """One uploaded file: an image is kept as it is (open_image judges it later); a zip is unpacked."""
        suffix = member_suffix(name)
        if suffix == ZIP_EXTENSION:
            self.add_zip(name, data)
        elif suffix in IMAGE_EXTENSIONS:
            self.add_image(name, data if isinstance(data, bytes) else data.read())
        else:
            self.batch.notes.append(f"{name}: skipped, not an image or a zip (accepted: {', '.join(sorted(IMAGE_EXTENSIONS))}, .zip)")

    def add_zip(self, name: str, data: bytes | BinaryIO) -> None:
        try:
            archive = open_zip(io.BytesIO(data) if isinstance(data, bytes) else data, self.limits)
        except ZipRefused as error:
            self.batch.notes.append(f"{name}: skipped, {error}")
            return
        with archive:
            skipped: dict[str, list[str]] = {}
            for member in zip_members(archive, self.limits, self.unzipped):
                if member.image and self.full:
                    self._note_full()
                    break
                if member.over_total:
                    self.batch.notes.append(f"{name}: stopped unpacking at {member.name}: {member.refused}")
                    break
                if member.data is None:
                    skipped.setdefault(member.refused, []).append(member.name)
                    continue
                self.unzipped += len(member.data)
                self.add_image(f"{name}/{member.name}", member.data)
            for kind, names in skipped.items():
                self.batch.notes.append(f"{name}: {_summarise(kind, names)}")


class TooBig(Exception):
    pass


def read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A member's bytes, refusing to inflate more than `cap` whatever its header claims."""
    chunks, total = [], 0
    with archive.open(info) as handle:
        while chunk := handle.read(1 << 20):
            total += len(chunk)
            if total > cap:
                raise TooBig()
            chunks.append(chunk)
    return b"".join(chunks)


class ZipRefused(ValueError):
    """A whole zip refused: not a zip at all, or more entries than the limits allow (the message says which)."""


@dataclass(frozen=True)
class ZipMember:
    """One file in a zip and the verdict on it: its bytes when it passed every check, else why it was refused."""

    number: int  # its place among the zip's entries, from 1 (folders counted): a name to write it under
    name: str  # the name stored in the zip: only ever shown, never used as a path
    data: bytes | None = None
    refused: str | None = None  # why, in a few words that follow the member's name or group several
    over_total: bool = False  # refused because the zip inflates to more than limits.max_total_bytes: so is every later member

    @property
    def image(self) -> bool:
        """Its name ends in an image extension (what it holds is for images.open_image to judge)."""
        return member_suffix(self.name) in IMAGE_EXTENSIONS


def open_zip(source: str | Path | BinaryIO, limits: UploadLimits) -> zipfile.ZipFile:
    """The zip, opened for zip_members; ZipRefused when it is not one or lists more entries than the limits allow."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ZipRefused(f"not a readable zip file ({error})") from None
    entries = len(archive.infolist())
    if entries > limits.max_zip_members:
        archive.close()
        raise ZipRefused(f"it lists {entries:,} entries (the limit is {limits.max_zip_members:,})")
    return archive


def zip_members(archive: zipfile.ZipFile, limits: UploadLimits, unzipped: int = 0) -> Iterator[ZipMember]:
    """Every file of the zip in its order, folders and archivers' metadata left out, each judged: refused for an
    unsafe name (path traversal, an absolute path), a symbolic link, a name that is not an image's (a zip inside
    is not opened), a password, a size over the caps (`unzipped`: bytes already inflated from other zips, against
    limits.max_total_bytes; once over it, every later image is refused too) or bytes beyond what the zip claims (a
    zip bomb); else with its bytes, read in memory. Both the Predict page's uploads and screening jobs unpack zips
    through it."""
    over_total = False
    for number, info in enumerate(archive.infolist(), 1):
        if info.is_dir() or is_metadata(info.filename):
            continue
        member = functools.partial(ZipMember, number, info.filename)
        reason = unsafe_member_name(info.filename)
        if reason:
            yield member(refused=f"unsafe: {reason}")
        elif is_symlink(info):
            yield member(refused="unsafe: a symbolic link")
        elif member_suffix(info.filename) == ZIP_EXTENSION:
            yield member(refused="a zip inside the zip, not opened: unzip it first")
        elif member_suffix(info.filename) not in IMAGE_EXTENSIONS:
            yield member(refused="not an image")
        elif info.flag_bits & 0x1:
            yield member(refused="password-protected")
        elif info.file_size > limits.max_member_bytes:
            yield member(refused=f"over {limits.max_member_bytes // 2**20} MB")
        elif over_total or unzipped + info.file_size > limits.max_total_bytes:
            over_total = True
            yield member(refused=f"over {limits.max_total_bytes // 2**20} MB uncompressed in all", over_total=True)
        else:
            try:
                content = read_capped(archive, info, min(limits.max_member_bytes, limits.max_total_bytes - unzipped))
            except TooBig:
                yield member(refused="larger than the zip says: possibly a zip bomb")
                continue
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, ValueError):
                yield member(refused="damaged, or packed in a way Python cannot read")
                continue
            unzipped += len(content)
            yield member(data=content)


def unpack_uploads(uploads: Iterable[tuple[str, bytes | BinaryIO]], folder: str | Path, limits: UploadLimits = UploadLimits()) -> UploadBatch:
    """Write every image among `uploads` (name, bytes or a binary file) to `folder`; zips are unpacked safely.

    Returns the images in upload order (zip members in archive order) and one note per group of skipped files.
    """
    unpacker = Unpacker(Path(folder), limits)
    for name, data in uploads:
        unpacker.add_upload(name, data)
    return unpacker.batch
