"""Explanation galleries (wildvision/explain/gallery.py, `explain`, the Explanations page) with the shipped model on demo photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import DEMO, wait_until
from helpers import pdf_page_sizes
from wildvision import catalog
from wildvision.cli import main
from wildvision.explain import checks, gallery, gallery_jobs, saliency
from wildvision.predict import load_model, predict_paths

# Two captive photos the default model scores below its line and one other photo it scores above it (see the
# gallery of test_out_pet), so every section has something in it.
CAPTIVE = ["asirra-348.jpg", "asirra-485.jpg"]
OTHER = ["flickr8k-2094323311_27d58b1513.jpg"]
BORDER = 0.3  # a lower border threshold than the real one (0.5), so that some of these photos' maps qualify
SECTIONS = ("true_positive", "true_negative", "false_positive", "false_negative", "border")


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
        patch.setattr(gallery, "CHECK_IMAGES", 2)  # fewer photos: quicker checks
        patch.setattr(gallery, "BORDER_THRESHOLD", BORDER)
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


def test_border_heavy_maps_are_found_among_all_the_photos(loaded, test_folder, made):
    _, stored = made
    paths = sorted(str(p) for p in test_folder.rglob("*.jpg"))
    small = saliency.examine(loaded, paths, "saliency", display_max=gallery.SCAN_SIDE)
    shares = {e.path: checks.border_share(e.explanation.heatmap) for e in small}
    scores = {e.path: e.explanation.probability for e in small}
    heavy = sorted((p for p in paths if shares[p] >= BORDER and scores[p] >= loaded.threshold), key=lambda p: -shares[p])
    assert 2 < len(heavy) < sum(scores[p] >= loaded.threshold for p in paths), {Path(p).name: round(share, 2) for p, share in shares.items()}
    scan = stored["summary"]["border_scan"]
    assert (scan["method"], scan["threshold"]) == ("saliency", BORDER)
    assert [image["path"] for image in scan["images"]] == heavy
    assert [image["border_share"] for image in scan["images"]] == pytest.approx([shares[p] for p in heavy], abs=1e-4)
    border_picks = [p for p in stored["picks"] if p["section"] == "border"]
    assert [p["path"] for p in border_picks] == heavy[:2] and stored["summary"]["border"] == len(heavy)


def test_gallery_files_are_written_and_open(made):
    out, stored = made
    assert json.loads((out / gallery.JSON).read_text()) == stored
    assert (out / gallery.PDF).read_bytes()[:5] == b"%PDF-"
    assert stored["pages"] == [gallery.page_file(n) for n in range(1, len(stored["pages"]) + 1)]
    assert not (out / gallery.PNG).exists() and not (out / gallery.PREVIEW).exists(), "the pages are the gallery: no tall figure"
    assert stored["sections"][0]["title"] == "Highest captive score, captive"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert all(0 <= p["border_share"] <= 1 for p in stored["picks"])
    sanity = json.loads((out / gallery.SANITY).read_text())
    assert set(sanity["methods"]) == {"saliency", "gradcam", "guided_backprop"}
    first = {p["section"]: p["path"] for p in stored["picks"] if p["rank"] == 1}
    assert sanity["images"] == [first["true_positive"], first["true_negative"]]  # the sections in turn
    assert all(len(m["spearman"]) == len(m["stages"]) and isinstance(m["passed"], bool) for m in sanity["methods"].values())
    faithfulness = json.loads((out / gallery.FAITHFULNESS).read_text())
    assert faithfulness["images"] == [first["true_positive"], first["false_positive"]]  # flagged ones, the sections in turn
    assert set(faithfulness["methods"]) == {"saliency", "gradcam", "guided_backprop"}
    for result in faithfulness["methods"].values():
        assert 0 <= result["auc"] <= 1 and 0 <= result["random_auc"] <= 1 and result["images"] == 2
        assert result["lower_than_random"] == (result["auc"] < result["random_auc"])


def test_score_text_never_rounds_to_certainty():
    assert gallery.score_text(0.731) == "0.731"
    assert gallery.score_text(0.99996) == "0.99996"
    assert gallery.score_text(0.00002) == "0.00002"


def test_cli_writes_gallery_and_rejects_bad_input(shared, test_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for old in (gallery.PNG, gallery.PREVIEW, gallery.page_file(9)):  # an older gallery made into the same folder
        (out / old).write_bytes(b"old")
    assert main(["explain", "default", "--test", f"small={test_folder}", "--method", "gradcam", "--top", "1", "--out", str(out), "--no-checks"]) == 0
    printed = capsys.readouterr().out
    assert "scoring" in printed and "explaining" in printed and str(out / gallery.PDF) in printed and "16:9 pages" in printed
    stored = json.loads((out / gallery.JSON).read_text())
    assert sorted(path.name for path in out.glob("*.png")) == sorted(stored["pages"]) and not (out / gallery.PREVIEW).exists()
    assert stored["summary"]["border_scan"]["method"] == "gradcam"
    assert len(stored["picks"]) == sum(min(1, stored["summary"][key]) for key in SECTIONS) >= 4
    assert not (out / gallery.SANITY).exists() and not (out / gallery.FAITHFULNESS).exists()

    assert main(["explain", str(tmp_path / "no-such-run"), "--test", f"small={test_folder}", "--runs-dir", str(tmp_path)]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert main(["explain", "default", "--test", f"gone={tmp_path / 'gone'}", "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explain", "default", "--test", f"other={test_folder / 'other'}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no captive/ folder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_gallery_is_laid_out_on_16_9_pages_for_a_slide_each_under_5_mb(made):
    out, stored = made
    pages = [out / name for name in stored["pages"]]
    rows = gallery._rows(
        gallery.sections(("not_captive", "captive")), [gallery.Pick(**{k: p[k] for k in gallery.Pick.__dataclass_fields__}) for p in stored["picks"]]
    )
    needed = gallery._paginate(rows, gallery._row_heights(gallery._pair_geometry()[1]), gallery.PAGE_HEIGHT - 2 * gallery.MARGIN - gallery.TITLE_HEIGHT)
    assert len(pages) == len(needed) >= 2 and all(page.is_file() for page in pages)
    for page in pages:
        with Image.open(page) as opened:
            assert opened.format == "PNG" and opened.width * 9 == opened.height * 16
        assert page.stat().st_size < 5_000_000
    if shutil.which("pdfinfo"):
        sizes = pdf_page_sizes(out / gallery.PDF)
        assert len(sizes) == len(pages) and all(width * 9 == pytest.approx(height * 16) for width, height in sizes)
    assert (out / gallery.PDF).stat().st_size < 5_000_000 * len(pages)
    shown = [p["path"] for p in stored["picks"]]
    on_pages = [pick.path for chunk in needed for kind, _, chosen in chunk if kind == "pairs" for pick in chosen]
    assert on_pages == shown  # every pick once, in order, rows whole
    assert all(chunk[0][0] in ("title", "continued") for chunk in needed)  # every page starts with its section's title


def test_download_names_say_model_test_set_and_method_so_two_models_never_collide(tmp_path):
    first = gallery_jobs.StoredGallery("test_out_pet", "saliency", tmp_path / "a", gallery_jobs.READY, model="resnet18-transfer-bg-20261126-152103-05db")
    second = gallery_jobs.StoredGallery("test_out_pet", "saliency", tmp_path / "b", gallery_jobs.READY, model="default model")
    assert first.download_name("-page-1.png") == "wildvision-resnet18-transfer-bg-20261126-152103-05db-test_out_pet-saliency-page-1.png"
    assert second.download_name(".pdf") == "wildvision-default-model-test_out_pet-saliency.pdf"
    assert first.download_name(".pdf") != second.download_name(".pdf")


def test_background_gallery_is_stored_where_the_dashboard_finds_it(shared, test_folder, tmp_path):
    runs_dir = tmp_path / "runs"
    folder = gallery_jobs.start_gallery("default", "small", test_folder, "gradcam", 1, runs_dir=runs_dir, checks=False)
    assert folder == runs_dir / gallery.DEFAULT_FOLDER / "small-gradcam"
    ready = wait_until(
        lambda: gallery_jobs.stored_galleries("default", runs_dir), lambda found: found and found[0].state != gallery_jobs.BEING_MADE, timeout_s=180
    )
    (item,) = ready
    assert item.state == gallery_jobs.READY, (folder / gallery.CONSOLE).read_text()
    assert (item.test_name, item.method) == ("small", "gradcam")
    assert item.images == len(json.loads((folder / gallery.JSON).read_text())["picks"]) >= 4
    assert item.pages and all(page.is_file() for page in item.pages) and item.pdf.is_file() and not item.sanity and not item.faithfulness
    assert item.png is None and item.preview is None


@pytest.fixture(scope="module")
def run_with_gallery(completed_run, tmp_path_factory) -> Path:
    """A copy of the session's trained run with a saliency gallery of its test set, made by `explain RUN` into the run folder."""
    run = tmp_path_factory.mktemp("explained") / completed_run.name
    shutil.copytree(completed_run, run)
    (test_name, test_dir), *_ = catalog.test_folders(catalog.read_model(run)).items()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gallery, "CHECK_IMAGES", 4)
        assert main(["explain", str(run), "--test", f"{test_name}={test_dir}", "--top", "2"]) == 0
    return run


