"""What the Review page shows of a real screening job: review order, reposts as one photo, filters, measured precision
and an adopted threshold. Reviews conftest's screened_job: real demo photos screened with the shipped model (needs ../shared)."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from conftest import copy_job
from wildvision import decisions, review, screening


@pytest.fixture
def job(screened_job, tmp_path) -> Path:
    return copy_job(screened_job, tmp_path)


def loaded(screen_dir: Path):
    found = review.read_job(screen_dir)
    return found, review.with_decisions(review.read_items(screen_dir), decisions.current(screen_dir))


def test_items_are_scores_csv_with_the_file_to_show_and_repost_groups(job):
    found, items = loaded(job)
    with open(job / screening.SCORES, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert items["path"].tolist() == [row["path"] for row in rows]
    assert (found.positive, found.threshold, found.labels) == ("captive", found.model_threshold, ("captive", "not_captive", "unsure"))
    readable = items[items["error"] == ""]
    assert all(Path(file).is_file() for file in readable["file"])
    repost = items[items["path"].str.endswith("repost.jpg")].iloc[0]
    assert repost["group_size"] == 2 and (items["group"] == repost["group"]).sum() == 2
    assert items.loc[items["path"].str.endswith("broken.jpg"), "group_size"].item() == 1


def test_queue_puts_the_highest_scores_first_shows_a_repost_once_and_unreadable_files_last(job):
    found, items = loaded(job)
    everything = review.queue(items, found.threshold, review.Filters(bands=(), decided="any"))
    assert len(everything) == len(items) - 1  # the repost and its original are one photo
    probabilities = everything["probability"].tolist()
    assert probabilities[:-1] == sorted(probabilities[:-1], reverse=True) and math.isnan(probabilities[-1])
    assert everything.iloc[-1]["band"] == review.UNREADABLE
    flagged = review.queue(items, found.threshold, review.Filters(bands=(review.FLAGGED,)))
    assert (flagged["probability"] >= found.threshold).all() and len(flagged) == (everything["band"] == review.FLAGGED).sum()
    group = everything[everything["group_size"] == 2].iloc[0]["group"]
    assert len(review.queue(items, found.threshold, review.Filters(group=group))) == 2
    folders = review.queue(items, found.threshold, review.Filters(bands=(), decided="any", folder=str(Path(items["path"].iloc[0]).parent)))
    assert set(folders["folder"]) == {str(Path(items["path"].iloc[0]).parent)} and len(folders) < len(everything)


def test_deciding_a_photo_decides_its_reposts_and_leaves_the_undecided_queue(job):
    found, items = loaded(job)
    repost = items[items["path"].str.endswith("repost.jpg")].iloc[0]["path"]
    assert review.decide_photo(found, items, repost, "captive", "ana", "same listing photo") == 2
    now = decisions.current(job)
    assert len(now) == 2 and {d.label for d in now.values()} == {"captive"} and {d.note for d in now.values()} == {"same listing photo"}
    _, items = loaded(job)
    undecided = review.queue(items, found.threshold, review.Filters(bands=(), decided="undecided"))
    decided = review.queue(items, found.threshold, review.Filters(bands=(), decided="decided"))
    assert len(decided) == 1 and len(undecided) == len(items) - 2  # the two files of the decided photo
    with pytest.raises(ValueError, match="'maybe' is not a label"):
        review.decide_photo(found, items, repost, "maybe", "ana")
    with pytest.raises(ValueError, match="no reviewer"):
        review.decide_photo(found, items, repost, "captive", " ")


def test_measured_precision_counts_each_flagged_photo_once_beside_the_test_sets(job):
    found, items = loaded(job)
    flagged = review.queue(items, found.threshold, review.Filters(bands=(review.FLAGGED,)))
    assert len(flagged) >= 6, "the default model flags at least half of these 12 captive photos"
    truth = {path: "captive" if "/captive/" in path or path.endswith("repost.jpg") else "not_captive" for path in flagged["path"]}
    for path, label in truth.items():
        review.decide_photo(found, items, path, label, "ana")
    _, items = loaded(job)
    view = review.precision_view(found, items, target=0.9, record=review.model_record(found))
    positives = sum(label == "captive" for label in truth.values())
    assert view.measured.n == len(truth) and view.flagged == len(flagged)
    assert view.measured.precision == pytest.approx(positives / len(truth))
    assert view.measured.low <= view.measured.precision <= view.measured.high
    assert set(view.test_sets) >= {"test_in", "test_out_pet", "test_out_nopet"}
    assert view.suggestion is not None and view.suggestion["n"] == len(truth) and view.suggestion["threshold"] >= found.threshold


def test_an_adopted_threshold_moves_the_bands_and_is_kept_on_record(job):
    found, items = loaded(job)
    before = review.queue(items, found.threshold, review.Filters(bands=(review.FLAGGED,)))
    second = before["probability"].iloc[1]
    decisions.adopt_threshold(job, second, "ana", target_precision=0.95, reviewed=12)
    raised, _ = loaded(job)
    assert raised.threshold == pytest.approx(second) and raised.model_threshold == found.model_threshold
    assert (raised.adopted.reviewer, raised.adopted.target_precision, raised.adopted.reviewed) == ("ana", 0.95, 12)
    assert len(review.queue(items, raised.threshold, review.Filters(bands=(review.FLAGGED,)))) == 2
    decisions.adopt_threshold(job, found.model_threshold, "ben")
    assert review.read_job(job).threshold == found.model_threshold
    with contextlib.closing(sqlite3.connect(job / decisions.DATABASE)) as connection:
        assert [row[0] for row in connection.execute("SELECT reviewer FROM thresholds ORDER BY id")] == ["ana", "ben"]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM thresholds")
    with pytest.raises(ValueError, match="between 0 and 1"):
        decisions.adopt_threshold(job, 1.5, "ana")
    with pytest.raises(ValueError, match="reviewer"):
        decisions.adopt_threshold(job, 0.7, "")


def test_a_store_from_before_thresholds_is_migrated_keeping_its_decisions(tmp_path):
    folder = tmp_path / "old-job"
    folder.mkdir()
    with contextlib.closing(sqlite3.connect(folder / decisions.DATABASE, isolation_level=None)) as connection:
        for statement in decisions._MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("INSERT INTO decisions VALUES ('a.jpg', 'captive', 'ana', NULL, '2026-11-01T00:00:00+00:00', NULL, NULL)")
        connection.execute("PRAGMA user_version = 1")
    assert decisions.adopted_threshold(folder) is None
    assert decisions.current(folder)["a.jpg"].reviewer == "ana"
    decisions.adopt_threshold(folder, 0.8, "ana")
    assert decisions.adopted_threshold(folder).threshold == 0.8


def test_thumbnails_are_small_jpegs_and_unreadable_files_have_none(job, tmp_path):
    _, items = loaded(job)
    readable = items[items["error"] == ""].iloc[0]["file"]
    thumbnail = review.thumbnail_jpeg(readable, side=96)
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert image.format == "JPEG" and max(image.size) <= 96
    broken = items[items["error"] != ""].iloc[0]["file"]
    assert review.thumbnail_jpeg(broken) is None and review.thumbnail_jpeg(None) is None
