"""The Predict page under Streamlit's AppTest (real uploads, a real trained run), and safe unpacking of uploads."""

from __future__ import annotations

import collections
import csv
import io
import json
import re
import shutil
import stat
import sys
import zipfile

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app_pages.widgets import md
from conftest import DEMO, write_image
from wildvision import model_card, wording
from wildvision.explain import saliency
from wildvision.uploads import UploadLimits, unpack_uploads

PAGE = "../app_pages/predict.py"


@pytest.fixture
def with_model(runs_dir, completed_run):
    shutil.copytree(completed_run, runs_dir / completed_run.name)
    return runs_dir / completed_run.name


@pytest.fixture(scope="module")
def demo_jpegs(shared):
    return [path.read_bytes() for path in sorted((DEMO / "test_out_pet" / "captive").iterdir())[:2]] + [
        path.read_bytes() for path in sorted((DEMO / "test_out_pet" / "other").iterdir())[:1]
    ]


def page(run_dir=None) -> AppTest:
    """The page, with the model of `run_dir` picked (the shipped default model comes first)."""
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    if run_dir is not None:
        pick(at, run_dir.name)
    return at


def pick(at: AppTest, name: str) -> None:
    """Pick the model whose picker label contains `name` ("Default model" for the shipped one)."""
    picker = at.selectbox[0]
    picker.set_value(next(i for i, label in enumerate(picker.options) if name in label)).run()


def verdict_of(at: AppTest, file: str) -> str:
    return next(md.value for md in at.markdown if file in md.value)


def column_width(at: AppTest, column: str) -> int:
    """The width in pixels the results table gives `column` (its column_config; 0 when it sets none)."""
    (table,) = [frame for frame in at.dataframe if "file" in frame.value.columns]
    return json.loads(table.proto.columns)[column].get("width", 0)


def shown_numbers(verdict: str) -> tuple[float, float]:
    """The score and the flagging line, in percent, as a verdict sentence shows them."""
    score, line = re.search(r"score ([\d.]+)%, .* flagging line of ([\d.]+)%$", verdict).groups()
    return float(score), float(line)


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


# --- the page ------------------------------------------------------------------------------------


def test_without_runs_the_shipped_default_model_is_offered(runs_dir):
    at = page()
    assert not at.exception
    assert at.title[0].value == "Predict"
    (picker,) = at.selectbox
    assert picker.options == [f"Default model — {model_card.ARCH}, shipped with wildvision"]
    assert any("Model card" in expander.label for expander in at.expander)
    assert any("Demo model" in warning.value for warning in at.warning)
    assert at.file_uploader, "a fresh install can upload photos at once"
    assert at.slider[0].value == pytest.approx(model_card.load_card()["threshold"]["value"] * 100, abs=0.05), "in percent"


def test_moving_the_threshold_changes_the_verdict_and_its_cost(runs_dir, demo_jpegs):
    at = page()
    at.file_uploader[0].upload("photo.jpg", demo_jpegs[2], "image/jpeg").run()
    (map_caption,) = [caption.value for caption in at.caption if wording.MAP_READINGS["gradcam"] in caption.value]
    assert "far below the flagging line" in map_caption and "not a reason to flag it" in map_caption, "an everyday photo scored about 0%"
    at.slider[0].set_value(0.0).run()
    assert not at.exception
    tradeoff = at.dataframe[0].value
    assert (tradeoff["flagged"] == tradeoff["checked"]).all() and (tradeoff["captive photos found"] == 100).all()
    assert "test_in" not in tradeoff["photos"].tolist(), "test sets in plain words"
    assert verdict_of(at, "photo.jpg").endswith("at or above the flagging line of 0%")
    assert not any("flagging line" in caption.value for caption in at.caption if wording.MAP_READINGS["gradcam"] in caption.value)
    at.slider[0].set_value(100.0).run()
    assert (at.dataframe[0].value["flagged"] <= 1).all()
    assert "Not flagged: score " in verdict_of(at, "photo.jpg") and verdict_of(at, "photo.jpg").endswith("below the flagging line of 100%")
    (map_caption,) = [caption.value for caption in at.caption if wording.MAP_READINGS["gradcam"] in caption.value]
    assert "below the flagging line of 100%" in map_caption, "a map of a photo that was not flagged says what its bright parts are"


