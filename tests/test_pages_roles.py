"""Roles on the pages, with AppTest signed in (st.user) on a server whose settings give each person a role: who may
start, cancel and resume which background jobs, and what each page offers instead of an action a role lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app_pages.widgets import md
from conftest import copy_job, team_settings
from wildvision import runs
from wildvision.screening import background

ANA, OLGA, ADA, VERA = "ana@ngo.test", "olga@ngo.test", "ada@ngo.test", "vera@ngo.test"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c", "client_secret": "s"}


@pytest.fixture
def team(tmp_path, monkeypatch, runs_dir):
    """Ana and Olga operators, Ada admin, Vera viewer; an empty screens folder."""
    team_settings(
        monkeypatch,
        tmp_path,
        f'[roles]\noperator = ["{ANA}", "{OLGA}"]\nadmin = ["{ADA}"]\nviewer = ["{VERA}"]\n[roots]\nread = [{json.dumps(str(tmp_path))}]\n',
    )
    screens = tmp_path / "screens"
    screens.mkdir()
    monkeypatch.setenv("WILDVISION_SCREENS_DIR", str(screens))
    return screens


def signed_in(page: str, email: str) -> AppTest:
    at = AppTest.from_file(f"../app_pages/{page}.py", default_timeout=120)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": email}
    return at.run()


@pytest.fixture
def anas_cancelled_job(screened_job, team) -> Path:
    """A screening job Ana started and cancelled: Resume is offered to whoever may resume it."""
    job = copy_job(screened_job, team)
    status = runs.read_json(job / runs.STATUS)
    runs.write_json_atomic(job / runs.STATUS, {**status, "state": "cancelled", "owner": ANA})
    return job


def labels(at: AppTest) -> list[str]:
    return [button.label for button in at.button]


def test_an_operator_resumes_their_own_job_and_not_anothers_and_an_admin_anyones(anas_cancelled_job):
    for email, offered in ((ANA, True), (OLGA, False), (ADA, True), (VERA, False)):
        at = signed_in("review", email)
        assert not at.exception, at.exception
        assert ("Resume" in labels(at)) is offered, email
        assert any(f"started by {md(ANA)}" in markdown.value for markdown in at.markdown), "who started it is shown to all"


def test_a_viewer_is_told_why_instead_of_the_forms_that_start_jobs(team):
    at = signed_in("review", VERA)
    assert not at.exception and not at.text_area, "no form to start a screening job"
    assert any("To start a screening job you need the operator role" in info.value for info in at.info)
    at = signed_in("train", VERA)
    assert not at.exception and "Start training" not in labels(at)
    assert any("To start training runs you need the operator role" in info.value for info in at.info)
    at = signed_in("train", OLGA)
    assert not at.exception and "Start training" in labels(at)


def test_a_job_started_on_the_page_records_the_signed_in_person(team, tmp_path, monkeypatch):
    monkeypatch.setenv("WILDVISION_QUEUE_DIR", str(tmp_path / "queue"))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), "olive").save(photos / "one.jpg")
    at = signed_in("review", OLGA)
    at.text_area[0].input(str(photos))
    next(button for button in at.button if button.label == "Start screening").click().run()
    assert not at.exception, at.exception
    (job,) = team.iterdir()
    assert runs.read_json(job / runs.STATUS)["owner"] == OLGA
    assert background.read_screen(job).owner == OLGA
    if background.read_screen(job).state in ("queued", "running"):  # nothing left running after the test
        background.cancel_screen(job)
