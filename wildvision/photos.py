"""When two files are the same photo: the one place that says it, for the data check, training, screening and export.

Two images are the same photo when their bytes are identical (SHA-256) or their perceptual hashes (pHash,
64 bits, `imagehash`) differ in at most `PHASH_THRESHOLD` bits. That threshold was measured on the demo
data (5,034 photos): 3,000 resized (x0.35 to x1.5) and re-encoded (JPEG quality 40 to 90) copies of 500
photos were at most 6 bits from their originals, and the closest two unrelated photos were 10 bits apart
(3 such pairs; every pair at 8 bits or fewer was the same photo, shown side by side). pHash distances
are even (each hash has as many bits set as clear around its median), so 8 sits between the two.
Watermarked or cropped copies can be 10 bits or more away and are not caught.

Matches are joined transitively (a copy of a copy is the same photo): `components` gives each file its group,
`duplicate_group_ids` numbers the groups by their first file (as screening's scores.csv does),
`test_duplicates` names the test images that are one photo with a training image, and `overlaps` the
files that are directly the same photo as a reference (a test-set image) before they are exported.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from wildvision.images import ImageError, open_image

PHASH_THRESHOLD = 8  # bits of 64; see the module docstring for the measurements behind it
# pHash shrinks to 32 x 32 first; a JPEG decoded at no less than twice that gives the same hash within the
# measured noise (median 0 bits from a full decode) at about a third of the time (0.53 ms against 1.46 ms)
DRAFT_SIZE = (64, 64)
PHASH_SIDE = DRAFT_SIZE[0]  # a decoded photo is box-reduced to no less than this before hashing: cheap, same bits
NEAR_PAIRS_BLOCK = 8_000_000  # pHash pairs compared at once by near_pairs (8 bytes each while XORed)
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes (raises OSError when it cannot be read)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def phash(image: Image.Image) -> int:
    """A decoded image's pHash as an int, from a box-reduced copy no smaller than PHASH_SIDE (cheap on large photos;
    an image decoded at DRAFT_SIZE is hashed as it is)."""
    factor = max(1, min(image.width, image.height) // PHASH_SIDE)
    return int(str(imagehash.phash(image.reduce(factor) if factor > 1 else image)), 16)


@dataclass(frozen=True)
class ImageFacts:
    """One file as read: its upright size, SHA-256, pHash (as an int), or why it cannot be decoded."""

    size: tuple[int, int] | None
    sha256: str
    phash: int | None
    error: str | None


_facts_cache: dict[tuple[str, int, int], ImageFacts] = {}
_facts_lock = threading.Lock()


def image_facts(path: Path) -> ImageFacts:
    """SHA-256, pHash (of a draft decode at DRAFT_SIZE) and upright size of one file; cached in memory by (path, size,
    mtime), so checking again after a fix (or training after a check) rereads only what changed."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _facts_lock:
        cached = _facts_cache.get(key)
    if cached is not None:
        return cached
    digest = sha256(path)
    try:
        image = open_image(path, draft=DRAFT_SIZE)
        with Image.open(path) as header:  # the full size: `image` may be a reduced draft
            width, height = header.size
            if header.getexif().get(0x0112) in _ROTATED:
                width, height = height, width
        facts = ImageFacts((width, height), digest, phash(image), None)
    except ImageError as error:
        facts = ImageFacts(None, digest, None, error.reason)
    with _facts_lock:
        _facts_cache[key] = facts
    return facts


def all_facts(paths: Sequence[Path], workers: int | None = None) -> list[ImageFacts]:
    """`image_facts` of every path, in order, decoded in threads (Pillow and hashlib release the GIL)."""
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1, thread_name_prefix="wildvision-photos") as pool:
        return list(pool.map(image_facts, paths))


