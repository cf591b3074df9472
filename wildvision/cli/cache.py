"""`cache info` and `cache clear`: what the feature store and decoded-image cache hold, and emptying them."""

from __future__ import annotations

import argparse
from pathlib import Path

from wildvision import feature_store
from wildvision.cache import CACHE_DIR_ENV, default_cache_dir


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def _gb(size: int) -> str:
    return f"{size / feature_store.GB:.3f} GB"


def cmd_info(args: argparse.Namespace) -> int:
    """One line per folder (entry files, GB), then the total against the bound."""
    folder = _folder(args)
    found = feature_store.folders(folder)
    print(f"cache folder: {folder}")
    for info in found:
        print(f"{info.name}: {info.holds}: {info.files:,} files, {_gb(info.bytes)}")
    files, size = sum(info.files for info in found), sum(info.bytes for info in found)
    bound = feature_store.max_bytes()
    print(f"total: {len(found):,} folders, {files:,} files, {_gb(size)} of a bound of {_gb(bound)} (${feature_store.MAX_GB_ENV})")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    """Delete the stored features and decoded images; every run computes again what it needs."""
    folder = _folder(args)
    removed = feature_store.clear(folder)
    print(f"removed {removed.files:,} files, {_gb(removed.bytes)}, from {folder}")
    return 0


def register(sub) -> None:
    """The `cache` command and its subcommands."""
    p = sub.add_parser(
        "cache",
        help="show or clear stored backbone features and decoded images",
        description="Training keeps backbone features (per photo, model and view) and decoded photos in one cache folder, so a "
        "second run of the same architecture computes only photos it has not seen. It stays under a size bound "
        f"(${feature_store.MAX_GB_ENV}, default {feature_store.DEFAULT_MAX_GB:g} GB; least recently used files go first). "
        "Deleting it is always safe.",
    )
    cache_sub = p.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    for name, func, words in (
        ("info", cmd_info, "print each folder of the cache with its files and size in GB"),
        ("clear", cmd_clear, "delete every stored feature and decoded image (runs compute them again as needed)"),
    ):
        command = cache_sub.add_parser(name, help=words, description=words[0].upper() + words[1:] + ".")
        command.add_argument("--cache-dir", help=f"the cache folder (default: ${CACHE_DIR_ENV}, else ~/.cache/wildvision)")
        command.set_defaults(func=func)
