"""When two files are the same photo: the one place that says it, for the data check, training, screening and export.

Two images are the same photo when their bytes are identical (SHA-256) or their perceptual hashes (pHash,
64 bits, `imagehash`) differ in at most `PHASH_THRESHOLD` bits. That threshold was measured on the demo
data (5,034 photos): 3,000 resized (x0.35 to x1.5) and re-encoded (JPEG quality 40 to 90) copies of 500
photos were at most 6 bits from their originals, and the closest two unrelated photos were 10 bits apart
(3 such pairs; every pair at 8 bits or fewer was the same photo, shown side by side). pHash distances
are even (each hash has as many bits set as clear around its median), so 8 sits between the two.
Watermarked or cropped copies can be 10 bits or more away and are not caught.

Matches are joined transitively (a copy of a copy is the same photo): `group` gives each file its group without
ever listing pairs of files (thousands of copies of one placeholder would be millions of pairs),
`duplicate_group_ids` numbers the groups by their first file (as screening's scores.csv does),
`test_duplicates` names the test images that are one photo with a training image, and `overlaps` the
files that are directly the same photo as a reference (a test-set image) before they are exported.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
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
NEAR_PAIRS_BLOCK = 2_000_000  # pHash pairs compared at once by _near_values (8 bytes each while XORed: 16 MB)
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


def _near_values(values: np.ndarray, threshold: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(i, j, distance) arrays of the pairs i < j of distinct pHash `values` at most `threshold` bits apart, a block
    of rows at a time: a block's XOR holds about NEAR_PAIRS_BLOCK hashes, so memory is bounded at any size."""
    step = max(1, NEAR_PAIRS_BLOCK // max(1, len(values)))
    for start in range(0, len(values), step):  # a block of rows against the values from its first on
        distances = np.bitwise_count(values[start : start + step, None] ^ values[None, start:])
        rows, columns = np.nonzero(distances <= threshold)
        later = rows < columns
        rows, columns = rows[later], columns[later]
        yield start + rows, start + columns, distances[rows, columns]


def _merge(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`labels` (each node's group so far) with the groups of each (first, second) node pair joined: a graph of the
    nodes and one node per label, each node tied to its label's and each pair's labels tied together."""
    count = len(labels)
    rows = np.concatenate([np.arange(count), count + labels[first]])
    columns = np.concatenate([count + labels, count + labels[second]])
    graph = coo_matrix((np.ones(len(rows), dtype=bool), (rows, columns)), shape=(2 * count, 2 * count))
    return connected_components(graph, directed=False)[1][:count]  # the nodes come first: their labels are below count


@dataclass(frozen=True)
class Grouping:
    """Which files are one photo. `labels`: per file, its group, numbered 0, 1, ... in the order of each group's first
    file (a file with no match is a group of its own); `widest`: per group, the largest pHash distance of a near
    match in it (0 when its files match by identical bytes or equal pHashes only)."""

    labels: list[int]
    widest: list[int]


def group(sha256s: Sequence[str], phashes: Sequence[int | None], threshold: int = PHASH_THRESHOLD) -> Grouping:
    """Files joined into groups by identical bytes (equal, non-empty SHA-256) or pHashes at most `threshold` bits
    apart, transitively (a copy of a copy is the same photo).

    Never all pairs of files: 20,000 copies of one placeholder are 2x10^8 pairs. Files with the same SHA-256 are one
    node and files with the same pHash another; only the distinct pHash values are compared (_near_values, in bounded
    blocks), and their near pairs are joined block by block, so memory grows with the number of files, not pairs.
    """
    count = len(sha256s)
    known = np.array([index for index, value in enumerate(phashes) if value is not None], dtype=np.int64)
    values, value_of = np.unique(np.array([phashes[index] for index in known], dtype=np.uint64), return_inverse=True)
    value_group = np.arange(len(values))
    value_widest = np.zeros(len(values), dtype=np.int64)
    for first, second, distances in _near_values(values, threshold):
        if len(first):
            value_group = _merge(value_group, first, second)
            np.maximum.at(value_widest, first, distances)
    sha_node: dict[str, int] = {}
    by_sha = [(index, sha_node.setdefault(digest, len(sha_node))) for index, digest in enumerate(sha256s) if digest]
    # the graph: files (0 .. count-1), then SHA-256 nodes, then pHash groups; each file joined to its two nodes
    rows = np.concatenate([np.array([index for index, _ in by_sha], dtype=np.int64), known])
    columns = np.concatenate([count + np.array([node for _, node in by_sha], dtype=np.int64), count + len(sha_node) + value_group[value_of]])
    size = count + len(sha_node) + len(values)
    _, labels = connected_components(coo_matrix((np.ones(len(rows), dtype=bool), (rows, columns)), shape=(size, size)), directed=False)
    _, first_file, numbered = np.unique(labels[:count], return_index=True, return_inverse=True)
    rank = np.empty(len(first_file), dtype=np.int64)
    rank[np.argsort(first_file)] = np.arange(len(first_file))
    file_group = rank[numbered]
    group_widest = np.zeros(len(first_file), dtype=np.int64)
    component_widest = np.zeros(len(values), dtype=np.int64)
    np.maximum.at(component_widest, value_group, value_widest)
    np.maximum.at(group_widest, file_group[known], component_widest[value_group[value_of]])
    return Grouping(file_group.tolist(), group_widest.tolist())


def duplicate_group_ids(sha256s: Sequence[str], phashes: Sequence[int | None], threshold: int = PHASH_THRESHOLD) -> list[int | None]:
    """Per row, the row number (from 1) of the first row that is the same photo: identical bytes or pHashes at most
    `threshold` bits apart, joined transitively (a copy of a copy); None for a row with no bytes to compare."""
    labels = group(sha256s, phashes, threshold).labels
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
    labels = group([f.sha256 for f in facts], [f.phash for f in facts], threshold).labels
    first_training: dict[int, Path] = {}
    for index in range(len(train)):  # each group's training image with the smallest path
        first_training[labels[index]] = min(paths[index], first_training.get(labels[index], paths[index]), key=str)
    leaks: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    for index in range(len(train), len(paths)):
        if labels[index] in first_training:
            leaks[names[index]].append((paths[index], first_training[labels[index]]))
    return {name: sorted(leaks[name]) for name in tests if name in leaks}
