"""The one safe way to open an image: every reader in wildvision goes through `open_image`.

It turns every way an image can be bad (missing, empty, truncated, not an image, too many pixels)
into an `ImageError` whose message names the file, and returns upright RGB pixels whatever the mode.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS_ENV = "WILDVISION_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 50_000_000  # a 7,000 x 7,000 photo passes; a decompression bomb does not


class ImageError(ValueError):
    """An image that cannot be used; str() is one line naming the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels of any Pillow mode; transparent areas become white, as a web page would show them."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda value: value / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def max_image_pixels() -> int:
    """The per-image pixel limit: $WILDVISION_MAX_IMAGE_PIXELS, else 50 million."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    return int(value) if value.strip().isdigit() else DEFAULT_MAX_PIXELS


def open_image(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode `path` fully into an upright RGB image, or raise ImageError saying why it cannot be used.

    `draft`: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale, no smaller than this size, which is several
    times faster when only a thumbnail is needed (perceptual hashes); other formats ignore it.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                limit = max_image_pixels()
                if image.width * image.height > limit:
                    raise ImageError(path, f"{image.width}x{image.height} pixels is over the limit of {limit:,} (set {MAX_PIXELS_ENV} to change it)")
                image.seek(0)  # animated images: the first frame
                if draft is not None:
                    image.draft("RGB", draft)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return to_rgb(upright)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except UnidentifiedImageError:
        reason = "empty file" if path.stat().st_size == 0 else "not an image Pillow can read"
        raise ImageError(path, reason) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(path, f"too many pixels ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(path, f"corrupt or truncated image ({error})") from None
