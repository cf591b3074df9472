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

from conftest import DEMO, demo_subset
from wildvision import runs, screening
from wildvision.predict import load_model, predict_paths


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def read_scores(screen_dir: Path) -> list[dict]:
    with open(screen_dir / screening.SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


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

    screen_dir = screening.screen([str(folder), str(archive), str(listing)], screens_dir=tmp_path / "screens", name="monday")

    rows = read_scores(screen_dir)
    assert list(rows[0]) == screening.COLUMNS
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
    assert not (screen_dir / screening.PARTS).exists()


JOB = """
import sys
from pathlib import Path
from wildvision import screening
from wildvision.predict import load_model
loaded = load_model("default")
screen_dir = screening.create_screen([sys.argv[1]], "default", loaded, 8, Path(sys.argv[2]), part_batches=1)
print(screen_dir, flush=True)
screening.finish_screen(screen_dir, loaded)
"""


def test_a_killed_job_resumes_with_every_file_scored_once(shared, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 40, "wild": 40, "background": 16})
    job = subprocess.Popen([sys.executable, "-c", JOB, str(folder), str(tmp_path / "screens")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    screen_dir = Path(job.stdout.readline().strip())
    deadline = time.monotonic() + 300
    while len(list((screen_dir / screening.PARTS).glob("part-*.csv"))) < 3 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    written = len(list((screen_dir / screening.PARTS).glob("part-*.csv")))
    assert 3 <= written < 12, "the job should have been killed between its parts"
    assert runs.effective_state(runs.read_json(screen_dir / runs.STATUS)) == runs.INTERRUPTED
    assert not (screen_dir / screening.SCORES).exists()

    assert screening.main(["--resume", str(screen_dir)]) == 0

    resumed = read_scores(screen_dir)
    uninterrupted = read_scores(screening.screen([str(folder)], screens_dir=tmp_path / "again"))
    assert len(resumed) == 96 and len({row["path"] for row in resumed}) == 96
    assert [row["path"] for row in resumed] == [row["path"] for row in uninterrupted]
    for a, b in zip(resumed, uninterrupted):
        assert float(a["probability"]) == pytest.approx(float(b["probability"]), abs=1e-5) and a["label"] == b["label"] and a["sha256"] == b["sha256"]
    assert runs.read_json(screen_dir / runs.STATUS)["state"] == "completed"
    assert screening.main(["--resume", str(screen_dir)]) == 0  # a completed job is left as it is
    assert read_scores(screen_dir) == resumed