def near_pairs(hashes: Sequence[int | None], threshold: int = PHASH_THRESHOLD) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every i < j whose pHashes differ in at most `threshold` bits (None: no hash)."""
    known = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    values = np.array([hashes[i] for i in known], dtype=np.uint64)
    pairs = []
    step = max(1, NEAR_PAIRS_BLOCK // max(1, len(values)))  # rows per block, so a block's XOR stays near 64 MB at any size
    for start in range(0, len(values), step):  # a block of rows against the hashes from its first on: bounded memory
        distances = np.bitwise_count(values[start : start + step, None] ^ values[None, start:])
        rows, columns = np.nonzero(distances <= threshold)
        for row, column in zip(rows.tolist(), columns.tolist()):
            if row < column:
                pairs.append((int(known[start + row]), int(known[start + column]), int(distances[row, column])))
    return pairs


def matches(sha256s: Sequence[str], phashes: Sequence[int | None], threshold: int = PHASH_THRESHOLD) -> list[tuple[int, int, int]]:
    """(i, j, distance) for files that are the same photo: near pHashes, and identical bytes at distance 0 (each file
    joined to the first with its SHA-256; also files that could not be decoded). An empty SHA-256 (no bytes) never matches."""
    pairs = near_pairs(phashes, threshold)
    first: dict[str, int] = {}
    for index, digest in enumerate(sha256s):
        if digest and first.setdefault(digest, index) != index:
            pairs.append((first[digest], index, 0))
    return pairs


def components(count: int, pairs: Sequence[tuple[int, int, int]]) -> list[int]:
    """The group label of each of `count` files joined by `pairs` (connected components: a copy of a copy is the
    same photo); a file with no match is a group of its own."""
    rows = np.array([i for i, _, _ in pairs], dtype=np.int64)
    columns = np.array([j for _, j, _ in pairs], dtype=np.int64)
    _, labels = connected_components(coo_matrix((np.ones(len(pairs)), (rows, columns)), shape=(count, count)), directed=False)
    return labels.tolist()


def duplicate_group_ids(sha256s: Sequence[str], phashes: Sequence[int | None], threshold: int = PHASH_THRESHOLD) -> list[int | None]:
    """Per row, the row number (from 1) of the first row that is the same photo: identical bytes or pHashes at most
    `threshold` bits apart, joined transitively (a copy of a copy); None for a row with no bytes to compare."""
    labels = components(len(sha256s), matches(sha256s, phashes, threshold))
    smallest: dict[int, int] = {}
    for index, label in enumerate(labels):
        smallest.setdefault(label, index)
    return [smallest[label] + 1 if sha256s[index] else None for index, label in enumerate(labels)]


def overlaps(files: Sequence[ImageFacts], references: Sequence[ImageFacts], threshold: int = PHASH_THRESHOLD) -> list[tuple[int, int, int]]:
    """(file index, reference index, distance) for each of `files` that is the same photo as a reference directly
    (not through other files): identical bytes (distance 0) or pHashes at most `threshold` bits apart; in file, then
    reference order. For asking whether files about to be exported for training are test-set photos."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for index, facts in enumerate(references):
        by_sha[facts.sha256].append(index)
    hashed = [index for index, facts in enumerate(references) if facts.phash is not None]
    hashes = np.array([references[index].phash for index in hashed], dtype=np.uint64)
    found = []
    for number, facts in enumerate(files):
        near = dict.fromkeys(by_sha.get(facts.sha256, []) if facts.sha256 else [], 0)
        if facts.phash is not None and len(hashes):
            distances = np.bitwise_count(hashes ^ np.uint64(facts.phash))
            for position in np.nonzero(distances <= threshold)[0].tolist():
                near.setdefault(hashed[position], int(distances[position]))
        found += [(number, index, distance) for index, distance in sorted(near.items())]
    return found


def test_duplicates(train: Sequence[Path], tests: Mapping[str, Sequence[Path]], threshold: int = PHASH_THRESHOLD) -> dict[str, list[tuple[Path, Path]]]:
    """Per test set, its images that are one photo (identical or near, transitively) with a training image, as
    (test image, training image) pairs, sorted: such a test set's scores overstate how well the model does on
    unseen photos. Test sets with none are left out."""
    paths = list(train) + [path for name in tests for path in tests[name]]
    names = [None] * len(train) + [name for name in tests for _ in tests[name]]
    facts = all_facts(paths)
    labels = components(len(paths), matches([f.sha256 for f in facts], [f.phash for f in facts], threshold))
    first_training: dict[int, Path] = {}
    for index in range(len(train)):  # each group's training image with the smallest path
        first_training[labels[index]] = min(paths[index], first_training.get(labels[index], paths[index]), key=str)
    leaks: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    for index in range(len(train), len(paths)):
        if labels[index] in first_training:
            leaks[names[index]].append((paths[index], first_training[labels[index]]))
    return {name: sorted(leaks[name]) for name in tests if name in leaks}