def test_explain_stores_a_runs_gallery_in_the_run_folder(run_with_gallery):
    (item,) = gallery_jobs.stored_galleries(run_with_gallery)
    assert item.folder == run_with_gallery / gallery.EXPLANATIONS / "test_out_pet-saliency" and item.state == gallery_jobs.READY
    stored = json.loads((item.folder / gallery.JSON).read_text())
    assert stored["model"] == run_with_gallery.name and stored["arch"] == "squeezenet1_0"
    assert stored["summary"]["images"] == 60 and item.scanned == 60
    assert set(item.sanity) == {"saliency", "gradcam", "guided_backprop"}
    sanity = gallery_jobs.sanity_table(item)
    assert list(sanity["Method"]) == ["saliency", "gradcam", "guided_backprop"] and sanity.columns[1] == "head" and sanity.columns[-1] == "Verdict"


@pytest.fixture
def saved_names(monkeypatch) -> list[str]:
    """The file names the page's download buttons give, each read when clicked (AppTest keeps only their ids)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    names: list[str] = []
    original = MediaFileManager.add_deferred

    def keep(self, callable_, mimetype, coordinates, file_name=None, **rest):
        names.append(file_name or "")
        return original(self, callable_, mimetype, coordinates, file_name=file_name, **rest)

    monkeypatch.setattr(MediaFileManager, "add_deferred", keep)
    return names


def test_explanations_page_shows_a_runs_gallery_and_its_checks(runs_dir, run_with_gallery, saved_names):
    shutil.copytree(run_with_gallery, runs_dir / run_with_gallery.name)
    at = AppTest.from_file("../app_pages/explanations.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Explanations"
    model = at.selectbox(key="explain_model")
    model.select_index(next(index for index, option in enumerate(model.options) if run_with_gallery.name in option)).run()
    assert not at.exception
    assert at.selectbox(key="explain_test").value == "test_out_pet"
    assert [s.value for s in at.subheader] == ["test_out_pet: Saliency"]
    (item,) = gallery_jobs.stored_galleries(run_with_gallery)
    count = len(item.pages)
    assert count >= 2
    assert len(at.image) == 1 and at.image[0].captions[0].startswith(f"Page 1 of {count}: ") and "photos, stored in" in at.image[0].captions[0]
    labels = [button.proto.label for button in at.get("download_button")]
    assert all(button.proto.ignore_rerun for button in at.get("download_button"))  # a click only downloads
    assert labels == ["Slides (16:9 PDF)", *[f"Page {n} of {count} (PNG)" for n in range(1, count + 1)]]
    names = [name for name in saved_names if name.startswith("wildvision-")]
    stem = f"wildvision-{run_with_gallery.name}-test_out_pet-saliency"
    assert names == [f"{stem}.pdf", *[f"{stem}-page-{n}.png" for n in range(1, count + 1)]]
    shown = runs_dir / run_with_gallery.name / gallery.EXPLANATIONS / "test_out_pet-saliency"
    at.radio(key=f"shown:{shown}").set_value(2).run()
    assert not at.exception and at.image[0].captions[0].startswith(f"Page 2 of {count}: ")
    summary = json.loads((run_with_gallery / gallery.EXPLANATIONS / "test_out_pet-saliency" / gallery.JSON).read_text())["summary"]
    texts = " ".join(markdown.value for markdown in at.markdown)
    assert "Do the maps depend on the model?" in texts and "Do the maps point at what drives the score?" in texts
    assert f"{summary['border']} of the {summary['true_positive'] + summary['false_positive']} flagged photos" in texts
    tables = [frame.value for frame in at.dataframe]
    assert list(tables[0]["Method"]) == ["saliency", "gradcam", "guided_backprop"]
    assert "Deletion AUC" in tables[1].columns and len(tables[1]) == 3


def test_a_gallery_made_before_the_pages_still_shows_its_figure_and_says_to_make_it_again(runs_dir, run_with_gallery, saved_names):
    run = runs_dir / run_with_gallery.name
    shutil.copytree(run_with_gallery, run)
    folder = run / gallery.EXPLANATIONS / "test_out_pet-saliency"
    stored = json.loads((folder / gallery.JSON).read_text())
    shutil.copyfile(folder / stored["pages"][0], folder / gallery.PNG)  # an old gallery: one figure, no pages
    for name in stored.pop("pages"):
        (folder / name).unlink()
    (folder / gallery.JSON).write_text(json.dumps(stored))
    (item,) = gallery_jobs.stored_galleries(run)
    assert item.state == gallery_jobs.READY and item.pages == () and item.png == item.preview == folder / gallery.PNG
    at = AppTest.from_file("../app_pages/explanations.py", default_timeout=60).run()
    model = at.selectbox(key="explain_model")
    model.select_index(next(index for index, option in enumerate(model.options) if run.name in option)).run()
    assert not at.exception and len(at.image) == 1
    assert "make it again to get them" in " ".join(caption.value for caption in at.caption)
    assert [button.proto.label for button in at.get("download_button")] == ["Download PDF", "Whole figure (PNG)"]
    stem = f"wildvision-{run.name}-test_out_pet-saliency"
    assert [name for name in saved_names if name.startswith("wildvision-")] == [f"{stem}.pdf", f"{stem}.png"]


def test_making_a_gallery_shows_a_running_status_at_once_and_an_error_when_its_process_stops(runs_dir, shared):
    """The page starts the process and returns (no waiting on it): the same script run shows the gallery as being made,
    with a spinner and how far it has got; once the process is gone, the page says it stopped instead."""
    import os
    import signal
    import time

    at = AppTest.from_file("../app_pages/explanations.py", default_timeout=60).run()
    assert not at.exception and not at.status
    at.selectbox(key="explain_test").set_value("test_out_nopet")
    started = time.monotonic()
    next(button for button in at.button if button.label == "Make the gallery").click().run()
    seconds = time.monotonic() - started
    job = json.loads((runs_dir / gallery.DEFAULT_FOLDER / "test_out_nopet-saliency" / gallery.JOB).read_text())
    try:
        assert not at.exception and "Making the gallery in the background" in at.success[0].value
        (status,) = at.status
        assert status.state == "running" and status.label.startswith("Being made, running for ")
        assert seconds < 10, f"the page waited {seconds:.1f} s on the gallery"
    finally:
        os.kill(job["pid"], signal.SIGTERM)
    wait_until(lambda: gallery_jobs.stored_galleries("default", runs_dir)[0].state, lambda state: state == gallery_jobs.FAILED, timeout_s=30)
    at.run()
    assert not at.status and "It stopped" in at.error[0].value, "nothing runs, so nothing refreshes: the page says why"


def test_progress_text_says_how_long_a_gallery_has_run_and_its_last_step(tmp_path):
    from datetime import UTC, datetime

    item = gallery_jobs.StoredGallery(
        "test_out_pet",
        "saliency",
        tmp_path,
        gallery_jobs.BEING_MADE,
        message="[test_out_pet] scored and explained 96 of 690 images",
        started_at="2026-01-01T10:00:00+00:00",
    )
    assert gallery_jobs.progress_text(item, datetime(2026, 1, 1, 10, 1, 5, tzinfo=UTC)) == "running for 1 min 05 s: scored and explained 96 of 690 images"
    unstarted = gallery_jobs.StoredGallery("test_out_pet", "saliency", tmp_path, gallery_jobs.BEING_MADE)
    assert gallery_jobs.progress_text(unstarted) == "starting", "a job.json without a start time"
