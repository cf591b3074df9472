import numpy as np
import pytest
from PIL import Image

from wildvision.images import ImageError, open_image
from conftest import write_image


def test_every_pillow_mode_becomes_rgb(tmp_path):
    for mode, suffix in [("L", "png"), ("P", "png"), ("RGBA", "png"), ("LA", "png"), ("1", "png"), ("CMYK", "jpg"), ("I;16", "png")]:
        path = write_image(tmp_path / f"{mode.replace(';', '')}.{suffix}", seed=1, mode=mode)
        image = open_image(path)
        assert image.mode == "RGB" and image.size == (64, 48), mode


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(path)
    assert open_image(path).getpixel((5, 5)) == (255, 255, 255)


def test_exif_rotated_photo_is_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8)).save(path, exif=exif)
    assert open_image(path).size == (40, 80)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"this is text, not a picture", "not an image"), (None, "truncated")],
)
def test_bad_files_get_a_one_line_reason_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is None:
        write_image(tmp_path / "good.jpg", seed=2, size=(300, 300))
        content = (tmp_path / "good.jpg").read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        open_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 100 megapixels in a few kB
    with pytest.raises(ImageError, match="pixels"):
        open_image(path)
