import numpy as np
import pytest
from PIL import Image

from conftest import write_image
from wildvision.images import ImageError, open_image


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


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = write_image(tmp_path / "photo.png", seed=1, size=(200, 100))
    monkeypatch.setenv("WILDVISION_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(ImageError, match="200x100 pixels is over the limit of 10,000 .set WILDVISION_MAX_IMAGE_PIXELS"):
        open_image(path)
    monkeypatch.setenv("WILDVISION_MAX_IMAGE_PIXELS", "20000")
    assert open_image(path).size == (200, 100)


def test_palette_transparency_becomes_white_and_an_animation_gives_its_first_frame(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0] * 256)
    palette.save(tmp_path / "clear.png", transparency=0)
    assert open_image(tmp_path / "clear.png").getpixel((1, 1)) == (255, 255, 255)
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((0, 0, 255), (0, 255, 0), (255, 0, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = open_image(tmp_path / "anim.gif")
    assert first.size == (20, 10) and first.getpixel((5, 5)) == (0, 0, 255)


@pytest.mark.parametrize("size", [(1, 1), (5000, 1), (1, 5000), (3, 4000)])
def test_extreme_sizes_and_aspect_ratios_become_model_inputs(tmp_path, size):
    from wildvision.data import eval_transform

    path = write_image(tmp_path / "odd.png", seed=1, size=size)
    assert eval_transform()(open_image(path)).shape == (3, 224, 224)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("truncated.png", None, "corrupt or truncated"),
        ("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "not an image Pillow can read"),
        ("vector.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image Pillow can read"),
    ],
)
def test_truncated_pngs_and_unreadable_formats_are_named(tmp_path, name, content, reason):
    if content is None:
        content = write_image(tmp_path / "whole.png", seed=3, size=(200, 200)).read_bytes()[:5000]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        open_image(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
