"""Server paths typed into the Data, Train and Explanations pages go through the data roots (wildvision.roots): a path
outside them is refused in the same words whether or not it exists, before the page says anything else about it; a
link loop inside a folder ends; and file names are shown as plain text, never as Markdown."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import demo_subset, make_class_folder, team_settings
from wildvision import runs
from wildvision.wording import LOCAL_WEIGHTS

PAGES = Path(__file__).resolve().parents[1] / "app_pages"
TIMEOUT = 120  # the first script run imports torch


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(error.value for error in at.error)


def data_page_error(folder: str, tests: str = "") -> str:
    at = page("data")
    at.text_input(key="folder").input(folder)
    at.text_area(key="tests").input(tests)
    return errors(at.run())


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def train_page_error(runs_dir: Path, **fields: str) -> str:
    """The Train page's error after Start training, for SqueezeNet from a local weights file, with `fields` (widget
    key: text) filled in; no run may start."""
    at = page("train")
    at.selectbox(key="one_arch").set_value("squeezenet1_0").run()
    at.radio(key="one_weights_squeezenet1_0").set_value(LOCAL_WEIGHTS).run()
    for key, value in fields.items():
        (at.text_area if key.endswith("tests") else at.text_input)(key=key).set_value(value)
    button(at, "Start training").click().run()
    assert runs.list_runs(runs_dir) == []
    return errors(at)


@pytest.fixture
def roots(tmp_path, monkeypatch) -> Path:
    """A server whose one read root (besides ../shared, runs/ and screens/) is tmp_path/data."""
    data = tmp_path / "data"
    data.mkdir()
    team_settings(monkeypatch, tmp_path, f"[roots]\nread = [{str(data)!r}]\n")
    return data


def test_the_data_page_refuses_etc_in_the_same_words_whether_it_exists_or_not(roots):
    existing, missing = data_page_error("/etc/passwd"), data_page_error("/etc/no-such-file-here")
    assert "is not in a folder this server reads" in existing and "does not exist" not in missing
    assert existing.split("is not in a folder")[1] == missing.split("is not in a folder")[1]
    listing = data_page_error("/etc")
    assert "is not in a folder this server reads" in listing
    assert not any(name in listing for name in os.listdir("/etc") if len(name) > 4 and name not in str(roots)), "no sub-folder of /etc named"
    test_set = data_page_error(str(roots), tests="leak=/etc")
    assert "is not in a folder this server reads" in test_set and "found:" not in test_set


def test_the_data_page_says_does_not_exist_only_inside_the_roots(roots):
    assert "does not exist" in data_page_error(str(roots / "missing"))
    assert "does not exist" not in data_page_error("/no/such/folder")


def test_a_link_loop_in_a_data_page_folder_ends_quickly(roots):
    data = make_class_folder(roots / "train", {"captive": 3, "wild": 3})
    for depth in ("a", "b", "c"):
        (data / "captive" / depth).symlink_to("..")
    started = time.monotonic()
    at = page("data")
    at.text_input(key="folder").input(str(data))
    at.text_area(key="tests").input("")
    at.run()
    assert not at.exception and time.monotonic() - started < 60
    # each real folder walked once: captive/a leads to train/ (its wild/ photos seen once more), never round again
    assert {m.label: m.value for m in at.metric}["Photos"] == "9"


def test_a_tree_over_the_walk_limit_stops_with_a_clear_message(roots, monkeypatch):
    from wildvision import roots as roots_module

    monkeypatch.setattr(roots_module, "WALK_LIMIT", 5)
    data = make_class_folder(roots / "train", {"captive": 8, "wild": 8})
    message = data_page_error(str(data))
    assert "too large to check here" in message and "more than 5 files and folders" in message and "Something went wrong" not in message


def test_markdown_file_names_are_captioned_literally_on_the_data_page(roots, shared):
    data = demo_subset(roots, {"captive": 1, "wild": 1})
    names = ["**bold**.jpg", "x:red[red].jpg", "$x$.jpg", "![b](http:⁄⁄host⁄beacon.png).jpg"]
    photo = next((data / "captive").iterdir())
    for name in names:
        (data / "captive" / name).write_bytes(photo.read_bytes())
    at = page("data")
    at.text_input(key="folder").input(str(data))
    at.text_area(key="tests").input("")
    at.run()
    assert not at.exception
    captions = [image.captions[0] for image in at.get("image")]
    from app_pages.widgets import md

    for name in names:
        assert md(name) in captions or any(md(f"train/captive: {name}") == caption for caption in captions), (name, captions)
        assert name not in captions  # raw, it would render as bold, colour, LaTeX or an image fetched from a server


def test_the_train_page_refuses_folders_and_weights_outside_the_roots_in_the_same_words(runs_dir, roots):
    data = make_class_folder(roots / "train", {"captive": 2, "wild": 2})
    outside = {
        "one_data": ("/etc", "/etc-no-such-folder"),
        "one_tests": ("leak=/etc", "leak=/etc-no-such-folder"),
        f"one_weights_path_{'squeezenet1_0'}": ("/etc/passwd", "/etc/no-such-weights.pth"),
    }
    for key, (existing, missing) in outside.items():
        texts = []
        for value in (existing, missing):
            shown = train_page_error(runs_dir, **({"one_data": str(data), "one_tests": ""} | {key: value}))
            assert "is not in a folder this server reads" in shown and "does not exist" not in shown, (key, shown)
            texts.append(shown)
        words = [text.split("is not in a folder")[1] for text in texts]
        assert words[0] == words[1], (key, texts)


def test_the_train_page_refuses_a_device_file_as_weights(runs_dir, roots, monkeypatch):
    monkeypatch.setenv("WILDVISION_SHARED", str(roots))
    fifo = roots / "weights.pth"
    os.mkfifo(fifo)
    data = make_class_folder(roots / "train", {"captive": 2, "wild": 2})
    started = time.monotonic()
    shown = train_page_error(runs_dir, one_data=str(data), one_tests="", one_weights_path_squeezenet1_0=str(fifo))
    assert "not a regular file or folder" in shown and time.monotonic() - started < 60
