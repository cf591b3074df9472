"""Screening jobs on real demo photos: every source kind, hostile files as rows, duplicate groups, kill and resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from conftest import DEMO, demo_subset, write_image
from helpers import read_scores
from wildvision import cli, runs
from wildvision.predict import load_model, predict_paths
from wildvision.screening.config import PARTS, SCORES, UNPACKED, ScreenConfig
from wildvision.screening.job import list_files, new_screen, screen
from wildvision.screening.merge import SCORES_COLUMNS, counts_line, write_scores
from wildvision.screening.scoring import PART_COLUMNS
from wildvision.screening.sources import read_file_list


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_a_folder_a_zip_and_a_list_with_hostile_files_and_reposts(shared, tmp_path, default_model):
    folder = demo_subset(tmp_path, {"captive": 5, "wild": 5})
    original = min((folder / "wild").iterdir())
    (folder / "copy.jpg").write_bytes(original.read_bytes())  # byte-identical repost
    with Image.open(original) as image:  # resized and re-encoded repost
        image.convert("RGB").resize((image.width * 3 // 5, image.height * 3 // 5)).save(folder / "resized.jpg", quality=70)
    (folder / "corrupt.jpg").write_bytes(os.urandom(4000))
    (folder / "truncated.jpg").write_bytes(original.read_bytes()[:2000])
    (folder / "notes.png").write_text("not a photo")
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")  # 100 megapixels in a few kB
    photos = sorted((DEMO / "test_out_pet" / "captive").iterdir())[:3]
    archive = tmp_path / "posts.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for photo in photos:
            zipped.write(photo, f"kennel/{photo.name}")
        zipped.writestr("../../escaped.jpg", photos[0].read_bytes())
        zipped.writestr("/etc/absolute.jpg", photos[0].read_bytes())
    listing = tmp_path / "list.txt"
    listed = sorted((DEMO / "test_out_nopet" / "other").iterdir())[:2]
    listing.write_text(f"# scraped on Monday\n{listed[0]}\n\n{listed[1]}\nmissing.jpg\n")

    screen_dir = screen([str(folder), str(archive), str(listing)], screens_dir=tmp_path / "screens", name="monday")

    rows = read_scores(screen_dir)
    assert list(rows[0]) == SCORES_COLUMNS
    by_name = {Path(row["path"]).name: row for row in rows}
    assert len(by_name) == len(rows)
    assert len(rows) == 16 + 5 + 3  # folder: 10 photos and 6 made here; zip: 3 photos, 2 unsafe; list: 3
    assert "truncated" in by_name["truncated.jpg"]["error"] and "pixels" in by_name["bomb.png"]["error"]
    assert by_name["corrupt.jpg"]["error"] and by_name["notes.png"]["error"] and by_name["missing.jpg"]["error"] == "file not found"
    assert "outside the zip" in by_name["escaped.jpg"]["error"] and "absolute" in by_name["absolute.jpg"]["error"]
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path.parent / "escaped.jpg").exists()
    assert sum(bool(row["error"]) for row in rows) == 7
    assert by_name["copy.jpg"]["sha256"] == by_name[original.name]["sha256"]
    assert by_name["copy.jpg"]["duplicate_group"] == by_name["resized.jpg"]["duplicate_group"] == by_name[original.name]["duplicate_group"]
    readable = [row for row in rows if not row["error"]]
    assert len({row["duplicate_group"] for row in readable}) == len(readable) - 2  # only the two reposts join a group
    assert by_name[listed[0].name]["path"] == str(listed[0])  # as listed
    assert by_name[f"{photos[0].name}"]["path"] == f"{archive}/kennel/{photos[0].name}"

    expected = predict_paths(default_model, [*sorted((folder / "captive").iterdir()), *photos, *listed])
    for prediction in expected:
        row = by_name[Path(prediction.path).name]
        assert float(row["probability"]) == pytest.approx(prediction.probability, abs=1e-5) and row["label"] == prediction.label
        assert float(row["unlike_training"]) == pytest.approx(prediction.unlike_training, abs=1e-3)  # the default model keeps a summary
    assert all(row["unlike_training"] == "" for row in rows if row["error"])

    config = runs.read_json(screen_dir / runs.CONFIG)
    assert config["files"] == len(rows) and config["architecture"] == default_model.arch and config["threshold"] == default_model.threshold
    assert config["model"] == "default" and "default_model_code_version" in config["model_version"]
    status = runs.read_json(screen_dir / runs.STATUS)
    assert status["state"] == "completed" and status["done"] == status["total"] == len(rows)
    flagged = [row for row in rows if row["label"] == default_model.positive_class]
    assert status["counts"] == {
        "files": 24,
        "distinct_photos": len(readable) - 2,  # the unreadable files are no photos, and a repost is no new one
        "flagged": len(flagged),
        "flagged_photos": len({row["duplicate_group"] for row in flagged}),
        "unreadable": 7,
    }
    assert not (screen_dir / PARTS).exists()


JOB = """
import sys
from pathlib import Path
from wildvision.screening.job import create_screen, finish_screen
from wildvision.predict import load_model
loaded = load_model("default")
screen_dir = create_screen([sys.argv[1]], "default", loaded, 8, Path(sys.argv[2]), part_batches=1)
print(screen_dir, flush=True)
finish_screen(screen_dir, loaded)
"""


def test_a_killed_job_resumes_with_every_file_scored_once(shared, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 40, "wild": 40, "background": 16})
    job = subprocess.Popen([sys.executable, "-c", JOB, str(folder), str(tmp_path / "screens")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    screen_dir = Path(job.stdout.readline().strip())
    deadline = time.monotonic() + 300
    while len(list((screen_dir / PARTS).glob("part-*.csv"))) < 3 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    written = len(list((screen_dir / PARTS).glob("part-*.csv")))
    assert 3 <= written < 12, "the job should have been killed between its parts"
    assert runs.effective_state(runs.read_json(screen_dir / runs.STATUS)) == runs.INTERRUPTED
    assert not (screen_dir / SCORES).exists()

    assert cli.main(["screen", "--resume", str(screen_dir)]) == 0

    resumed = read_scores(screen_dir)
    uninterrupted = read_scores(screen([str(folder)], screens_dir=tmp_path / "again"))
    assert len(resumed) == 96 and len({row["path"] for row in resumed}) == 96
    assert [row["path"] for row in resumed] == [row["path"] for row in uninterrupted]
    for a, b in zip(resumed, uninterrupted):
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-5) and a["label"] == b["label"] and a["sha256"] == b["sha256"]
    assert runs.read_json(screen_dir / runs.STATUS)["state"] == "completed"
    assert cli.main(["screen", "--resume", str(screen_dir)]) == 0  # a completed job is left as it is
    assert read_scores(screen_dir) == resumed


def test_every_file_in_a_folder_is_a_row_zips_inside_included_and_system_files_counted_in_the_log(tmp_path, capsys):
    """A zip inside a folder is screened as a zip given directly is; a file that is no image is a row saying so; only
    system files are left out, and the log and config.json say how many."""
    folder = tmp_path / "scraped"
    write_image(folder / "a.jpg", seed=1)
    photo = write_image(tmp_path / "b.png", seed=2).read_bytes()
    (folder / "day2").mkdir()
    with zipfile.ZipFile(folder / "day2" / "posts.zip", "w") as zipped:
        zipped.writestr("kennel/b.png", photo)
        zipped.writestr("../escaped.png", photo)
        zipped.writestr("readme.txt", "prices on request")
        zipped.writestr("older.zip", b"PK")
        zipped.writestr("__MACOSX/kennel/._b.png", b"\x00\x05\x16\x07")
    (folder / "bad_zip.zip").write_bytes(b"PK but not really a zip")
    (folder / "notes.txt").write_text("seller list")
    (folder / "listing.pdf").write_bytes(b"%PDF-1.4")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "day2" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "also-day2").symlink_to(folder / "day2")  # not followed (a loop could never end), but a row

    screen_dir = new_screen([str(folder)], "default", tmp_path / "screens")
    assert list_files(screen_dir).files == 9
    rows = {row.path: row for row in read_file_list(screen_dir)}
    posts = f"{folder}/day2/posts.zip"
    assert list(rows) == [
        str(folder / "also-day2"),
        str(folder / "a.jpg"),
        str(folder / "bad_zip.zip"),
        str(folder / "listing.pdf"),
        str(folder / "notes.txt"),
        f"{posts}/kennel/b.png",
        f"{posts}/../escaped.png",
        f"{posts}/readme.txt",
        f"{posts}/older.zip",
    ]
    assert rows[str(folder / "a.jpg")].error is None and Path(rows[f"{posts}/kennel/b.png"].file).read_bytes() == photo
    assert Path(rows[f"{posts}/kennel/b.png"].file).is_relative_to(screen_dir / UNPACKED)
    assert rows[str(folder / "bad_zip.zip")].error.startswith("not a readable zip file")
    assert rows[f"{posts}/../escaped.png"].error == "zip member unsafe: a path that leads outside the zip"
    assert rows[f"{posts}/readme.txt"].error == "zip member not an image"
    assert rows[f"{posts}/older.zip"].error == "zip member a zip inside the zip, not opened: unzip it first"
    assert rows[str(folder / "also-day2")].error == "a link to a folder, not followed: screen that folder itself"
    for name in ("listing.pdf", "notes.txt"):
        assert rows[str(folder / name)].file is None and rows[str(folder / name)].error.startswith("not an image or a zip")
    assert runs.read_json(screen_dir / runs.CONFIG)["system_files_left_out"] == 3
    assert "listed 9 files; left out 3 system files" in capsys.readouterr().err


def test_the_counts_name_their_units_and_count_only_readable_files_as_photos(tmp_path):
    """Files, distinct photos (duplicate groups of readable files), flagged files and flagged distinct photos."""
    screen_dir = tmp_path / "job"
    (screen_dir / PARTS).mkdir(parents=True)
    # index, path, sha256, phash, probability, label, unlike_training, error
    part = [
        [0, "a.jpg", "aa", "0000000000000000", "0.9", "captive", "", ""],
        [1, "a-repost.jpg", "aa", "0000000000000000", "0.9", "captive", "", ""],
        [2, "b.jpg", "bb", "ffffffffffffffff", "0.1", "wild", "", ""],
        [3, "c.jpg", "cc", "0f0f0f0f0f0f0f0f", "0.8", "captive", "", ""],
        [4, "corrupt.jpg", "dd", "", "", "", "", "corrupt or truncated image"],
        [5, "missing.jpg", "", "", "", "", "", "file not found"],
    ]
    with open(screen_dir / PARTS / "part-000000000.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([PART_COLUMNS, *part])
    config = ScreenConfig(model="default", model_file="default", sources=(), sources_as_given=(), class_names=("wild", "captive"))
    counts = write_scores(screen_dir, config)
    assert counts == {"files": 6, "distinct_photos": 3, "flagged": 3, "flagged_photos": 2, "unreadable": 2}
    assert counts_line(counts, "captive") == "6 files: 3 distinct photos, 3 files / 2 distinct photos flagged captive, 2 files unreadable"
    one = {"files": 1, "distinct_photos": 1, "flagged": 0, "flagged_photos": 0, "unreadable": 0}
    assert counts_line(one, "captive") == "1 file: 1 distinct photo, 0 files / 0 distinct photos flagged captive"
