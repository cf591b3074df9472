"""An audit that counts listings: a job screened from a manifest of 20 listings of two real demo photos each (10 of
captive animals, 10 of others), the shipped model. Needs ../shared."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import DEMO, copy_job
from helpers import decide_truly, run_cli, truth
from wildvision.screening import audit, estimates
from wildvision.screening.job import screen


@pytest.fixture(scope="module")
def listed_market(shared, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("listed")
    rows = []
    for class_name in ("captive", "other"):
        photos = sorted((DEMO / "test_out_pet" / class_name).iterdir())[:20]
        rows += [[str(photo), f"https://market.example/{class_name}/{n // 2}", f"{class_name}-{n // 2}"] for n, photo in enumerate(photos)]
    with open(folder / "listings.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["image", "listing_url", "post_id"], *rows])
    return screen([str(folder / "listings.csv")], screens_dir=tmp_path_factory.mktemp("screens"), name="listed")


@pytest.fixture
def job(listed_market, tmp_path) -> Path:
    return copy_job(listed_market, tmp_path)


def test_an_audit_by_listing_samples_listings_and_a_listing_is_trade_when_one_photo_is(job):
    drawn = audit.draw(job, 8, seed=1, unit=audit.LISTING)
    design = audit.design(job)
    assert design["unit"] == audit.LISTING and sum(design["sizes"].values()) == 20  # listings, not 40 photos
    assert len(drawn) == 8
    assert len(audit.to_decide(job)) == 16, "each sampled listing's two photos are to decide"
    held_out = audit.audit_paths(job)
    assert len(held_out) == 16 and set(drawn) <= held_out

    captive = next(path for path in drawn if truth(path) == "captive")
    other = next(path for path in drawn if truth(path) != "captive")
    decide_truly(job, [captive, other])  # one photo of each listing
    decided = audit.sample(job).set_index("path")["decision"]
    assert decided[captive] == "captive", "one photo decided as trade makes its listing trade"
    assert decided[other] == "", "a listing is not decided until all its photos are"

    decide_truly(job, audit.to_decide(job))
    found = estimates.job_estimates(job)
    assert found.units == "listings" and found.total == 20 and found.n == 8
    assert found.n_trade == sum(truth(path) == "captive" for path in drawn)
    assert any("listings" in sentence for sentence in estimates.in_words(found))


def test_the_unit_is_fixed_by_the_first_draw_and_needs_listings(job, screened_job, tmp_path):
    audit.draw(job, 4, seed=1, unit=audit.LISTING)
    with pytest.raises(ValueError, match="counts listings, not distinct photos"):
        audit.draw(job, 4, unit=audit.PHOTO)
    loose = copy_job(screened_job, tmp_path / "loose")
    with pytest.raises(ValueError, match="not screened from a manifest of listings"):
        audit.draw(loose, 4, unit=audit.LISTING)


def test_the_command_draws_listings_and_estimates_in_listings(job):
    result = run_cli("audit", str(job), "--size", "20", "--seed", "2", "--unit", "listing")
    assert result.returncode == 0, result.stderr
    to_decide = result.stdout.splitlines()
    assert len(to_decide) == 40 and set(to_decide) == set(audit.to_decide(job))
    decide_truly(job, to_decide)
    result = run_cli("audit", str(job), "--estimate", "--json")
    found = json.loads(result.stdout)
    assert found["units"] == "listings" and found["n"] == 20 and found["prevalence"]["estimate"] == pytest.approx(10)


def test_the_review_page_offers_an_audit_by_listing_for_a_job_of_listings(listed_market, tmp_path, monkeypatch, runs_dir):
    from streamlit.testing.v1 import AppTest

    screens = tmp_path / "screens"
    screens.mkdir()
    monkeypatch.setenv("WILDVISION_SCREENS_DIR", str(screens))
    job = copy_job(listed_market, screens)
    at = AppTest.from_file("../app_pages/review.py", default_timeout=120).run()
    at.text_input(key="reviewer").input("Ana").run()
    at.radio(key="audit-unit").set_value(audit.LISTING).run()
    at.number_input(key="audit-size").set_value(10).run()
    (draw,) = [button for button in at.button if button.label == "Choose photos at random for an audit"]
    draw.click().run()
    assert not at.exception
    assert audit.design(job)["unit"] == audit.LISTING
    assert any("The audit sample holds **10 listings**" in block.value for block in at.markdown)
    assert len(audit.to_decide(job)) == 20  # both photos of each sampled listing, shown in the audit queue
