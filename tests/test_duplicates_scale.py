"""Thousands of copies of one photo (a scrape's "image not available" placeholder) are grouped without holding every
pair of copies: the screening job's final merge, the Data page's groups and a real screening job over such a folder."""

from __future__ import annotations

import csv
import hashlib
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from conftest import DEMO
from helpers import read_scores
from wildvision import photos
from wildvision.datacheck import Entry, check_data, duplicate_groups, match_words
from wildvision.photos import ImageFacts
from wildvision.screening.config import PARTS, read_config
from wildvision.screening.job import screen
from wildvision.screening.merge import write_scores
from wildvision.screening.scoring import PART_COLUMNS

COPIES = 5_000  # the quadratic grouping held 12.5 million pairs for these (about 1.5 GB under tracemalloc)
BOUND_MB = 64  # peak traced memory allowed for grouping them with as many distinct photos


def hex_sha(number: int) -> str:
    return hashlib.sha256(str(number).encode()).hexdigest()


def placeholder_and_distinct(copies: int, distinct: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`copies` files with one SHA-256 and pHash, then `distinct` files with their own SHA-256 and random pHashes."""
    rng = np.random.default_rng(seed)
    randoms = [int(h) for h in rng.integers(0, 2**63, distinct, dtype=np.int64)]
    return [hex_sha(-1)] * copies + [hex_sha(i) for i in range(distinct)], [0x0F0F_F0F0_1234_5678] * copies + randoms


def peak_mb(work):
    """(work's result, its peak traced memory in MB)."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_thousands_of_copies_of_one_photo_get_one_group_ids_in_bounded_memory():
    sha256s, phashes = placeholder_and_distinct(COPIES, COPIES)
    groups, peak = peak_mb(lambda: photos.duplicate_group_ids(sha256s, phashes))
    assert groups[:COPIES] == [1] * COPIES
    assert groups[COPIES:] == list(range(COPIES + 1, 2 * COPIES + 1)), "random 64-bit pHashes are never 8 bits apart"
    assert peak < BOUND_MB, f"grouping {2 * COPIES:,} files peaked at {peak:.0f} MB"


def test_the_data_pages_groups_of_thousands_of_copies_need_no_pairs():
    sha256s, phashes = placeholder_and_distinct(COPIES, COPIES)
    entries = [Entry(Path(f"/data/wild/photo-{i:05d}.jpg"), "train", "wild", False, False) for i in range(2 * COPIES)]
    facts = [ImageFacts((640, 480), sha, phash, None) for sha, phash in zip(sha256s, phashes)]
    groups, peak = peak_mb(lambda: duplicate_groups(entries, facts))
    (group,) = groups
    assert len(group.members) == COPIES and group.identical and group.distance == 0 and match_words(group) == "identical files"
    assert peak < BOUND_MB, f"the Data page's groups of {2 * COPIES:,} files peaked at {peak:.0f} MB"


def brute_force_groups(sha256s, phashes, threshold):
    """The definition, pair by pair, for small inputs: (component label per file, largest pHash gap per label)."""
    count = len(sha256s)
    edges = []
    for i in range(count):
        for j in range(i + 1, count):
            if sha256s[i] and sha256s[i] == sha256s[j]:
                edges.append((i, j, 0))
            if phashes[i] is not None and phashes[j] is not None and (phashes[i] ^ phashes[j]).bit_count() <= threshold:
                edges.append((i, j, (phashes[i] ^ phashes[j]).bit_count()))
    rows, columns = [i for i, _, _ in edges], [j for _, j, _ in edges]
    _, labels = connected_components(coo_matrix((np.ones(len(edges)), (rows, columns)), shape=(count, count)), directed=False)
    widest: dict[int, int] = {}
    for i, _, distance in edges:
        widest[labels[i]] = max(widest.get(labels[i], 0), distance)
    return labels.tolist(), widest


def mixed_input(seed: int) -> tuple[list[str], list[int | None]]:
    """Identical files, equal pHashes with other bytes, near copies and chains of them, hashes at the threshold and
    one bit over, undecodable files (no pHash) with repeated bytes, missing files (no bytes), and distinct photos."""
    rnd = random.Random(seed)
    sha256s: list[str] = []
    phashes: list[int | None] = []
    for base in range(30):
        value = rnd.getrandbits(64)
        for copy in range(rnd.randint(1, 6)):
            kind = rnd.choice(["identical", "same phash", "near", "chain", "over", "undecodable", "missing"])
            flips = {"near": rnd.randint(1, 8), "chain": 8, "over": 9}.get(kind, 0)
            bits = rnd.sample(range(64), flips)
            if kind == "chain" and phashes and phashes[-1] is not None:
                value = phashes[-1]
            sha256s.append("" if kind == "missing" else hex_sha(base) if kind in ("identical", "undecodable") else hex_sha(1000 * base + copy))
            phashes.append(None if kind in ("undecodable", "missing") else value ^ sum(1 << bit for bit in bits))
    order = list(range(len(sha256s)))
    rnd.shuffle(order)
    return [sha256s[i] for i in order], [phashes[i] for i in order]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block", [photos.NEAR_PAIRS_BLOCK, 7])
def test_groups_are_those_of_every_pair_on_a_mixed_input(monkeypatch, seed, block):
    monkeypatch.setattr(photos, "NEAR_PAIRS_BLOCK", block)  # a few distinct values per block: pairs across blocks count too
    sha256s, phashes = mixed_input(seed)
    for threshold in (4, photos.PHASH_THRESHOLD):
        labels, widest = brute_force_groups(sha256s, phashes, threshold)
        first = {label: labels.index(label) + 1 for label in labels}
        assert photos.duplicate_group_ids(sha256s, phashes, threshold) == [first[label] if sha else None for label, sha in zip(labels, sha256s)]
        entries = [Entry(Path(f"{i:03d}.jpg"), "train", "wild", False, False) for i in range(len(sha256s))]
        facts = [ImageFacts(None, sha, phash, None) for sha, phash in zip(sha256s, phashes)]
        expected = {}
        for label in set(labels):
            members = [i for i, other in enumerate(labels) if other == label]
            if len(members) > 1:
                expected[frozenset(f"{i:03d}.jpg" for i in members)] = (len({sha256s[i] for i in members}) == 1, widest.get(label, 0))
        found = {frozenset(m.path.name for m in g.members): (g.identical, g.distance) for g in duplicate_groups(entries, facts, threshold)}
        assert found == expected


def write_part(screen_dir: Path, rows: list[list]) -> None:
    (screen_dir / PARTS).mkdir(exist_ok=True)
    with open(screen_dir / PARTS / "part-000000000.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PART_COLUMNS)
        writer.writerows(rows)


def test_a_job_and_the_data_check_over_hundreds_of_copies_of_one_photo_find_one_group_and_the_merge_scales(shared, tmp_path):
    folder = tmp_path / "scrape"
    (folder / "wild").mkdir(parents=True)
    (folder / "captive").mkdir()
    placeholder = min((DEMO / "test_out_pet" / "other").iterdir()).read_bytes()
    for number in range(300):
        (folder / "wild" / f"listing-{number:03d}.jpg").write_bytes(placeholder)
    others = sorted((DEMO / "test_out_pet" / "captive").iterdir())[:4]
    for photo in others:
        (folder / "captive" / photo.name).write_bytes(photo.read_bytes())

    screen_dir = screen([str(folder)], screens_dir=tmp_path / "screens", name="placeholders")

    rows = read_scores(screen_dir)
    copies = [row for row in rows if Path(row["path"]).name.startswith("listing-")]
    assert len(copies) == 300 and len({row["duplicate_group"] for row in copies}) == 1
    assert len({row["duplicate_group"] for row in rows}) == 1 + len(others)
    (group,) = check_data([folder]).groups
    assert {m.path.name for m in group.members} == {row_name(row) for row in copies} and group.identical

    # the job's final merge over a part holding thousands of the copy's scored row, as a bigger scrape leaves it
    phash = f"{0x0F0F_F0F0_1234_5678:016x}"
    part = [
        [i, str(folder / "wild" / f"listing-{i:05d}.jpg"), copies[0]["sha256"], phash, copies[0]["probability"], copies[0]["label"], "", ""]
        for i in range(COPIES)
    ]
    write_part(screen_dir, part)
    counts, peak = peak_mb(lambda: write_scores(screen_dir, read_config(screen_dir)))
    assert counts["files"] == COPIES and counts["distinct_photos"] == 1
    assert {row["duplicate_group"] for row in read_scores(screen_dir)} == {"1"}
    assert peak < BOUND_MB, f"merging {COPIES:,} copies peaked at {peak:.0f} MB"


def row_name(row: dict) -> str:
    return Path(row["path"]).name
