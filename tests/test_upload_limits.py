"""Predict's uploads capped in number, bytes and pixels (pixels read from headers, before anything decodes them), and
the Predict page showing hostile file names as plain text and writing its CSV safely."""

from __future__ import annotations

import csv
import io
import zipfile

from PIL import Image, ImageFile
from streamlit.testing.v1 import AppTest

from conftest import DEMO, team_settings
from wildvision.settings import load_settings
from wildvision.uploads import UploadLimits, unpack_uploads

BEACON = "![b](http://host/beacon.png).jpg"
FORMULA = "@SUM(1+1).jpg"


def png(size: tuple[int, int], mode: str = "1") -> bytes:
    """A single-colour PNG: a 7000 x 7000 one is a few KB, and 49 megapixels to decode."""
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_small_zip_of_sixty_49_megapixel_pngs_is_cut_at_the_pixel_cap_without_decoding(tmp_path, monkeypatch):
    huge = png((7000, 7000))
    archive = zipped({f"scan{i:02d}.png": huge for i in range(60)})
    assert len(archive) < 100_000, "a small upload"
    limits = UploadLimits.from_settings(load_settings())  # the defaults: 2,000 megapixels in all
    decoded = []
    original_load = ImageFile.ImageFile.load  # what decodes a PNG's pixels
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or original_load(image))  # a spy: still decodes
    batch = unpack_uploads([("scans.zip", archive)], tmp_path / "out", limits)
    assert decoded == [], "headers only: no pixel decoded"
    assert len(batch.images) == 40, "40 x 49 = 1,960 megapixels fit under 2,000; the 41st would not"
    assert batch.notes == [
        "took 40 of the 60 images uploaded: the other 20 would have gone over 2,000 megapixels in all, the most one upload may hold; upload them separately"
    ]
    alone = unpack_uploads([("giant.png", png((20000, 20000))), ("small.png", png((10, 10)))], tmp_path / "alone", limits)
    assert [image.name for image in alone.images] == ["small.png"], "an image over the cap on its own is skipped, the next one kept"
    assert alone.notes == ["giant.png: skipped, over 2,000 megapixels on its own (the most one upload may hold)"]


def test_too_many_files_or_bytes_are_refused_with_the_counts(tmp_path, monkeypatch):
    team_settings(monkeypatch, tmp_path, "[limits]\nupload_files = 5\nupload_megabytes = 1\n")
    limits = UploadLimits.from_settings(load_settings())
    small = png((8, 8), "RGB")
    uploads = [(f"{i}.png", small) for i in range(3)] + [("more.zip", zipped({f"z{i}.png": small for i in range(4)}))]
    batch = unpack_uploads(uploads, tmp_path / "files", limits)
    assert [image.name for image in batch.images] == ["0.png", "1.png", "2.png", "more.zip/z0.png", "more.zip/z1.png"]
    assert batch.notes == ["took 5 of the 7 images uploaded: the other 2 would have gone over 5 images, the most one upload may hold; upload them separately"]

    big = b"\x89PNG" + bytes(400_000)  # 0.4 MB each, against 1 MB in all
    batch = unpack_uploads([(f"big{i}.png", big) for i in range(4)], tmp_path / "bytes", limits)
    assert len(batch.images) == 2
    assert batch.notes == [
        "took 2 of the 4 images uploaded: the other 2 would have gone over 1 MB in all, the most one upload may hold; upload them separately"
    ]


def test_the_predict_page_shows_markdown_names_literally_and_neutralises_csv_cells(shared, runs_dir, downloads):
    photos = [path.read_bytes() for path in sorted((DEMO / "test_out_pet" / "captive").iterdir())[:2]]
    at = AppTest.from_file("../app_pages/predict.py", default_timeout=180).run()
    uploader = at.file_uploader[0]
    uploader.upload("market.zip", zipped({BEACON: photos[0]}), "application/zip")
    uploader.upload(FORMULA, photos[1], "image/jpeg")
    at.run()
    assert not at.exception

    rendered = [element.value for element in [*at.markdown, *at.caption, *at.warning, *at.error, *at.info]]
    rendered += [caption for image in at.image for caption in image.captions]
    assert any("beacon" in text for text in rendered), "the name is shown"
    assert not any("](http" in text for text in rendered), "never a link or an image in Markdown"
    assert any(r"\!\[b\]\(http://host/beacon.png\).jpg" in text for text in rendered)
    table = next(frame.value for frame in at.dataframe if "file" in frame.value.columns)
    assert table["file"].tolist() == [f"market.zip/{BEACON}", FORMULA], "the table's text cells show the names as they are"

    (csv_file,) = set(downloads)
    rows = list(csv.DictReader(io.StringIO(csv_file.decode("utf-8"))))
    assert [row["file"] for row in rows] == [f"market.zip/{BEACON}", f"'{FORMULA}"], "a spreadsheet reads it as text, not as a formula"