def test_switching_models_moves_the_flagging_line_to_each_models_own(with_model, demo_jpegs, tmp_path):
    """The slider once kept the previous model's threshold, so a run's photos were judged at the default model's line."""
    from wildvision.predict import load_model, predict_paths

    default_line = model_card.load_card()["threshold"]["value"] * 100
    run_line = json.loads((with_model / "results.json").read_text())["threshold"]["threshold"] * 100
    assert abs(round(run_line, 1) - round(default_line, 1)) >= 1, "the test needs two models with different lines"
    at = page()
    at.file_uploader[0].upload("kennel.jpg", demo_jpegs[0], "image/jpeg").run()
    assert at.slider[0].value == pytest.approx(default_line, abs=0.05)
    assert shown_numbers(verdict_of(at, "kennel.jpg"))[1] == round(default_line, 1)

    pick(at, with_model.name)
    assert not at.exception
    assert at.slider[0].value == pytest.approx(run_line, abs=0.05), "the run's own threshold, not the default model's"
    verdict = verdict_of(at, "kennel.jpg")
    score, line = shown_numbers(verdict)
    assert line == round(run_line, 1) and f"now {wording.line_text(run_line / 100)}" in " ".join(c.value for c in at.caption)
    kennel = tmp_path / "kennel.jpg"
    kennel.write_bytes(demo_jpegs[0])
    probability = predict_paths(load_model(str(with_model / "checkpoint.pt"), device="cpu"), [kennel])[0].probability
    flagged = probability >= run_line / 100  # the slider, left where it starts, judges at the model's exact threshold
    assert verdict.startswith("**kennel.jpg** — Flagged" if flagged else "**kennel.jpg** — Not flagged"), verdict
    assert (score >= line) == flagged and score == pytest.approx(probability * 100, abs=0.05)

    pick(at, "Default model")
    assert at.slider[0].value == pytest.approx(default_line, abs=0.05)
    assert shown_numbers(verdict_of(at, "kennel.jpg"))[1] == round(default_line, 1)


def test_with_a_model_the_page_offers_it_and_says_how_far_to_trust_it(with_model):
    at = page(with_model)
    assert not at.exception
    (picker,) = at.selectbox
    assert with_model.name in picker.options[1] and "squeezenet1_0" in picker.options[1] and "F =" not in picker.options[1]
    assert any("Demo model" in warning.value for warning in at.warning), "a run on the demo proxy data is a demo"
    results = json.loads((with_model / "results.json").read_text())
    trust = next(caption.value for caption in at.caption if "How far to trust it" in caption.value)
    line = wording.line_text(results["threshold"]["threshold"])
    assert f"Measured at its own flagging line of {line}:" in trust
    pet = results["test_sets"]["test_out_pet"]["at_threshold"]
    assert md(wording.trust_sentence("test_out_pet", pet["positive_precision"], pet["positive_recall"], "captive")) in trust
    assert trust.endswith(wording.TRUST_CAVEAT)
    assert "of every 100 photos it flagged" in trust and "F =" not in trust and "test_out_pet" not in trust
    (uploader,) = at.file_uploader
    assert uploader.accept_multiple_files and {"jpg", "jpeg", "png", "webp", "zip"} <= {t.lstrip(".") for t in uploader.allowed_type}
    (maps,) = at.radio
    assert maps.options == [wording.MAP_NAMES["gradcam"], wording.MAP_NAMES["saliency"]] and maps.value == "gradcam"
    assert {method for method, name in wording.MAP_NAMES.items() if name in maps.options} == set(saliency.FAST_METHODS)
    assert any("Upload one or more photos" in info.value for info in at.info)


