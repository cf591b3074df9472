"""A screening job's audit sample: drawn at random by score band, reproducible, growable, kept in decisions.sqlite.
Reviews conftest's screened_job: 24 real demo photos screened with the shipped model, a repost and a broken file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_job
from wildvision.screening import audit, decision_store, decisions, review
from wildvision.screening.config import SCORES


@pytest.fixture
def job(screened_job, tmp_path) -> Path:
    return copy_job(screened_job, tmp_path / "a")


@pytest.fixture
def twin(screened_job, tmp_path) -> Path:
    return copy_job(screened_job, tmp_path / "b")


def test_a_sample_grown_twice_equals_one_drawn_at_once_with_the_same_seed(job, twin):
    first = audit.draw(job, 5, seed=7)
    grown = audit.draw(job, 6)
    assert grown[:5] == first and len(grown) == 11
    assert audit.draw(twin, 11, seed=7) == grown
    assert audit.sample(job)["path"].tolist() == grown


def test_a_job_rescored_after_the_first_draw_grows_the_sample_it_began(job, twin):
    audit.draw(job, 4, seed=8)
    scores = pd.read_csv(job / SCORES, dtype=str, keep_default_na=False)
    readable = scores["probability"] != ""
    scores.loc[readable, "probability"] = (1 - scores.loc[readable, "probability"].astype(float)).astype(str)  # another model's view
    scores.to_csv(job / SCORES, index=False)
    assert audit.draw(job, 6) == audit.draw(twin, 10, seed=8)
    assert audit.sample(job)["score"].notna().all()


def test_the_sample_is_distinct_readable_photos_with_the_strata_and_line_of_the_first_draw(job):
    items = review.read_items(job)
    photos = items[items["error"] == ""].drop_duplicates("group")
    drawn = audit.draw(job, 100, seed=1)
    assert len(drawn) == len(photos) == len(set(drawn))  # the job runs out: every distinct photo once, the broken file never
    assert not any(path.endswith("broken.jpg") for path in drawn)
    design = audit.design(job)
    job_line = review.read_job(job).threshold
    assert design["seed"] == 1 and design["line"] == job_line
    frame = audit.sample(job)
    by_band = review.bands(frame["score"], job_line).replace({review.BELOW: audit.REST})
    assert (frame["stratum"] == by_band).all()
    assert design["sizes"] == frame["stratum"].value_counts().reindex(audit.STRATA, fill_value=0).to_dict()
    assert (frame["inclusion_probability"] == 1.0).all()  # every stratum fully sampled


def test_allocation_follows_the_shares_and_passes_a_full_stratum_on():
    order = audit.allocation(100, {audit.FLAGGED: 1000, audit.UNCERTAIN: 1000, audit.REST: 1000})
    assert [order.count(s) for s in audit.STRATA] == [40, 35, 25]
    order = audit.allocation(100, {audit.FLAGGED: 1000, audit.UNCERTAIN: 5, audit.REST: 1000})
    assert order.count(audit.UNCERTAIN) == 5 and len(order) == 100
    assert audit.allocation(50, {audit.FLAGGED: 10, audit.UNCERTAIN: 0, audit.REST: 3}).count(audit.FLAGGED) == 10
    assert audit.allocation(60, {s: 1000 for s in audit.STRATA})[:40] == audit.allocation(40, {s: 1000 for s in audit.STRATA})


def test_inclusion_probabilities_are_each_stratums_sampled_share(job):
    audit.draw(job, 6, seed=2)
    frame = audit.sample(job)
    for stratum, rows in frame.groupby("stratum"):
        assert (rows["inclusion_probability"] == len(rows) / rows["stratum_size"]).all()


def test_audit_paths_hold_every_member_of_a_sampled_repost_group(job):
    items = review.read_items(job)
    repost = items.loc[items["path"].str.endswith("repost.jpg"), "group"].iloc[0]
    members = set(items.loc[items["group"] == repost, "path"])
    assert len(members) == 2
    audit.draw(job, 100, seed=3)
    assert members <= audit.audit_paths(job)
    assert len(audit.audit_paths(job)) == len(audit.sample(job)) + 1  # one extra file: the repost's twin


def test_a_job_without_a_sample_has_none(job):
    assert audit.sample(job) is None and audit.audit_paths(job) == set() and audit.to_decide(job) == []


def test_to_decide_drops_units_decided_anywhere_and_counts_unsure_as_decided(job):
    drawn = audit.draw(job, 6, seed=4)
    decisions.decide(job, [drawn[0]], "captive", "ana")
    decisions.decide(job, [drawn[1]], decisions.UNSURE, "ana")
    assert audit.to_decide(job) == drawn[2:]


def test_a_later_draw_keeps_the_seed_and_refuses_another(job):
    audit.draw(job, 2, seed=5)
    with pytest.raises(ValueError, match="drawn with seed 5"):
        audit.draw(job, 2, seed=6)
    with pytest.raises(ValueError, match="at least 1"):
        audit.draw(job, 0)


def test_a_damaged_store_is_refused_in_words_and_left_as_it_is(job):
    (job / decision_store.DATABASE).write_bytes(b"not a database at all, just bytes" * 100)
    with pytest.raises(decisions.DecisionsUnreadable, match="damaged"):
        audit.sample(job)
    with pytest.raises(decisions.DecisionsUnreadable, match="damaged"):
        audit.draw(job, 3, seed=1)
    assert (job / decision_store.DATABASE).read_bytes().startswith(b"not a database")


def test_a_store_of_schema_two_gains_the_audit_tables_and_keeps_its_decisions(job):
    decisions.decide(job, [review.read_items(job)["path"].iloc[0]], "captive", "ana")
    with sqlite3.connect(job / decision_store.DATABASE) as connection:
        connection.execute("DROP TABLE audit")
        connection.execute("DROP TABLE audit_design")
        connection.execute("DROP TABLE audit_frame")
        connection.execute("PRAGMA user_version = 2")
    assert audit.sample(job) is None
    audit.draw(job, 3, seed=1)
    assert len(audit.sample(job)) == 3 and len(decisions.current(job)) == 1
