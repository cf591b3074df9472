"""Photo identity on generated images: an exact copy, a re-saved smaller copy, a different photo and an unreadable file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from wildvision import photos


def scene(path, seed: int, size=(480, 360)):
    """A picture of a few coloured shapes on a gradient: smooth enough for pHash to see it as a photo."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[0], dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(ramp, (size[1], 1))] * 3, axis=2))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.integers(0, size[0] - 100), rng.integers(0, size[1] - 100)
        draw.ellipse((x, y, x + rng.integers(40, 160), y + rng.integers(40, 160)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    image.save(path, quality=95)
    return path


@pytest.fixture
def files(tmp_path):
    original = scene(tmp_path / "original.jpg", seed=1)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(original.read_bytes())
    smaller = tmp_path / "smaller.jpg"
    with Image.open(original) as image:
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(smaller, quality=60)
    different = scene(tmp_path / "different.jpg", seed=2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    broken_copy = tmp_path / "broken-copy.jpg"
    broken_copy.write_bytes(broken.read_bytes())
    return {"original": original, "copy": copy, "smaller": smaller, "different": different, "broken": broken, "broken_copy": broken_copy}


def test_facts_and_matches_tell_copies_from_a_different_photo(files):
    names = list(files)
    facts = photos.all_facts([files[name] for name in names])
    by_name = dict(zip(names, facts))
    assert by_name["original"].sha256 == by_name["copy"].sha256 == photos.sha256(files["original"])
    assert by_name["original"].size == (480, 360) and by_name["smaller"].size == (240, 180)
    assert by_name["broken"].phash is None and by_name["broken"].error and by_name["broken"].size is None
    distance = lambda a, b: (by_name[a].phash ^ by_name[b].phash).bit_count()
    assert distance("original", "smaller") <= photos.PHASH_THRESHOLD < distance("original", "different")
    grouping = photos.group([f.sha256 for f in facts], [f.phash for f in facts])
    labels = grouping.labels
    groups = {frozenset(n for n, label in zip(names, labels) if label == group) for group in set(labels)}
    assert groups == {frozenset({"original", "copy", "smaller"}), frozenset({"different"}), frozenset({"broken", "broken_copy"})}
    assert labels == [0, 0, 0, 1, 2, 2], "groups numbered in the order of their first file"
    assert grouping.widest == [distance("original", "smaller"), 0, 0], "the copy of broken bytes matches by SHA-256 alone"


def test_the_hash_of_a_full_decode_matches_the_draft_decode_within_the_threshold(files):
    with Image.open(files["original"]) as image:
        full = photos.phash(image.convert("RGB"))
    assert (full ^ photos.image_facts(files["original"]).phash).bit_count() <= 2


def test_duplicate_group_ids_join_copies_of_copies_and_skip_rows_without_bytes():
    a = 0
    b = a ^ 0xFF  # 8 bits from a
    c = b ^ 0xFF00  # 8 bits from b, 16 from a: the same photo only through b
    far = (1 << 64) - 1
    sha256s = ["s1", "s2", "s3", "s4", "s1", ""]
    phashes = [a, far, c, b, None, None]
    assert photos.duplicate_group_ids(sha256s, phashes) == [1, 2, 1, 1, 1, None]
    assert photos.duplicate_group_ids(sha256s, phashes, threshold=4) == [1, 2, 3, 4, 1, None]
    assert photos.duplicate_group_ids([], []) == []


def test_grouping_in_small_blocks_finds_what_one_block_finds(monkeypatch):
    hashes = [int(h) for h in np.random.default_rng(3).integers(0, 2**63, 200, dtype=np.int64)]
    hashes += [h ^ 0b101 for h in hashes[:20]] + [None]
    sha256s = [f"sha{i}" for i in range(len(hashes))]
    whole = photos.group(sha256s, hashes, 8)
    monkeypatch.setattr(photos, "NEAR_PAIRS_BLOCK", 50)
    assert photos.group(sha256s, hashes, 8) == whole
    assert whole.labels[200:] == [*range(20), 200] and whole.widest[:20] == [2] * 20 and set(whole.widest[20:]) == {0}


def test_test_duplicates_names_each_test_image_that_is_a_training_photo(files):
    leaks = photos.test_duplicates([files["original"], files["different"]], {"test_a": [files["smaller"], files["broken"]], "test_b": [files["broken_copy"]]})
    assert leaks == {"test_a": [(files["smaller"], files["original"])]}


def test_overlaps_match_files_to_references_directly(files):
    mine = photos.all_facts([files["copy"], files["different"], files["broken_copy"]])
    theirs = photos.all_facts([files["smaller"], files["original"], files["broken"]])
    found = photos.overlaps(mine, theirs)
    assert found[:2] == [(0, 0, found[0][2]), (0, 1, 0)] and found[0][2] <= photos.PHASH_THRESHOLD
    assert found[2:] == [(2, 2, 0)]


BASE = 0x0123_4567_89AB_CDEF


def flipped(bits: int) -> int:
    """BASE with its lowest `bits` bits flipped: a pHash exactly `bits` bits away from BASE."""
    return BASE ^ ((1 << bits) - 1)


def test_identical_bytes_share_the_first_rows_number_whatever_their_phash():
    assert photos.duplicate_group_ids(["aa", "bb", "aa"], [BASE, flipped(40), None]) == [1, 2, 1]


def test_near_copies_join_at_the_threshold_and_not_one_bit_over():
    at = photos.duplicate_group_ids(["a", "b"], [BASE, flipped(photos.PHASH_THRESHOLD)])
    over = photos.duplicate_group_ids(["a", "b"], [BASE, flipped(photos.PHASH_THRESHOLD + 1)])
    assert at == [1, 1] and over == [1, 2]


def test_a_copy_of_a_copy_joins_the_group_of_the_first_one():
    # row 3 is within the threshold of row 2 only; row 2 of row 1 only: one group, named after row 1
    far = BASE ^ (((1 << photos.PHASH_THRESHOLD) - 1) << photos.PHASH_THRESHOLD)  # 8 other bits flipped: 8 from row 2, 16 from row 1
    hashes = [BASE, flipped(photos.PHASH_THRESHOLD), far ^ ((1 << photos.PHASH_THRESHOLD) - 1)]
    assert photos.duplicate_group_ids(["a", "b", "c"], hashes) == [1, 1, 1]


def test_rows_with_nothing_to_compare_have_no_group_and_join_none():
    # a missing file (no bytes) has no group; a corrupt one has bytes but no pHash: its own group unless its bytes repeat
    groups = photos.duplicate_group_ids(["", "aa", "bb", "aa", ""], [None, None, BASE, None, None])
    assert groups == [None, 2, 3, 2, None]
