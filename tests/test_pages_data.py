"""The Data page, run with Streamlit's AppTest on real demo photos: a copied photo filed under two classes, the demo
data's own label conflict (the polecat), a folder that cannot be used, and the paper's Tables S7 and S8."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.widgets import md
from conftest import demo_subset, team_settings

PAGE = Path(__file__).resolve().parents[1] / "app_pages" / "data.py"
TIMEOUT = 120  # the first script run imports torch; the demo data's first check takes seconds


@pytest.fixture(autouse=True)
def tmp_is_a_read_root(tmp_path, monkeypatch):
    """The test's own folder is one of the server's data roots: the page refuses folders outside them (test_roots_pages)."""
    team_settings(monkeypatch, tmp_path, f"[roots]\nread = [{str(tmp_path)!r}]\n")


def run_page(**fields: str) -> AppTest:
    """The page as it opens, then with `fields` (widget key: text) filled in."""
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if fields:
        for key, value in fields.items():
            (at.text_area if key == "tests" else at.text_input)(key=key).input(value)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


@pytest.fixture
def copied(shared, tmp_path) -> tuple[Path, Path, Path]:
    """Demo photos with one captive photo also filed under wild (a conflict) and another saved twice as captive."""
    data = demo_subset(tmp_path, {"captive": 6, "wild": 6})
    captive = sorted((data / "captive").iterdir())
    (data / "wild" / "misfiled.jpg").write_bytes(captive[0].read_bytes())
    (data / "captive" / "renamed.jpg").write_bytes(captive[1].read_bytes())
    return data, captive[0], captive[1]


def test_a_photo_under_two_classes_is_named_and_duplicates_are_listed(copied):
    data, conflicting, duplicated = copied
    at = run_page(folder=str(data), tests="")
    assert not at.error[1:] and len(at.error) == 1
    conflict = at.error[0].value
    assert "train/captive and train/wild" in conflict and conflicting.name in conflict and "misfiled.jpg" in conflict
    assert [image.captions[0] for image in at.get("image")[:2]] == [md(f"train/captive: {conflicting.name}"), md("train/wild: misfiled.jpg")], "shown"
    assert {m.label: m.value for m in at.metric} == {"Photos": "14", "Class folders": "2", "Duplicate groups": "2", "Label conflicts": "1", "Unreadable": "0"}
    classes = at.dataframe[0].value
    assert list(classes["class"]) == ["captive", "wild"] and list(classes["images"]) == [7, 7]
    (expander,) = [e for e in at.expander if e.label.startswith("The same photo more than once in the training folder")]
    assert expander.label.endswith(": 1 group, 2 files")
    within = expander.get("dataframe")[0].value
    assert set(within["path"].map(lambda p: Path(p).name)) == {duplicated.name, "renamed.jpg"} and set(within["match"]) == {"identical files"}
    (look,) = expander.get("selectbox")
    assert look.options == ["group 2: 2 files, identical files"]
    assert {image.captions[0] for image in expander.get("image")} == {md(f"train/captive: {duplicated.name}"), md("train/captive: renamed.jpg")}
    assert [b.label for b in at.get("download_button")] == ["Download all findings as CSV"]
    assert [t.label for t in at.tabs] == ["train"]
    assert len(at.get("image")) == 2 + 2 + 12  # the conflict's two photos, the duplicate group's two, 6 sample photos per class
    assert "Leave out test photos that copy a training photo" in texts(at.caption)  # the Train page's own words
    assert " --" not in texts(at.caption) + texts(at.markdown)  # a page never tells anyone to pass a command-line flag


def test_the_demo_data_shows_the_polecat_conflict_and_its_duplicate_groups(shared):
    at = run_page()  # the fields start at the demo data
    assert at.text_input(key="folder").value == str(shared / "demo-data" / "train")
    assert "test_out_pet=" in at.text_area(key="tests").value and "test_out_nopet=" in at.text_area(key="tests").value
    conflicts = texts(at.error)
    assert "train/captive/imagenet-n02443114_polecat.jpg" in conflicts and "train/wild/imagenet-n02443114_polecat.jpg" in conflicts
    assert {m.label: m.value for m in at.metric}["Label conflicts"] == "2"
    labels = [e.label for e in at.expander]
    assert any(label.startswith("The same photo more than once in the training folder: 165 groups") for label in labels), labels
    assert any(label.startswith("The same photo more than once in the test sets: 690 groups") for label in labels), labels
    (subset,) = [info.value for info in at.info if "subset" in info.value]  # computed, so 690 shared groups do not alarm
    assert subset.replace("\\", "").startswith("Every one of the 690 photos of test_out_nopet is also in test_out_pet (test_out_nopet is a subset of")
    assert subset.endswith("The demo data is made that way (see its README.md).")
    (between,) = [e for e in at.expander if e.label.startswith("The same photo more than once in the test sets")]
    assert [image.captions[0].split(": ")[0] for image in between.get("image")] == [md("test_out_nopet/captive"), md("test_out_pet/captive")]
    assert [t.label for t in at.tabs] == [md("train"), md("test_out_pet"), md("test_out_nopet")]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"folder": "/no/such/folder", "tests": ""}, "is not in a folder this server reads"),
        ({"tests": "just-a-name"}, "expected NAME=DIR"),
    ],
)
def test_a_folder_that_cannot_be_used_gives_a_plain_message(shared, fields, words):
    at = run_page(**fields)
    assert words in texts(at.error) and "Traceback" not in texts(at.error)
    assert not at.metric and not at.get("download_button")


def test_a_folder_without_the_class_to_flag_says_what_is_expected(tmp_path):
    (tmp_path / "wild").mkdir()
    at = run_page(folder=str(tmp_path), tests="")
    assert "no positive class folder 'captive/'" in texts(at.error) and "one sub-folder per class" in texts(at.error)


def test_an_empty_folder_field_explains_the_layout():
    at = run_page(folder="", tests="")
    assert "Enter a training folder" in texts(at.info) and "captive/" in texts(at.info)
    assert "not_captive/" in at.text_input(key="folder").label  # the folder the Review page's export writes is named too
    assert not at.error


def test_the_papers_species_and_background_queries_are_shown_with_their_row_counts():
    at = run_page(folder="", tests="")
    labels = [e.label for e in at.expander]
    assert "Table S7: the species sold in the positive class (58 entries)" in labels
    assert "Table S8: the background search queries (22 queries)" in labels
    species, queries = (e.get("dataframe")[0].value for e in at.expander if e.label.startswith("Table S"))
    assert species.shape == (58, 2) and list(species.columns) == ["scientific_name", "cites_appendix"]
    assert queries.shape == (22, 1)
    assert "not listed in CITES" in texts(at.caption) and "Nasua narica" in texts(at.caption)