def test_one_photo_gets_a_plain_verdict_a_saliency_map_and_integrated_gradients_on_request(with_model, demo_jpegs):
    at = page(with_model)
    at.file_uploader[0].upload("kennel.jpg", demo_jpegs[0], "image/jpeg").run()
    assert not at.exception
    verdict = verdict_of(at, "kennel.jpg")
    assert re.search(r"— (Flagged as captive / for sale: score [\d.]+%, at or above|Not flagged: score [\d.]+%, below) the flagging line", verdict)
    assert [image.captions for image in at.image] == [["Photo"], [wording.MAP_NAMES["gradcam"]]], "the readable map by default"
    assert any(wording.MAP_READINGS["gradcam"] in caption.value for caption in at.caption)

    at.radio[0].set_value("saliency").run()
    assert not at.exception
    assert [image.captions for image in at.image] == [["Photo"], [wording.MAP_NAMES["saliency"]]], "the paper's map, one click away"

    (button,) = at.button
    button.click().run()
    assert not at.exception
    assert [image.captions for image in at.image] == [["Photo"], [wording.MAP_NAMES["saliency"]], ["A steadier map (slower)"]]
    assert not at.button, "the button goes once its map is shown"
    assert not any("Integrated Gradients" in element.value for element in [*at.caption, *at.markdown])


def test_many_files_give_a_table_and_bad_ones_a_line_each(with_model, demo_jpegs, tmp_path):
    archive = zip_bytes(
        {"kennel/a.jpg": demo_jpegs[1], "../evil.jpg": demo_jpegs[1], "notes.txt": b"hello", "__MACOSX/._a.jpg": b"x"},
        symlinks={"link.jpg": "/etc/passwd"},
    )
    at = page(with_model)
    uploader = at.file_uploader[0]
    uploader.upload("one.jpg", demo_jpegs[0], "image/jpeg")
    uploader.upload("two.jpg", demo_jpegs[2], "image/jpeg")
    uploader.upload("broken.jpg", b"not really a jpeg", "image/jpeg")
    uploader.upload("photos.zip", archive, "application/zip")
    at.run()
    assert not at.exception
    (problems,) = at.warning[1:]  # the first warning is the demo-model one
    assert "broken.jpg: not a photo this page can read" in problems.value
    assert "evil.jpg" in problems.value and "symbolic link" in problems.value and "not an image" in problems.value
    assert "_a.jpg" not in problems.value, "archiver metadata is passed over silently"
    table = next(frame.value for frame in at.dataframe if "file" in frame.value.columns)  # the first is the threshold trade-off
    assert table["file"].tolist() == ["one.jpg", "two.jpg", "broken.jpg", "photos.zip/kennel/a.jpg"]
    assert table["note"][2] == "Not a photo this page can read" and not table["note"][[0, 1, 3]].str.startswith("Not a photo").any()
    assert table["flagged"][2] == "Could not be read" and set(table["flagged"][[0, 1, 3]]) <= {"Flagged", "Not flagged"}
    assert table["score"].dropna().between(0, 100).all()
    assert table["thumbnail"].str.startswith("data:image/jpeg;base64,").all()
    assert at.subheader[0].value.startswith("3 photos scored") and "1 could not be read" in at.subheader[0].value
    assert len(at.get("download_button")) == 1
    grid = [image.captions[0] for image in at.image if image.captions[0] not in ("Photo", wording.MAP_NAMES["gradcam"])]
    assert len(grid) == 3 and all(re.search(r": (Not flagged|Flagged) \([\d.]+%\)$", c) for c in grid)


