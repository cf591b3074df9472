"""End to end: a team server with sign-in, against a real OpenID Connect provider started here.

The provider is `oidc-provider-mock` (a real OpenID Connect server for tests: discovery, authorization code flow,
signed ID tokens); whoever signs in types their e-mail address as their subject. The dashboard is `streamlit run
Home.py` with an [auth] secrets file pointing at it and a settings file giving Vera the viewer role and Rui the
reviewer role, driven in Debian's Chromium. Also: a server on every network address without sign-in serves nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from test_browser import ROOT, SCREENSHOTS, _free_port, settled

from conftest import copy_job
from wildvision.screening import decisions

VIEWER, REVIEWER, STRANGER = "vera@ngo.test", "rui@ngo.test", "mallory@elsewhere.test"


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped: {process.stdout.read()[-2000:] if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on port {port}")


@contextmanager
def _serving(command: list[str], port: int, env: dict | None = None):
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def _streamlit(port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true", "--server.port", str(port), *options]


@pytest.fixture(scope="module")
def team_server(screened_job, tmp_path_factory):
    """The provider and a dashboard that signs people in with it; yields (dashboard URL, the screening job's folder)."""
    folder = tmp_path_factory.mktemp("team")
    screens_dir = folder / "screens"
    screens_dir.mkdir()
    job = copy_job(screened_job, screens_dir)
    provider_port, port = _free_port(), _free_port()
    (folder / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "only-for-this-test-0123456789abcdef"\n'
        'client_id = "wildvision"\n'
        'client_secret = "only-for-this-test"\n'
        f'server_metadata_url = "http://127.0.0.1:{provider_port}/.well-known/openid-configuration"\n',
        encoding="utf-8",
    )
    (folder / "settings.toml").write_text(f'[roles]\nviewer = ["{VIEWER}"]\nreviewer = ["{REVIEWER}"]\n', encoding="utf-8")
    env = dict(
        os.environ,
        WILDVISION_SETTINGS=str(folder / "settings.toml"),
        WILDVISION_SCREENS_DIR=str(screens_dir),
        WILDVISION_RUNS_DIR=str(folder / "runs"),
    )
    provider = [sys.executable, "-m", "oidc_provider_mock", "--port", str(provider_port)]
    with _serving(provider, provider_port), _serving(_streamlit(port, "--secrets.files", str(folder / "secrets.toml")), port, env):
        yield f"http://127.0.0.1:{port}", job


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 2000})  # its own cookies: one person per context
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("h1", timeout=60_000)
    settled(page)
    return page


def _sign_in(browser, url: str, email: str):
    """Sign in through the provider's form as `email`; the dashboard's home page is shown after."""
    page = _open(browser, url)
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=sub]").fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.get_by_text(f"Signed in as {email}").first.wait_for(timeout=60_000)
    settled(page)
    return page


def test_without_signing_in_no_page_is_served(browser, team_server):
    url, job = team_server
    for path in ("", "review", f"review?job={job.name}", "predict", "data", "train"):
        page = _open(browser, f"{url}/{path}")
        try:
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            assert "Sign in to use it" in page.inner_text("body")
            assert page.locator("h1").first.inner_text() == "wildvision"
            assert page.get_by_role("button", name="Captive / for sale").count() == 0
            assert "Screening job to review" not in page.inner_text("body") and "Traceback" not in page.content()
            if path == "review":
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SCREENSHOTS / "sign-in-required.png", full_page=True)
        finally:
            page.context.close()
    assert not decisions.current(job)


def test_a_viewer_sees_the_flags_but_cannot_decide(browser, team_server):
    url, job = team_server
    page = _sign_in(browser, url, VIEWER)
    try:
        page.goto(f"{url}/review?job={job.name}")
        page.get_by_text("you need the reviewer role").first.wait_for(timeout=60_000)
        settled(page)
        assert page.get_by_text(f"Signed in as {VIEWER} (viewer)").count() >= 1
        assert page.get_by_label("Your name").count() == 0, "no free-text name once people sign in"
        buttons = page.get_by_role("button", name="Captive / for sale")
        assert buttons.count() > 0 and all(buttons.nth(i).is_disabled() for i in range(buttons.count()))
        page.screenshot(path=SCREENSHOTS / "review-as-viewer.png", full_page=True)
    finally:
        page.context.close()
    assert not decisions.current(job)


def test_a_reviewers_decisions_carry_their_signed_in_identity(browser, team_server):
    from playwright.sync_api import expect

    url, job = team_server
    page = _sign_in(browser, url, REVIEWER)
    try:
        page.goto(f"{url}/review?job={job.name}")
        page.get_by_role("button", name="Captive / for sale").first.wait_for(timeout=60_000)
        settled(page)
        page.get_by_role("button", name="Captive / for sale").first.click()
        decided = page.locator("[data-testid='stMetric']", has_text="Distinct photos decided").locator("[data-testid='stMetricValue']")
        expect(decided).to_have_text("1", timeout=30_000)
        page.screenshot(path=SCREENSHOTS / "review-as-reviewer.png", full_page=True)
    finally:
        page.context.close()
    current = decisions.current(job)
    assert current and {decision.reviewer for decision in current.values()} == {REVIEWER}


def test_someone_not_on_the_team_list_is_turned_away(browser, team_server):
    url, _ = team_server
    page = _sign_in(browser, url, STRANGER)
    try:
        page.get_by_text("not on this server's team list").wait_for(timeout=30_000)
        assert page.get_by_role("link", name="Review").count() == 0 and "Traceback" not in page.content()
    finally:
        page.context.close()


def test_every_network_address_without_sign_in_is_refused(browser, tmp_path):
    port = _free_port()
    env = dict(os.environ, WILDVISION_SETTINGS=str(tmp_path / "absent.toml"), WILDVISION_RUNS_DIR=str(tmp_path / "runs"))
    with _serving(_streamlit(port, "--server.address", "0.0.0.0"), port, env):
        page = _open(browser, f"http://127.0.0.1:{port}/review")
        try:
            page.get_by_text("without sign-in").first.wait_for(timeout=30_000)
            assert "every network address" in page.inner_text("body")
            assert page.get_by_text("Screen a new folder of photos").count() == 0
            page.screenshot(path=SCREENSHOTS / "open-network-refused.png", full_page=True)
        finally:
            page.context.close()
