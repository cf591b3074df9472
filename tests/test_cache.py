"""The decoded-image cache: large originals are decoded once, and a changed file is decoded again."""

import numpy as np
import pytest

from conftest import write_image
from wildvision.cache import REDUCED_SHORT_SIDE, content_hash, open_reduced, reduce
from wildvision.images import ImageError, open_image


def cached_entry(cache, path):
    key = content_hash(path)
    return cache / f"images-{REDUCED_SHORT_SIDE}" / key[:2] / f"{key}.npy"


def test_a_large_image_is_stored_once_at_256_px_short_side(tmp_path):
    path = write_image(tmp_path / "big.jpg", seed=1, size=(1200, 800))
    first = open_reduced(path, tmp_path / "cache")
    assert first.size == (384, 256) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(reduce(open_image(path))))
    entry = cached_entry(tmp_path / "cache", path)
    assert entry.is_file()
    np.save(entry, np.zeros((256, 384, 3), np.uint8))  # a marker: from now on only the cache can return zeros
    assert not np.asarray(open_reduced(path, tmp_path / "cache")).any()


def test_an_edited_image_is_decoded_again(tmp_path):
    path = write_image(tmp_path / "big.png", seed=1, size=(600, 900))
    before = np.asarray(open_reduced(path, tmp_path / "cache"))
    write_image(path, seed=2, size=(600, 900))
    after = np.asarray(open_reduced(path, tmp_path / "cache"))
    assert after.shape == (384, 256, 3) and not np.array_equal(before, after)
    assert np.array_equal(after, np.asarray(reduce(open_image(path))))


def test_small_images_are_not_copied_into_the_cache(tmp_path):
    path = write_image(tmp_path / "small.png", seed=3, size=(300, 200))
    assert np.array_equal(np.asarray(open_reduced(path, tmp_path / "cache")), np.asarray(open_image(path)))
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cache_entry_is_rebuilt(tmp_path):
    path = write_image(tmp_path / "big.png", seed=4, size=(800, 800))
    expected = np.asarray(open_reduced(path, tmp_path / "cache"))
    cached_entry(tmp_path / "cache", path).write_bytes(b"\x93NUMPY truncated")
    assert np.array_equal(np.asarray(open_reduced(path, tmp_path / "cache")), expected)


def test_unreadable_and_missing_images_raise_image_error_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="corrupt.jpg: corrupt or truncated"):
        open_reduced(corrupt, tmp_path / "cache")
    with pytest.raises(ImageError, match="gone.jpg: file not found"):
        open_reduced(tmp_path / "gone.jpg", tmp_path / "cache")
