"""Every page runs behind one guard (app_pages/widgets.run_page): an unexpected error is one short line naming the
file that keeps its traceback, never a traceback on the page."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["Home.py", *(f"app_pages/{name}.py" for name in ("data", "train", "results", "efficiency", "generalisation", "predict", "explanations", "review"))]


class Broken(RuntimeError):
    pass


def test_every_page_file_is_covered():
    on_disk = {f"app_pages/{path.name}" for path in (ROOT / "app_pages").glob("*.py")} - {
        "app_pages/__init__.py",
        "app_pages/widgets.py",
        "app_pages/train_runs.py",
        "app_pages/team.py",
        "app_pages/review_jobs.py",
        "app_pages/review_export.py",
        "app_pages/review_listing.py",
        "app_pages/review_audit.py",
        "app_pages/study_deck.py",
    }
    assert on_disk == set(PAGES[1:])


@pytest.mark.parametrize("page", PAGES)
def test_an_unexpected_error_is_one_line_naming_the_log_that_keeps_its_traceback(page, runs_dir, monkeypatch):
    def broken_title(*args, **kwargs):
        raise Broken("the disk went away\nsecond line of details")

    monkeypatch.setattr(st, "title", broken_title)  # every page starts with its title: the first thing it does fails
    at = AppTest.from_file(str(ROOT / page), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    (error,) = at.error
    log = runs_dir / "dashboard-errors.log"
    assert error.value.startswith("Something went wrong on this page (Broken: the disk went away)")
    assert str(log.resolve()) in error.value and "second line" not in error.value
    assert "Traceback (most recent call last)" in log.read_text() and "second line of details" in log.read_text()


def test_no_download_button_reruns_its_page():
    """A download button's click reruns the page by default, at the same moment the browser asks for the file; the
    rerun replaces the button's file (a deferred one is dropped), so on a busy server the click downloads nothing
    (Streamlit's own docs call it a race). Nothing on a page changes on a download, so none reruns."""
    rerunning = []
    for path in [ROOT / "Home.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "download_button":
                on_click = next((keyword.value for keyword in node.keywords if keyword.arg == "on_click"), None)
                if not (isinstance(on_click, ast.Constant) and on_click.value == "ignore"):
                    rerunning.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not rerunning, rerunning
