"""The screening package's parts on their own, on small inputs made here: merging parts into
scores.csv, listing sources, and a job's config.json."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from conftest import write_image
from helpers import read_scores
from wildvision import runs
from wildvision.screening.config import FORMAT, PARTS, SCORES, ScreenConfig, read_config, write_config
from wildvision.screening.merge import SCORES_COLUMNS, merge_when_complete
from wildvision.screening.review import read_items
from wildvision.screening.scoring import PART_COLUMNS
from wildvision.screening.sources import iter_sources, listing_note

BASE = 0x0123_4567_89AB_CDEF


# ---------------------------------------------------------------------------------------------
# merge: parts -> scores.csv
# ---------------------------------------------------------------------------------------------

CONFIG = ScreenConfig(
    model="default", model_file="default", sources=(), sources_as_given=(), class_names=("wild", "captive"), files=5, part_size=2, part_batches=1
)
ROWS = [  # index, path, sha256, phash, probability, label, unlike_training, error
    [0, "a.jpg", "aa", f"{BASE:016x}", "0.900000", "captive", "", ""],
    [1, "b.jpg", "bb", f"{BASE ^ 0b111:016x}", "0.800000", "captive", "0.5000", ""],
    [2, "c.jpg", "cc", f"{BASE ^ ((1 << 60) - 1):016x}", "0.100000", "wild", "", ""],
    [3, "d.jpg", "aa", f"{BASE:016x}", "0.900000", "captive", "", ""],
    [4, "broken.jpg", "dd", "", "", "", "", "corrupt or truncated image"],
]


def write_part(screen_dir: Path, rows: list[list]) -> None:
    with open(screen_dir / PARTS / f"part-{rows[0][0]:09d}.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([PART_COLUMNS, *rows])


@pytest.fixture
def job(tmp_path) -> Path:
    """A job folder whose 5 list rows are scored in parts of 2, with no part written yet."""
    screen_dir = tmp_path / "job"
    (screen_dir / PARTS).mkdir(parents=True)
    write_config(screen_dir, CONFIG)
    runs.write_status(screen_dir, "running", done=0, total=5)
    return screen_dir


def test_a_missing_part_leaves_the_job_unmerged(job):
    write_part(job, ROWS[0:2])
    write_part(job, ROWS[4:5])
    assert merge_when_complete(job, CONFIG) is False
    assert not (job / SCORES).exists() and runs.read_json(job / runs.STATUS)["state"] == "running"


def test_every_part_written_merges_scores_csv_in_list_order_with_groups_and_counts(job):
    for first in (0, 2, 4):
        write_part(job, ROWS[first : first + 2])
    assert merge_when_complete(job, CONFIG) is True
    rows = read_scores(job)
    assert list(rows[0]) == SCORES_COLUMNS
    assert [row["path"] for row in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "broken.jpg"]
    assert [row["duplicate_group"] for row in rows] == ["1", "1", "3", "1", "5"], "b is a near copy of a, d an exact one"
    assert rows[1]["unlike_training"] == "0.5000" and rows[4]["error"] == "corrupt or truncated image"
    status = runs.read_json(job / runs.STATUS)
    assert status["state"] == "completed" and not (job / PARTS).exists()
    assert status["counts"] == {"files": 5, "distinct_photos": 2, "flagged": 3, "flagged_photos": 1, "unreadable": 1}


def test_a_scores_csv_without_a_column_review_needs_is_named_plainly(job):
    (job / "files.jsonl").write_text(json.dumps(["a.jpg", "/x/a.jpg", None]) + "\n")
    (job / SCORES).write_text("path,probability\na.jpg,0.9\n")
    with pytest.raises(runs.RunError, match="no sha256, label, unlike_training, duplicate_group, error column"):
        read_items(job)


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------


def listed(sources: list[str], unpack: Path) -> tuple[list[tuple[str, bool, str | None]], list[str]]:
    """(path, whether there is a file to read, error) per row, and the system files left out."""
    left_out: list[str] = []
    rows = [(row.path, row.file is not None, row.error) for row in iter_sources(sources, unpack, left_out)]
    return rows, left_out


def test_a_folder_lists_its_images_recursively_its_zips_members_and_a_row_for_anything_else(tmp_path):
    folder = tmp_path / "posts"
    write_image(folder / "a.png", 1)
    write_image(folder / "day2" / "b.jpg", 2)
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".DS_Store").write_bytes(b"\0")
    with zipfile.ZipFile(folder / "day2" / "more.zip", "w") as archive:
        archive.write(write_image(tmp_path / "c.png", 3), "c.png")
        archive.writestr("__MACOSX/._c.png", b"\0")
    rows, left_out = listed([str(folder)], tmp_path / "unpacked")
    assert rows == [
        (str(folder / "a.png"), True, None),
        (str(folder / "notes.txt"), False, rows[1][2]),
        (str(folder / "day2" / "b.jpg"), True, None),
        (f"{folder / 'day2' / 'more.zip'}/c.png", True, None),
    ]
    assert "not an image or a zip" in rows[1][2]
    assert sorted(Path(path).name for path in left_out) == [".DS_Store", "._c.png"]
    assert listing_note(len(rows), left_out).startswith("listed 4 files; left out 2 system files that hold no photos")


def test_a_list_file_names_paths_relative_to_its_folder_and_skips_comments(tmp_path):
    write_image(tmp_path / "photos" / "a.png", 1)
    listing = tmp_path / "photos" / "list.txt"
    listing.write_text("# scraped on Monday\na.png\n\ngone.jpg\n")
    rows, left_out = listed([str(listing)], tmp_path / "unpacked")
    assert rows == [("a.png", True, None), ("gone.jpg", True, None)], "a missing file is found missing when it is scored"
    assert left_out == []


# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------


def test_config_round_trips_and_an_older_folder_without_a_format_still_reads(tmp_path):
    write_config(tmp_path, CONFIG)
    assert read_config(tmp_path) == CONFIG and runs.read_json(tmp_path / runs.CONFIG)["format"] == FORMAT
    older = {"model": "default", "model_file": "default", "sources": ["/x"], "sources_as_given": ["x"], "class_names": ["wild", "captive"]}
    runs.write_json_atomic(tmp_path / runs.CONFIG, older | {"a_key_from_later": 1})
    config = read_config(tmp_path)
    assert config.format == 1 and config.positive == "captive" and config.sources_as_given == ("x",)


def test_a_config_from_a_later_format_or_of_a_training_run_is_refused(tmp_path):
    runs.write_json_atomic(tmp_path / runs.CONFIG, {"sources_as_given": [], "model": "default", "format": FORMAT + 1})
    with pytest.raises(runs.RunError, match="newer than this wildvision reads"):
        read_config(tmp_path)
    runs.write_json_atomic(tmp_path / runs.CONFIG, {"train": {"arch": "squeezenet1_0"}})
    with pytest.raises(runs.RunError, match="not a screening job's config.json"):
        read_config(tmp_path)
