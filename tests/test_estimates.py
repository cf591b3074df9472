"""Honest estimates from an audit sample: stratified point estimates that a hand computation gives, intervals that
hold at small counts, and the job's wrapper and command on conftest's screened_job (real demo photos)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_job
from wildvision.cli import main
from wildvision.screening import audit, decisions, estimates, review


def design(cells: dict[str, tuple[int, list[tuple[bool, bool]]]]) -> tuple[pd.DataFrame, dict[str, bool], dict[str, bool]]:
    """A synthetic audit: per stratum its size and its sampled units as (flagged at the line, trade)."""
    rows, trade, flagged = [], {}, {}
    for stratum, (size, units) in cells.items():
        for i, (is_flagged, is_trade) in enumerate(units):
            path = f"{stratum}/{i}.jpg"
            rows.append({"path": path, "stratum": stratum, "stratum_size": size, "score": 0.9 if is_flagged else 0.1})
            trade[path], flagged[path] = is_trade, is_flagged
    return pd.DataFrame(rows), trade, flagged


def units(flagged: bool, trade: int, other: int) -> list[tuple[bool, bool]]:
    return [(flagged, True)] * trade + [(flagged, False)] * other


def test_point_estimates_are_the_stratified_ones_a_hand_computation_gives():
    # flagged 100 photos, 10 sampled, 8 trade; uncertain 50, 10 sampled, 2 trade; rest 850, 10 sampled, none trade
    sample, trade, flagged = design({"flagged": (100, units(True, 8, 2)), "uncertain": (50, units(False, 2, 8)), "rest": (850, units(False, 0, 10))})
    found = estimates.estimate(sample, trade, flagged, 1000, line=0.5)
    trade_photos = 100 * 8 / 10 + 50 * 2 / 10  # 90
    assert found.prevalence_count.estimate == pytest.approx(trade_photos)
    assert found.prevalence.estimate == pytest.approx(trade_photos / 1000)
    assert found.precision.estimate == pytest.approx(80 / 100)
    assert found.recall.estimate == pytest.approx(80 / trade_photos)
    p, r = 0.8, 80 / trade_photos
    assert found.f_score.estimate == pytest.approx(2 * p * r / (p + r))
    assert (found.n, found.n_trade, found.total) == (30, 10, 1000)
    for interval in (found.precision, found.recall, found.prevalence, found.prevalence_count, found.f_score):
        assert interval.low < interval.estimate < interval.high
    # no trade found in the rest: its 850 photos may still hold some, so the count's interval reaches well above 90
    assert found.prevalence_count.high > trade_photos + 850 * 0.05


def test_a_line_moved_since_the_draw_is_post_stratified():
    # the new line flags 4 of the 10 uncertain sampled photos (2 of them trade): about 20 of its 50 are flagged, 10 trade
    uncertain = units(True, 2, 2) + units(False, 0, 6)
    sample, trade, flagged = design({"flagged": (100, units(True, 8, 2)), "uncertain": (50, uncertain), "rest": (850, units(False, 0, 10))})
    found = estimates.estimate(sample, trade, flagged, 1000)
    assert found.precision.estimate == pytest.approx((80 + 10) / (100 + 20))
    assert found.recall.estimate == pytest.approx(1.0)
    assert found.recall.low < 0.9  # none found below the line is not proof there is none


def test_a_fully_sampled_job_gives_the_exact_truth_inside_its_intervals():
    sample, trade, flagged = design({"flagged": (12, units(True, 9, 3)), "uncertain": (5, units(False, 1, 4)), "rest": (13, units(False, 0, 13))})
    found = estimates.estimate(sample, trade, flagged, 30)
    truth = {"precision": 9 / 12, "recall": 9 / 10, "prevalence_count": 10, "prevalence": 10 / 30}
    for name, value in truth.items():
        interval = getattr(found, name)
        assert interval.estimate == pytest.approx(value)
        assert interval.low <= value <= interval.high


def test_no_trade_found_anywhere_gives_a_wide_honest_interval_and_words_that_say_so():
    sample, trade, flagged = design({"flagged": (40, units(True, 0, 15)), "uncertain": (30, units(False, 0, 10)), "rest": (500, units(False, 0, 10))})
    found = estimates.estimate(sample, trade, flagged, 570)
    assert found.prevalence_count.estimate == 0 and found.prevalence_count.high > 10
    assert found.precision.high > 0.05
    words = " ".join(estimates.in_words(found))
    assert "No trade was found" in words and "From 35 distinct photos" in words
    nothing_flagged = estimates.estimate(sample, trade, dict.fromkeys(flagged, False), 570).to_json()
    assert nothing_flagged["precision"] == {"estimate": None, "low": None, "high": None}
    assert json.loads(json.dumps(nothing_flagged, allow_nan=False)) == nothing_flagged


def test_too_few_decisions_are_said_to_be_too_few_and_support_no_line():
    sample, trade, flagged = design({"flagged": (40, units(True, 5, 5)), "rest": (500, units(False, 0, 5))})
    found = estimates.estimate(sample, trade, flagged, 540)
    assert "too few" in estimates.in_words(found)[0]
    result = estimates.line_for_target(sample, trade, 540, 0.9)
    assert result.line is None and "decide at least 30" in result.reason


def test_the_line_for_a_target_is_the_lowest_whose_lower_bound_reaches_it():
    rows = [{"path": f"f{i}.jpg", "stratum": "flagged", "stratum_size": 40, "score": 0.5 + i * 0.0125} for i in range(40)]
    rows += [{"path": f"r{i}.jpg", "stratum": "rest", "stratum_size": 60, "score": 0.01 * i} for i in range(20)]
    sample = pd.DataFrame(rows)
    trade = {row["path"]: row["score"] >= 0.75 for row in rows}
    result = estimates.line_for_target(sample, trade, 100, 0.8)
    assert result.line is not None and result.estimates.precision.low >= 0.8
    lower = max(score for score in sample["score"] if score < result.line)
    below = estimates.estimate(sample, trade, dict(zip(sample["path"], sample["score"] >= lower)), 100)
    assert below.precision.low < 0.8


def test_to_json_names_each_estimate_with_its_interval():
    sample, trade, flagged = design({"flagged": (100, units(True, 8, 2)), "rest": (850, units(False, 1, 19))})
    out = estimates.estimate(sample, trade, flagged, 950).to_json()
    for name in ("precision", "recall", "prevalence", "prevalence_share", "f_score"):
        assert set(out[name]) == {"estimate", "low", "high"}
    assert out["prevalence"]["estimate"] == pytest.approx(80 + 850 / 20) and out["n"] == 30
    json.dumps(out)


@pytest.fixture
def job(screened_job, tmp_path) -> Path:
    return copy_job(screened_job, tmp_path)


def decide_truly(job: Path, paths: list[str]) -> None:
    found = review.read_job(job)
    entries = [("test", path, found.positive if "/captive/" in path or path.endswith("repost.jpg") else found.labels[1]) for path in paths]
    decisions.decide_each(job, entries, "ana", allowed_labels=found.class_names)


def test_the_job_estimates_use_only_the_samples_decisions_and_leave_unsure_out(job):
    assert estimates.job_estimates(job) is None
    drawn = audit.draw(job, 8, seed=11)
    decide_truly(job, drawn[:6])
    decisions.decide(job, [drawn[6]], decisions.UNSURE, "ana")
    before = estimates.job_estimates(job)
    assert before.n == 6 and before.line == review.read_job(job).threshold and before.total == 24
    outside = [path for path in review.read_items(job)["path"] if path not in audit.audit_paths(job) and not path.endswith("broken.jpg")]
    decide_truly(job, outside)
    assert estimates.job_estimates(job) == before


def test_the_command_grows_the_sample_lists_what_to_decide_and_prints_the_estimates(job, capsys):
    assert main(["audit", str(job), "--size", "5", "--seed", "3"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == audit.sample(job)["path"].tolist() and len(listed) == 5
    decide_truly(job, listed[:2])
    assert main(["audit", str(job), "--size", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == audit.to_decide(job) and len(audit.sample(job)) == 7
    assert main(["audit", str(job), "--estimate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"precision", "recall", "prevalence", "n"} <= set(out) and out["n"] == 2
    assert set(out["recall"]) == {"estimate", "low", "high"}
    assert main(["audit", str(job), "--estimate"]) == 0
    assert "too few" in capsys.readouterr().out
    assert main(["audit", str(job), "--size", "2", "--seed", "4"]) == 2
    assert capsys.readouterr().err.startswith("error: the audit sample of screening job")


def test_the_command_without_a_sample_says_how_to_draw_one(job, capsys):
    assert main(["audit", str(job), "--estimate"]) == 2
    assert "draw one with --size" in capsys.readouterr().err
    assert main(["audit", str(job)]) == 2
    assert "say --size N" in capsys.readouterr().err
