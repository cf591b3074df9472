"""Explanation galleries (wildvision/gallery.py, `explain`, the Explanations page) with the shipped model on demo photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import DEMO, wait_until
from wildvision import gallery
from wildvision.cli import main
from wildvision.predict import load_model, predict_paths

# Two captive photos the default model scores below its line and one other photo it scores above it (see the
# gallery of test_out_pet), so every section has something in it.
CAPTIVE = ["asirra-348.jpg", "asirra-485.jpg"]
OTHER = ["flickr8k-2094323311_27d58b1513.jpg"]


@pytest.fixture(scope="module")
def test_folder(shared, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gallery") / "test_small"
    source = DEMO / "test_out_pet"
    for class_name, extra, count in (("captive", CAPTIVE, 5), ("other", OTHER, 7)):
        (root / class_name).mkdir(parents=True)
        for photo in sorted((source / class_name).iterdir())[:count] + [source / class_name / name for name in extra]:
            if not (root / class_name / photo.name).exists():
                (root / class_name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def loaded(shared):
    return load_model("default")


@pytest.fixture(scope="module")
def made(loaded, test_folder, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gallery, "SANITY_IMAGES", 2)  # fewer photos: a quicker sanity check
        return out, gallery.make_gallery(loaded, "test_small", test_folder, out, "saliency", 2, "default model", progress=lambda text: None)


def test_picks_are_each_sections_surest_images(loaded, test_folder, made):
    _, stored = made
    paths = sorted(str(p) for p in test_folder.rglob("*.jpg"))
    scores = {p.path: p.probability for p in predict_paths(loaded, paths)}
    positive = {path: Path(path).parent.name == "captive" for path in paths}
    line = loaded.threshold
    expected = {
        "true_positive": sorted((p for p in paths if positive[p] and scores[p] >= line), key=lambda p: -scores[p]),
        "true_negative": sorted((p for p in paths if not positive[p] and scores[p] < line), key=lambda p: scores[p]),
        "false_positive": sorted((p for p in paths if not positive[p] and scores[p] >= line), key=lambda p: -scores[p]),
        "false_negative": sorted((p for p in paths if positive[p] and scores[p] < line), key=lambda p: scores[p]),
    }
    assert all(expected.values()), {key: len(group) for key, group in expected.items()}  # the subset has every kind
    for section, group in expected.items():
        picks = [p for p in stored["picks"] if p["section"] == section]
        assert [p["path"] for p in picks] == group[:2], section
        assert [p["rank"] for p in picks] == list(range(1, len(picks) + 1))
        for p in picks:
            assert p["probability"] == pytest.approx(scores[p["path"]], abs=1e-4)
            assert p["method"] == "saliency" and p["error"] is None
            assert p["label"] == ("captive" if p["probability"] >= line else "not_captive")
            assert (p["true_class"] == "captive") == (section in ("true_positive", "false_negative"))
        assert stored["summary"][section] == len(group)
    false_positives = [p for p in stored["picks"] if p["section"] == "false_positive"]
    assert all(p["true_class"] != "captive" and p["probability"] >= line for p in false_positives)


def test_gallery_files_are_written_and_open(made):
    out, stored = made
    assert json.loads((out / gallery.JSON).read_text()) == stored
    with Image.open(out / gallery.PNG) as figure:
        assert figure.width == gallery.FIGURE_WIDTH and figure.height > 1000
    assert (out / gallery.PDF).read_bytes()[:5] == b"%PDF-"
    assert stored["sections"][0]["title"] == "Highest captive score, captive"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert all(0 <= p["border_share"] <= 1 for p in stored["picks"])
    sanity = json.loads((out / gallery.SANITY).read_text())
    assert set(sanity["methods"]) == {"saliency", "gradcam", "guided_backprop"}
    assert sanity["images"] == [p["path"] for p in stored["picks"][:2]]
    assert all(len(m["spearman"]) == len(m["stages"]) and isinstance(m["passed"], bool) for m in sanity["methods"].values())


def test_score_text_never_rounds_to_certainty():
    assert gallery.score_text(0.731) == "0.731"
    assert gallery.score_text(0.99996) == "0.99996"
    assert gallery.score_text(0.00002) == "0.00002"


def test_cli_writes_gallery_and_rejects_bad_input(shared, test_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "default", "--test", f"small={test_folder}", "--method", "gradcam", "--top", "1", "--out", str(out), "--no-sanity"]) == 0
    printed = capsys.readouterr().out
    assert "scoring" in printed and "explaining" in printed and str(out / gallery.PNG) in printed
    assert len(json.loads((out / gallery.JSON).read_text())["picks"]) == 4 and not (out / gallery.SANITY).exists()

    assert main(["explain", str(tmp_path / "no-such-run"), "--test", f"small={test_folder}", "--runs-dir", str(tmp_path)]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert main(["explain", "default", "--test", f"gone={tmp_path / 'gone'}", "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explain", "default", "--test", f"other={test_folder / 'other'}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no captive/ folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_background_gallery_is_stored_where_the_dashboard_finds_it(shared, test_folder, tmp_path):
    runs_dir = tmp_path / "runs"
    folder = gallery.start_gallery("default", "small", test_folder, "gradcam", 1, runs_dir=runs_dir, sanity=False)
    assert folder == runs_dir / gallery.DEFAULT_FOLDER / "small-gradcam"
    ready = wait_until(lambda: gallery.stored_galleries("default", runs_dir), lambda found: found and found[0].state != "being made", timeout_s=180)
    (item,) = ready
    assert item.state == "ready", (folder / gallery.CONSOLE).read_text()
    assert (item.test_name, item.method, item.images) == ("small", "gradcam", 4)
    assert item.png.is_file() and item.pdf.is_file()


def test_explanations_page_shows_a_stored_gallery(runs_dir, made):
    out, _ = made
    target = runs_dir / gallery.DEFAULT_FOLDER / "test_small-saliency"
    target.mkdir(parents=True)
    for name in (gallery.PNG, gallery.PDF, gallery.JSON, gallery.SANITY):
        (target / name).write_bytes((out / name).read_bytes())
    at = AppTest.from_file("../app_pages/explanations.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Explanations"
    assert [s.value for s in at.subheader] == ["test_small: Saliency"]
    assert len(at.image) == 1 and "8 photos" in at.image[0].captions[0]
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels == ["Download PNG", "Download PDF"]
    assert any("Sanity check" in caption.value and "guided_backprop" in caption.value for caption in at.caption)
