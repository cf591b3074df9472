"""Screening sources a visitor or a hostile scrape could hand over: device files, FIFOs and sockets, list files that
are not lists of photos (too big, over-long lines, /etc/passwd-like), and file names that are not UTF-8 or that hold
line breaks, Markdown or right-to-left overrides. Jobs run in a subprocess with a timeout, so a read that never ends
fails the test instead of hanging it."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DEMO
from wildvision import runs
from wildvision.screening.config import FILES, SCORES
from wildvision.screening.sources import MAX_LINE_CHARS, MAX_LIST_BYTES, check_sources, read_file_list

JOB = """
import sys
from pathlib import Path
from wildvision.screening.job import screen
print(screen(sys.argv[2:], screens_dir=Path(sys.argv[1]), name="job"))
"""
RESUME = """
import sys
from wildvision.predict import load_model
from wildvision.screening.job import create_screen, finish_screen, resume_screen
from wildvision import runs
from pathlib import Path
loaded = load_model("default", device="cpu")
job = create_screen(sys.argv[2:], "default", loaded, 2, Path(sys.argv[1]), "partial", part_batches=1)
finish_screen(job, loaded, shard=(0, 2))
runs.write_status(job, "cancelled", message="cancelled")
print(job, flush=True)
resume_screen(job)
"""


def run_job(script: str, screens: Path, *sources: str | Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-c", script, str(screens), *map(os.fspath, sources)], capture_output=True, timeout=150, env=os.environ | {"PYTHONUTF8": "0"}
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return Path(os.fsdecode(result.stdout.splitlines()[0]))


def scores(job: Path) -> list[dict]:
    with open(job / SCORES, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def photos(shared) -> list[Path]:
    return sorted((DEMO / "test_out_pet" / "captive").iterdir())[:3]


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_file_as_a_source_is_refused_at_once(device):
    with pytest.raises(ValueError, match="not a regular file or folder"):  # a read of it would never return
        check_sources([device])


def test_a_fifo_or_a_socket_as_a_source_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for source in ("pipe", "sock"):
            with pytest.raises(ValueError, match="not a regular file or folder"):
                check_sources([str(tmp_path / source)])


def test_a_list_file_over_the_cap_is_refused_with_its_size(tmp_path):
    listing = tmp_path / "list.txt"
    with open(listing, "wb") as handle:
        handle.truncate(MAX_LIST_BYTES + 1)
    with pytest.raises(ValueError, match=r"50\.0 MB.*at most 50 MB"):
        check_sources([str(listing)])


def test_a_text_file_that_lists_no_photos_is_refused(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", encoding="utf-8")
    with pytest.raises(ValueError, match="names no photo"):
        check_sources([str(passwd)])


def test_fifos_device_links_and_long_lines_become_rows_and_the_job_finishes(shared, tmp_path):
    folder = tmp_path / "market"
    folder.mkdir()
    for photo in photos(shared):
        (folder / photo.name).symlink_to(photo)
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "pipe.zip")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    listing = tmp_path / "list.txt"
    lines = [str(photos(shared)[0]), "/dev/zero", str(folder / "zero.jpg"), str(folder / "pipe.jpg"), "x" * (MAX_LINE_CHARS + 10) + ".jpg", "root:x:0:0"]
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.monotonic()
    job = run_job(JOB, tmp_path / "screens", folder, listing)
    assert time.monotonic() - started < 150
    rows = {row["path"]: row for row in scores(job)}
    for name in ("pipe.jpg", "pipe.zip", "zero.jpg"):
        assert "not a regular file" in rows[str(folder / name)]["error"], rows[str(folder / name)]
    assert all(rows[str(folder / photo.name)]["probability"] for photo in photos(shared))
    listed = [row for row in read_file_list(job)][-len(lines) :]
    assert listed[0].error is None and listed[0].file
    assert "not a photo path" in listed[1].error and listed[1].file is None  # /dev/zero: never opened
    assert "not a regular file" in scores(job)[-4]["error"] and "not a regular file" in scores(job)[-3]["error"]
    assert "line too long" in listed[4].error and len(listed[4].path) < 200
    assert "not a photo path" in listed[5].error
    assert runs.read_json(job / runs.STATUS)["state"] == "completed"


def test_any_file_name_is_kept_exactly_in_the_file_list_and_the_scores_and_a_resume(shared, tmp_path):
    folder = tmp_path / "market"
    folder.mkdir()
    names = [
        os.fsdecode(b"caf\xe9.jpg"),
        "two\nlines.jpg",
        "![b](http:⁄⁄host⁄beacon.png).jpg",
        "x:red[red].jpg",
        "**bold** $x$.jpg",
        "photo\u202egpj.exe.jpg",
    ]
    for name, photo in zip(names, photos(shared) * 2):
        (folder / name).write_bytes(photo.read_bytes())
    assert os.fsencode(folder / names[0]).endswith(b"caf\xe9.jpg")
    expected = sorted(str(folder / name) for name in names)

    job = run_job(JOB, tmp_path / "screens", folder)
    assert [row.path for row in read_file_list(job)] == expected
    assert [row["path"] for row in scores(job)] == expected and all(row["probability"] for row in scores(job))
    assert (job / FILES).read_bytes().isascii()  # json's escapes: the list is plain text whatever the names

    resumed = run_job(RESUME, tmp_path / "again", folder)
    assert runs.read_json(resumed / runs.STATUS)["state"] == "completed"
    assert [row["path"] for row in scores(resumed)] == expected
    assert [row["sha256"] for row in scores(resumed)] == [row["sha256"] for row in scores(job)]
    assert json.loads((resumed / FILES).read_text(encoding="ascii").splitlines()[0])[0] == expected[0]


def test_a_job_from_a_page_reads_no_file_that_a_link_or_a_list_line_leads_outside_its_data_roots(tmp_path):
    from PIL import Image

    from wildvision.screening.job import list_files, new_screen
    from wildvision.screening.sources import NOT_AN_IMAGE, OUTSIDE_ROOTS

    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir(), outside.mkdir()
    for folder, name in ((data, "inside.jpg"), (outside, "secret.jpg")):
        Image.new("RGB", (32, 32), "teal").save(folder / name)
    (data / "link.jpg").symlink_to(outside / "secret.jpg")
    (data / "list.txt").write_text(f"inside.jpg\n../outside/secret.jpg\n{outside / 'secret.jpg'}\n", encoding="utf-8")
    sources = [str(data), str(data / "list.txt")]

    from_page = new_screen(sources, "default", tmp_path / "screens", "page", read_roots=(str(data),))
    list_files(from_page)
    rows = {(Path(row.path).name, row.error) for row in read_file_list(from_page)}
    assert rows == {
        ("inside.jpg", None),
        ("link.jpg", OUTSIDE_ROOTS),
        ("secret.jpg", OUTSIDE_ROOTS),  # both lines of the list naming it
        ("list.txt", NOT_AN_IMAGE),  # met in the folder: a file that is no photo is a row too
    }
    assert sum(row.file is not None for row in read_file_list(from_page)) == 2, "inside.jpg, from the folder and from the list"

    from_command_line = new_screen(sources, "default", tmp_path / "screens", "cli")  # not limited: its user reads what they can
    list_files(from_command_line)
    assert all(row.error != OUTSIDE_ROOTS for row in read_file_list(from_command_line))
