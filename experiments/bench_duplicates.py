"""Grouping 20,000 copies of one photo with 20,000 distinct photos in bounded memory (issue 22).

A scrape full of "image not available" placeholders is thousands of copies of one photo; listing every pair of
them (as grouping once did) was 4.1 GB at 5,000 copies and about 2x10^8 pairs at 20,000. This builds the hashes a
screening job's parts hold (`--copies` files with one SHA-256 and pHash, `--distinct` files with their own SHA-256
and a random 64-bit pHash; no photos are decoded, which would only add time) and groups them as the job's final
merge does (photos.duplicate_group_ids) and as the Data page does (datacheck.duplicate_groups, with an Entry and
ImageFacts per file), checking that the copies are one group and every distinct photo its own.

Memory is measured in this process two ways: the tracemalloc peak (every Python and numpy allocation, from before
the inputs are built, so they count too) and the growth of the process's peak resident size (getrusage maxrss,
measured in a first untraced pass, which also gives the time). The last line is `ratio: <largest tracemalloc peak in
MB / 500>`: under 1 is the issue's bound of 500 MB.

    python experiments/bench_duplicates.py [--copies 20000] [--distinct 20000] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wildvision import photos
from wildvision.datacheck import Entry, duplicate_groups
from wildvision.photos import ImageFacts

BOUND_MB = 500
PLACEHOLDER_PHASH = 0x0F0F_F0F0_1234_5678


def hashes(copies: int, distinct: int) -> tuple[list[str], list[int]]:
    """The SHA-256 and pHash of each file: the placeholder's copies first, then the distinct photos."""
    rng = np.random.default_rng(0)
    randoms = [int(h) for h in rng.integers(0, 2**64, distinct, dtype=np.uint64)]
    sha256s = [hashlib.sha256(b"placeholder").hexdigest()] * copies + [hashlib.sha256(str(i).encode()).hexdigest() for i in range(distinct)]
    return sha256s, [PLACEHOLDER_PHASH] * copies + randoms


def merge(copies: int, distinct: int) -> str:
    """The screening merge's grouping, checked: one group for the copies, one each for the rest."""
    sha256s, phashes = hashes(copies, distinct)
    groups = photos.duplicate_group_ids(sha256s, phashes)
    assert set(groups[:copies]) == {1} and len(set(groups)) == 1 + distinct, "the copies are one group, every other photo its own"
    return f"{len(set(groups)):,} groups of {len(groups):,} files"


def data_page(copies: int, distinct: int) -> str:
    """The Data page's duplicate groups, checked: one group (identical files) holding every copy."""
    sha256s, phashes = hashes(copies, distinct)
    entries = [Entry(Path(f"/data/wild/listing-{i:06d}.jpg"), "train", "wild", False, False) for i in range(len(sha256s))]
    facts = [ImageFacts((640, 480), sha, phash, None) for sha, phash in zip(sha256s, phashes)]
    (group,) = duplicate_groups(entries, facts)
    assert len(group.members) == copies and group.identical and group.distance == 0
    return f"1 duplicate group of {len(group.members):,} identical files among {len(entries):,} files"


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(work: Callable[[], str]) -> tuple[str, float, float, float]:
    """(what it found, seconds, maxrss growth in MB, tracemalloc peak in MB): timed untraced first, then traced."""
    before = maxrss_mb()
    started = time.perf_counter()
    found = work()
    seconds = time.perf_counter() - started
    grown = maxrss_mb() - before
    tracemalloc.start()
    try:
        work()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return found, seconds, grown, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20_000, help="files that are one photo (one SHA-256 and pHash)")
    parser.add_argument("--distinct", type=int, default=20_000, help="files that are each their own photo")
    parser.add_argument("--quick", action="store_true", help="5,000 copies and 5,000 distinct photos")
    args = parser.parse_args()
    if args.quick:
        args.copies, args.distinct = 5_000, 5_000
    print(f"{args.copies:,} copies of one photo and {args.distinct:,} distinct photos ({args.copies + args.distinct:,} files)")
    peaks = []
    for name, work in (("screening merge (photos.duplicate_group_ids)", merge), ("Data page (datacheck.duplicate_groups)", data_page)):
        found, seconds, grown, peak = measure(lambda work=work: work(args.copies, args.distinct))
        peaks.append(peak)
        print(f"{name}: {found}; {seconds:.2f} s; tracemalloc peak {peak:.1f} MB; peak resident size grew {grown:.1f} MB")
    print(f"largest tracemalloc peak: {max(peaks):.1f} MB of the {BOUND_MB} MB bound")
    print(f"ratio: {max(peaks) / BOUND_MB:.3f}")


if __name__ == "__main__":
    main()
