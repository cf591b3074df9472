"""The Review page's market monitoring with AppTest on a real job (demo photos, the shipped model): the audit queue,
estimates in words equal to the library's, a retrain started from the page, the two models on the audit photos, and
adopting the retrained one. Needs ../shared."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from app_pages.review_audit import AUDIT_QUEUE
from conftest import wait_until as poll
from helpers import decide_truly
from wildvision.screening import audit, candidates, decisions, estimates, rescore, review

PAGE = "../app_pages/review.py"


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input(key="reviewer").input("Ana").run()
    return at


def button(at: AppTest, label: str):
    (found,) = [b for b in at.button if b.label == label]
    return found


def buttons_named(at: AppTest, label: str) -> list:
    return [b for b in at.button if b.label == label]


def texts(at: AppTest) -> str:
    return "\n".join(block.value for block in at.markdown)


def test_an_audit_drawn_on_the_page_is_its_own_queue_and_its_estimates_are_the_librarys(market_job):
    at = page()
    assert "Choose photos at random" in " ".join(b.label for b in at.button)
    at.number_input(key="audit-size").set_value(40).run()
    button(at, "Choose photos at random for an audit").click().run()
    assert not at.exception
    drawn = audit.sample(market_job)
    assert len(drawn) == 40 and set(drawn["stratum"]) <= set(audit.STRATA)
    assert at.radio(key="review-queue").value == AUDIT_QUEUE
    shown = [b for b in at.button if b.label == "Captive / for sale"]
    assert len(shown) == min(12, 40)  # the first grid page of the audit queue

    decide_truly(market_job, audit.to_decide(market_job))
    at = page()
    found = estimates.job_estimates(market_job)
    assert found.n == 40
    for sentence in estimates.in_words(found):
        assert sentence.replace("(", "\\(").replace(")", "\\)") in texts(at) or sentence in texts(at), sentence
    at.radio(key="review-queue").set_value(AUDIT_QUEUE).run()
    assert not [b for b in at.button if b.label == "Captive / for sale"], "every audit photo is decided"


def test_a_retrain_started_on_the_page_is_compared_on_the_audit_and_adopted(market_job, runs_dir):
    audit.draw(market_job, 30, seed=3)
    decide_truly(market_job, audit.to_decide(market_job))
    items = review.read_items(market_job)
    outside = [p for p in items.loc[items["probability"].notna(), "path"] if p not in audit.audit_paths(market_job)]
    decide_truly(market_job, outside[:10])
    at = page()
    button(at, "Retrain from the decisions").click().run()
    assert not at.exception
    poll(lambda: candidates.candidates(market_job, runs_dir), bool, timeout_s=300, describe=lambda _: str(candidates.retrain_requests(market_job)))
    (record,) = [candidate.record for candidate in candidates.candidates(market_job, runs_dir)]
    assert record.config["retrain"]["held_out_photos"] >= 30

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input(key="reviewer").input("Ana").run()
    assert not at.exception
    comparison = candidates.compare(market_job, record.path)
    (table,) = [frame.value for frame in at.dataframe if "Model" in frame.value.columns]
    assert list(table["Model"]) == ["The job's model", "The retrained model"]
    new = comparison.candidate.precision
    assert table.iloc[1, 2] == f"{new.estimate:.0%} ({new.low:.0%} to {new.high:.0%})"
    before = {path: d.label for path, d in decisions.current(market_job).items()}

    button(at, "Use this model for the job").click().run()
    assert not at.exception
    assert len(rescore.versions(market_job)) == 2 and rescore.current(market_job)["adopted_by"] == "Ana"
    assert {path: d.label for path, d in decisions.current(market_job).items()} == before
    assert review.read_job(market_job).model_file == rescore.current(market_job)["model_file"]
    assert any("scores the job now" in block.value for block in at.success) and not buttons_named(at, "Use this model for the job")
