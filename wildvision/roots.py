"""Where a path typed into a page may lead: only under the server's data roots, and only to regular files and folders.

A page's path box is a way into the server's disk for anyone who can reach the page. Every server path a page takes
(screening sources, training and test folders, weights files, export destinations) goes through `readable` or
`writable` first: after following links it must lie under a read root (or a write root) from settings. The refusal
has the same words whether or not the path exists, so a visitor cannot map the disk by trying names. `walk` is the one
way to go through a folder tree: each real folder once (a link loop ends), and at most `limit` entries.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from wildvision.settings import Settings, load_settings

WALK_LIMIT = 1_000_000  # entries (files and folders) one walk visits at most


class OutsideRoots(ValueError):
    """A path outside the configured roots, or one that is not a regular file or folder."""


class WalkTooLarge(ValueError):
    """A folder tree with more entries than a walk may visit."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in (_real(root) for root in roots))


def _refusal(text: str | Path, roots: Sequence[Path], verb: str) -> OutsideRoots:
    where = "; ".join(str(_real(root)) for root in roots) or "none configured"
    return OutsideRoots(f"{os.fspath(text)!r} is not in a folder this server {verb}. It {verb} only under: {where}.")


def read_roots(settings: Settings | None = None) -> tuple[str, ...]:
    """Every folder a page may read under (read and write roots), links resolved: what a job started from a page
    records, so that what it finds inside its sources (a link in a folder, a line of a list file) stays under them."""
    settings = settings or load_settings()
    return tuple(str(_real(root)) for root in (*settings.read_roots, *settings.write_roots))


def inside(path: str | Path, folders: Sequence[str | Path]) -> bool:
    """Whether `path`, links followed, lies under one of `folders` (read_roots' output)."""
    return _under(_real(path), [Path(folder) for folder in folders])


def readable(path: str | Path, settings: Settings | None = None) -> Path:
    """`path` resolved (links followed), if it lies under a read or write root; else OutsideRoots.

    Whether the path exists is not checked here (and not told in the refusal): the caller says what is missing, and
    only inside the roots.
    """
    settings = settings or load_settings()
    real = _real(path)
    roots = (*settings.read_roots, *settings.write_roots)
    if not _under(real, roots):
        raise _refusal(path, roots, "reads")
    return real


def writable(path: str | Path, settings: Settings | None = None) -> Path:
    """`path` resolved (links followed), if it lies under a write root; else OutsideRoots."""
    settings = settings or load_settings()
    real = _real(path)
    if not _under(real, settings.write_roots):
        raise _refusal(path, settings.write_roots, "writes")
    return real


def regular(path: str | Path) -> Path:
    """`path` itself if it is a regular file or a folder (after links); device files, FIFOs and sockets raise
    OutsideRoots, since reading one never ends (/dev/zero) or blocks (a FIFO). A missing path is returned as it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Path(path)
    except OSError as error:
        raise OutsideRoots(f"{os.fspath(path)!r} cannot be opened ({error.strerror or error})") from error
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise OutsideRoots(f"{os.fspath(path)!r} is not a regular file or folder (a device, a pipe or a socket): it cannot be read as photos")
    return Path(path)


def walk(folder: str | Path, limit: int = WALK_LIMIT, follow_links: bool = True, onerror=None) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk over `folder`, each real folder visited once, raising WalkTooLarge past `limit` entries.

    A link back up the tree (`a -> ..`) would otherwise make os.walk(followlinks=True) visit the tree again below
    itself, over and over. Sub-folders are walked in sorted order so that listings are stable. The caller may prune
    `subfolders` as with os.walk.
    """
    visited: set[str] = set()
    seen = 0
    for directory, subfolders, names in os.walk(folder, followlinks=follow_links, onerror=onerror):
        real = os.path.realpath(directory)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        seen += len(subfolders) + len(names)
        if seen > limit:
            raise WalkTooLarge(f"{os.fspath(folder)} holds more than {limit:,} files and folders: choose a smaller folder")
        subfolders.sort()
        yield directory, subfolders, names
