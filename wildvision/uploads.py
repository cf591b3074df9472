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
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from wildvision.images import IMAGE_EXTENSIONS

ZIP_EXTENSION = ".zip"
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # what Finder and Windows Explorer leave in folders


@dataclass(frozen=True)
class UploadLimits:
    """Caps on what one request may unpack; generous for a folder of photos, small for a server.

    The totals (images, bytes and pixels kept) are the Predict page's: a 70 KB zip of 60 PNGs of 49 megapixels each
    once took 97 s of server CPU. Pixels are read from each image's header before anything decodes it."""

    max_images: int = 500  # images kept in all (settings' upload_files)
    max_zip_members: int = 5_000  # entries listed in one zip, folders and non-images included
    max_member_bytes: int = 50 * 2**20  # one uncompressed image
    max_total_bytes: int = 1 * 2**30  # the bytes of every image kept, zip members uncompressed (settings' upload_megabytes)
    max_total_pixels: int | None = None  # the pixels of every image kept, from their headers (settings' upload_megapixels)

    @classmethod
    def from_settings(cls, settings) -> UploadLimits:
        """The Predict page's caps from the server's settings (wildvision.settings.Settings' upload_max_* values)."""
        return cls(
            max_images=settings.upload_max_files,
            max_total_bytes=settings.upload_max_megabytes * 2**20,
            max_total_pixels=settings.upload_max_megapixels * 1_000_000,
        )


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


def megabytes(size: int) -> str:
    """A size in MB as a cap is said: "200 MB", "0.24 MB"."""
    value = size / 2**20
    return f"{value:,.0f} MB" if value >= 10 else f"{value:.2g} MB"


def header_pixels(data: bytes) -> int | None:
    """An image's width x height from its header alone (nothing is decoded); 0 when no header can be read (the file
    is kept and images.open_image says why it cannot be read), None when it is too large to decode safely."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        return None
    except (OSError, ValueError, SyntaxError):
        return 0
    return width * height


class Unpacker:
    """Writes accepted images into `folder` as 00001.jpg, 00002.png, ... and collects notes.

    Once an image would take the upload over a total (images, bytes, pixels), it and every image after it are left
    out, counted, and `finish` says how many were taken and why the rest were not."""

    def __init__(self, folder: Path, limits: UploadLimits):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.kept_bytes = 0  # of every image kept, against limits.max_total_bytes
        self.kept_pixels = 0  # of every image kept, against limits.max_total_pixels
        self.stopped: str | None = None  # the total the upload reached: why every later image is left out
        self.left_out = 0  # images left out since
        self.batch = UploadBatch()

    def _total_reached(self, size: int, pixels: int) -> str | None:
        """The total an image of `size` bytes and `pixels` would take the upload over ("500 images"), or None."""
        limits = self.limits
        if len(self.batch.images) >= limits.max_images:
            return f"{limits.max_images:,} images"
        if self.kept_bytes + size > limits.max_total_bytes:
            return f"{megabytes(limits.max_total_bytes)} in all"
        if limits.max_total_pixels is not None and self.kept_pixels + pixels > limits.max_total_pixels:
            return f"{limits.max_total_pixels / 1e6:,.0f} megapixels in all"
        return None

    def add_image(self, name: str, data: bytes) -> None:
        """Keep an image, unless it would take the upload over a total: then it and every later image are left out.
        One that alone has more pixels than the upload may hold is skipped with its own note (the next may fit)."""
        pixels = 0
        if self.stopped is None and self.limits.max_total_pixels is not None:
            pixels = header_pixels(data)
            if pixels is None or pixels > self.limits.max_total_pixels:
                cap = self.limits.max_total_pixels / 1e6
                self.batch.notes.append(f"{name}: skipped, over {cap:,.0f} megapixels on its own (the most one upload may hold)")
                return
        if self.stopped is None:
            self.stopped = self._total_reached(len(data), pixels)
        if self.stopped is not None:
            self.left_out += 1
            return
        path = self.folder / f"{len(self.batch.images) + 1:05d}{member_suffix(name)}"
        path.write_bytes(data)
        self.kept_bytes += len(data)
        self.kept_pixels += pixels
        self.batch.images.append(UploadedImage(name, path, hashlib.sha256(data).hexdigest()))

    def finish(self) -> UploadBatch:
        """The batch, with one note saying how many images were taken and why the rest were not, if any were left out."""
        if self.left_out:
            kept = len(self.batch.images)
            self.batch.notes.append(
                f"took {kept:,} of the {kept + self.left_out:,} images uploaded: the other {self.left_out:,} would have gone over "
                f"{self.stopped}, the most one upload may hold; upload them separately"
            )
        return self.batch

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
            for member in zip_members(archive, self.limits, self.kept_bytes):
                if self.stopped is not None or member.over_total:  # nothing more is taken: count the rest unread
                    self.stopped = self.stopped or f"{megabytes(self.limits.max_total_bytes)} in all"
                    self.left_out += sum(1 for info in archive.infolist()[member.number - 1 :] if _listed_image(info))
                    break
                if member.data is None:
                    skipped.setdefault(member.refused, []).append(member.name)
                    continue
                self.add_image(f"{name}/{member.name}", member.data)
            for kind, names in skipped.items():
                self.batch.notes.append(f"{name}: {_summarise(kind, names)}")


def _listed_image(info: zipfile.ZipInfo) -> bool:
    """A zip entry that zip_members would judge as an image (not a folder, not archivers' metadata)."""
    return not info.is_dir() and not is_metadata(info.filename) and member_suffix(info.filename) in IMAGE_EXTENSIONS


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

    Returns the images in upload order (zip members in archive order) and one note per group of skipped files; once
    an image would take the upload over limits' totals (images, bytes, pixels), the rest are counted, not read.
    """
    unpacker = Unpacker(Path(folder), limits)
    for name, data in uploads:
        unpacker.add_upload(name, data)
    return unpacker.finish()