def test_an_unreadable_photo_in_a_batch_has_a_placeholder_its_full_reason_and_a_clean_csv(with_model, demo_jpegs, downloads):
    at = page(with_model)
    uploader = at.file_uploader[0]
    uploader.upload("one.jpg", demo_jpegs[0], "image/jpeg")
    uploader.upload("two.jpg", demo_jpegs[2], "image/jpeg")
    uploader.upload("broken.jpg", b"not an image", "image/jpeg")
    at.run()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "file" in frame.value.columns)
    cells = [cell for column in table.columns if table[column].dtype == object for cell in table[column]]
    assert all(cell is not None and str(cell) != "None" for cell in cells), "no cell reads None"
    assert table["thumbnail"].str.startswith("data:image/jpeg;base64,").all(), "the broken file gets a placeholder tile"
    assert table["note"][2] == "Not a photo this page can read", "short enough for its cell"
    reason = "not a photo this page can read (a damaged file, or not a JPEG, PNG or WebP photo)"
    assert any(md(f"broken.jpg: {reason}") in warning.value for warning in at.warning), "the full reason, in the list above"

    (csv_file,) = set(downloads)
    rows = list(csv.DictReader(io.StringIO(csv_file.decode("utf-8"))))
    assert [row["file"] for row in rows] == ["one.jpg", "two.jpg", "broken.jpg"]
    line = json.loads((with_model / "results.json").read_text())["threshold"]["threshold"]  # the slider is where it starts: the exact line
    assert at.slider[0].value == round(line * 100, 1)
    assert {row["flagging_line"] for row in rows} == {str(round(line, 4))}
    for row in rows[:2]:
        assert re.fullmatch(r"[01](\.\d{1,4})?", row["probability"]), f"no float noise: {row['probability']}"
        assert row["label"] == ("captive" if float(row["probability"]) >= line else "not_captive") and row["problem"] == ""
    assert rows[2]["probability"] == "" and rows[2]["label"] == "" and rows[2]["problem"] == reason


def test_a_photo_unlike_the_training_photos_carries_a_plain_caution(runs_dir, downloads):
    """The default model keeps a summary of its training photos: a street scene from test_out_nopet lies far from them,
    a captive pet from its own training folder does not (novelty scores 0.72 and 0.14 against a warning level of 0.56)."""
    unlike = sorted((DEMO / "test_out_nopet" / "other").iterdir())[1]
    familiar = sorted((DEMO / "train" / "captive").iterdir())[1]
    at = page()
    at.file_uploader[0].upload("street.jpg", unlike.read_bytes(), "image/jpeg").upload("pet.jpg", familiar.read_bytes(), "image/jpeg").run()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "file" in frame.value.columns)
    assert table.set_index("file")["note"].to_dict() == {"street.jpg": wording.UNLIKE_TRAINING_SHORT, "pet.jpg": ""}
    assert column_width(at, "note") >= 8 * len("the photo is damaged or cut short"), "a note is never cut off (about 7 px a letter)"
    (csv_file,) = set(downloads)
    assert {row["file"]: row["unusual"] for row in csv.DictReader(io.StringIO(csv_file.decode("utf-8")))} == {
        "street.jpg": "unlike the training photos",
        "pet.jpg": "",
    }
    assert any(wording.UNLIKE_TRAINING in warning.value for warning in at.warning), "the close look at the first photo says so"
    at.selectbox[-1].set_value(1).run()
    assert not any(wording.UNLIKE_TRAINING in warning.value for warning in at.warning)


def test_the_page_runs_inside_the_dashboards_navigation(with_model, demo_jpegs):
    at = AppTest.from_file("../Home.py", default_timeout=120).run()
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception
    assert at.title[0].value == "Predict"
    at.file_uploader[0].upload("kennel.jpg", demo_jpegs[0], "image/jpeg").run()
    assert not at.exception
    assert [image.captions for image in at.image] == [["Photo"], [wording.MAP_NAMES["gradcam"]]]


def test_a_broken_checkpoint_is_a_plain_message(with_model):
    (with_model / "checkpoint.pt").write_bytes(b"this is not a checkpoint")
    at = page(with_model)
    assert not at.exception
    assert "This model cannot be used" in at.error[0].value


# --- safe unpacking ------------------------------------------------------------------------------


def png_bytes(tmp_path, seed: int) -> bytes:
    return write_image(tmp_path / f"source{seed}.png", seed).read_bytes()


