"""Server settings and rendering: XSRF stays on, uploads are capped, and no user-provided text becomes HTML."""

import re
import tomllib
from pathlib import Path

from streamlit.testing.v1 import AppTest

from conftest import DEMO

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>**bold**'


def test_xsrf_protection_is_on_and_uploads_are_capped():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["enableXsrfProtection"] is True and server.get("enableCORS", True) is True
    assert 1 <= server["maxUploadSize"] <= 200  # MB per file


def test_no_page_can_render_raw_html():
    sources = [ROOT / "Home.py", *sorted((ROOT / "app_pages").glob("*.py"))]
    for source in sources:
        text = source.read_text()
        assert not re.search(r"unsafe_allow_html\s*=\s*True|st\.html\(|components\.v1|components\.html", text), source.name


def test_an_uploaded_file_name_full_of_markup_is_shown_as_text(shared, runs_dir):
    photo = min((DEMO / "test_out_pet" / "captive").iterdir()).read_bytes()
    at = AppTest.from_file("../app_pages/predict.py", default_timeout=120).run()
    at.file_uploader[0].upload(f"{HOSTILE}.jpg", photo, "image/jpeg").run()
    assert not at.exception
    shown = [element for element in at.markdown if "alert" in element.value]
    assert shown, "the file name should be shown"
    for element in shown:
        assert not element.proto.allow_html
        assert re.findall(r"(?<!\\)[<>]", element.value) == [], element.value  # every angle bracket escaped: shown as text
        assert "\\*\\*bold\\*\\*" in element.value  # and markdown markers in the name too
