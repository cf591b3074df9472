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

import hashlib
import io
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from wildvision.images import IMAGE_EXTENSIONS

ZIP_EXTENSION = ".zip"


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
    return any(part == "__MACOSX" for part in parts) or (bool(parts) and (parts[-1].startswith("._") or parts[-1] in (".DS_Store", "Thumbs.db")))


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
        limits = self.limits
        try:
            archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            self.batch.notes.append(f"{name}: skipped, not a readable zip file ({error})")
            return
        with archive:
            members = archive.infolist()
            if len(members) > limits.max_zip_members:
                self.batch.notes.append(f"{name}: skipped, it lists {len(members):,} entries (the limit is {limits.max_zip_members:,})")
                return
            skipped: dict[str, list[str]] = {}
            for info in members:
                member = f"{name}/{info.filename}"
                if info.is_dir() or is_metadata(info.filename):
                    continue
                reason = unsafe_member_name(info.filename)
                if reason:
                    skipped.setdefault(f"unsafe: {reason}", []).append(info.filename)
                    continue
                if is_symlink(info):
                    skipped.setdefault("a symbolic link", []).append(info.filename)
                    continue
                if member_suffix(info.filename) not in IMAGE_EXTENSIONS:
                    skipped.setdefault("not an image", []).append(info.filename)
                    continue
                if self.full:
                    self._note_full()
                    break
                if info.flag_bits & 0x1:
                    skipped.setdefault("password-protected", []).append(info.filename)
                    continue
                if info.file_size > limits.max_member_bytes:
                    skipped.setdefault(f"over {limits.max_member_bytes // 2**20} MB", []).append(info.filename)
                    continue
                if self.unzipped + info.file_size > limits.max_total_bytes:
                    self.batch.notes.append(f"{name}: stopped unpacking at {info.filename}: over {limits.max_total_bytes // 2**20} MB uncompressed in all")
                    break
                try:
                    content = read_capped(archive, info, min(limits.max_member_bytes, limits.max_total_bytes - self.unzipped))
                except TooBig:
                    skipped.setdefault("larger than the zip says: possibly a zip bomb", []).append(info.filename)
                    continue
                except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError, ValueError):
                    skipped.setdefault("damaged, or packed in a way Python cannot read", []).append(info.filename)
                    continue
                self.unzipped += len(content)
                self.add_image(member, content)
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


def unpack_uploads(uploads: Iterable[tuple[str, bytes | BinaryIO]], folder: str | Path, limits: UploadLimits = UploadLimits()) -> UploadBatch:
    """Write every image among `uploads` (name, bytes or a binary file) to `folder`; zips are unpacked safely.

    Returns the images in upload order (zip members in archive order) and one note per group of skipped files.
    """
    unpacker = Unpacker(Path(folder), limits)
    for name, data in uploads:
        unpacker.add_upload(name, data)
    return unpacker.batch