def test_zip_members_are_written_under_our_names_and_unsafe_ones_are_skipped(tmp_path):
    image = png_bytes(tmp_path, 1)
    archive = zip_bytes(
        {"a/b/c.png": image, "../../escape.png": image, "/etc/abs.png": image, "C:/win.png": image, "readme.md": b"#", "a/": b""},
        symlinks={"a/link.png": "../../../etc/passwd"},
    )
    out = tmp_path / "out"
    batch = unpack_uploads([("p.zip", archive), ("single.png", image), ("doc.pdf", b"%PDF")], out)
    assert [i.name for i in batch.images] == ["p.zip/a/b/c.png", "single.png"]
    assert sorted(p.name for p in out.iterdir()) == ["00001.png", "00002.png"]
    assert batch.images[0].path.read_bytes() == image and batch.images[0].digest == batch.images[1].digest
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()
    notes = "\n".join(batch.notes)
    assert "escape.png" in notes and "leads outside the zip" in notes
    assert "abs.png" in notes and "win.png" in notes and "absolute path" in notes
    assert "a/link.png" in notes and "symbolic link" in notes
    assert "readme.md" in notes and "doc.pdf" in notes


def test_zip_limits_cap_members_sizes_and_images(tmp_path):
    image = png_bytes(tmp_path, 2)
    many = zip_bytes({f"{i}.png": image for i in range(12)})
    batch = unpack_uploads([("many.zip", many)], tmp_path / "a", UploadLimits(max_zip_members=10))
    assert not batch.images and "12 entries" in batch.notes[0]

    batch = unpack_uploads([("many.zip", many)], tmp_path / "b", UploadLimits(max_images=5))
    assert len(batch.images) == 5 and "took 5 of the 12 images uploaded" in batch.notes[0]

    big = zip_bytes({"big.png": image + b"\0" * 5000, "small.png": image})
    batch = unpack_uploads([("big.zip", big)], tmp_path / "c", UploadLimits(max_member_bytes=len(image) + 100))
    assert [i.name for i in batch.images] == ["big.zip/small.png"] and "big.png" in batch.notes[0]

    bomb = zip_bytes({f"{i}.png": b"\0" * 100_000 for i in range(5)})  # compresses to almost nothing
    batch = unpack_uploads([("bomb.zip", bomb)], tmp_path / "d", UploadLimits(max_total_bytes=250_000))
    assert len(batch.images) == 2 and "took 2 of the 5 images uploaded: the other 3 would have gone over 0.24 MB in all" in batch.notes[0]

    batch = unpack_uploads([("fake.zip", b"PK not a zip")], tmp_path / "e")
    assert not batch.images and "not a readable zip" in batch.notes[0]


# --- decodes -------------------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch) -> collections.Counter:
    """How often each file goes through wildvision.images.open_image, counted by a wrapper around the real function.

    Every module that imported open_image holds its own name for it, so the wrapper replaces each of them.
    """
    from wildvision import images

    counts: collections.Counter = collections.Counter()
    real = images.open_image

    def counted(path):
        counts[str(path)] += 1
        return real(path)

    for module in list(sys.modules.values()):
        if getattr(module, "open_image", None) is real:
            monkeypatch.setattr(module, "open_image", counted)
    st.cache_data.clear()  # another test's uploads of the same photos must not have been decoded for this one
    return counts


def test_each_uploaded_photo_is_decoded_once_per_upload(runs_dir, demo_jpegs, decodes):
    at = page()
    uploader = at.file_uploader[0]
    for index, photo in enumerate(demo_jpegs):
        uploader.upload(f"photo{index}.jpg", photo, "image/jpeg")
    at.run()
    assert not at.exception
    assert len(at.image) == 3 + 2, "a map per photo in the grid, and one photo large with its map"
    assert len(decodes) == 3 and set(decodes.values()) == {1}, dict(decodes)

    decodes.clear()
    at.selectbox[1].set_value(2).run()  # look closer at another photo
    at.slider[0].set_value(0.0).run()  # move the flagging line
    assert not at.exception and not decodes, "reruns on the same photos decode nothing"

    another = min((DEMO / "test_out_nopet" / "other").iterdir()).read_bytes()
    uploads = [(f"photo{index}.jpg", photo, "image/jpeg") for index, photo in enumerate([*demo_jpegs, another])]
    at.file_uploader[0].set_value(uploads).run()
    assert not at.exception and len(decodes) == 4 and set(decodes.values()) == {1}, "a new upload: each photo once again"
