"""wildvision.catalog: every model (the shipped default and each run) as one typed record.

Runs are folders written with wildvision.runs' own writers (test_analysis.make_run), so the catalog reads them
exactly as it reads a real training run's folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import make_run, scores_with
from wildvision import catalog, model_card, runs, wording
from wildvision.models import count_parameters

ROOT = Path(__file__).resolve().parents[1]


def test_a_completed_run_is_one_typed_record_with_its_own_numbers(tmp_path):
    run_dir = make_run(
        tmp_path,
        arch="densenet121",
        with_background=False,
        scores={"test_in": scores_with(40, 2, 1, 4, 33), "test_out_pet": scores_with(30, 10, 5, 5, 20), "zoo": scores_with(5, 5, 1, 1, 8)},
    )
    record = catalog.read_model(run_dir)
    assert (record.key, record.arch, record.regime, record.dataset, record.state) == (run_dir.name, "densenet121", "transfer", "no_bg", "completed")
    assert record.params == count_parameters("densenet121") and not record.demo and record.problem is None
    assert list(record.results) == ["test_in", "test_out_pet", "zoo"]  # the paper's sets first, then others by name
    test_in = record.results["test_in"]
    assert test_in.n_images == 80 and test_in.seconds_per_image == pytest.approx(0.05)
    assert record.threshold == pytest.approx(0.3) and record.target_precision == 0.95
    assert test_in.confusion == [[40, 2], [5, 33]] and test_in.confusion_at_threshold == [[40, 2], [1, 37]]
    assert record.usable and record.has_scores and set(catalog.stored_scores(record)) == {"test_in", "test_out_pet", "zoo"}
    assert record.description == "densenet121, transfer training, without background images"


def test_the_trust_text_puts_other_websites_first_and_is_never_guessed(tmp_path):
    run_dir = make_run(tmp_path, scores={"test_in": scores_with(40, 2, 1, 4, 33), "test_out_pet": scores_with(30, 10, 5, 5, 20)})
    sentences = catalog.read_model(run_dir).trust
    assert len(sentences) == 2 and sentences[1].startswith("On held-back photos") and "other websites" in sentences[0]
    no_threshold = catalog.read_model(make_run(tmp_path))  # an old run: metrics at 0.5 only
    assert no_threshold.threshold is None and no_threshold.trust == [wording.NO_TRUST_NUMBERS]
    assert not no_threshold.usable  # no checkpoint


def test_the_default_models_trust_text_says_what_its_flags_are_worth():
    record = catalog.default_model()
    card = model_card.load_card()
    pet = card["metrics"]["test_out_pet"]["at_threshold"]
    assert record.results["test_out_pet"].precision_at_threshold == pet["positive_precision"]
    assert record.is_default and record.usable and record.demo and record.model == "default" and record.threshold == card["threshold"]["value"]
    sentences, text = record.trust, " ".join(record.trust)
    assert (
        "On photos from other websites, among them everyday photos of pets: "
        f"of every 100 photos it flagged, {wording.out_of_100(pet['positive_precision'])} really were captive / for sale; "
        f"of every 100 that were, it found {wording.out_of_100(pet['positive_recall'])}."
    ) in sentences
    assert (
        len(sentences) == 3
        and sentences[-1].startswith("On held-back photos")
        and sentences[-1].endswith("(Optimistic: these photos also helped choose the model.)")
    )
    assert "F =" not in text and "F-score" not in text and "test_out" not in text
    assert "F =" not in wording.TRUST_CAVEAT and wording.TRUST_CAVEAT.endswith("never as proof.")


def test_a_run_whose_results_cannot_be_read_keeps_its_place_and_says_why(tmp_path):
    good = make_run(tmp_path, arch="densenet121")
    bad = make_run(tmp_path, arch="alexnet")
    (bad / runs.RESULTS).write_text("{ not json", encoding="utf-8")
    records = {r.key: r for r in catalog.list_models(tmp_path, include_default=False)}
    assert records[bad.name].problem and "not valid JSON" in records[bad.name].problem and not records[bad.name].results
    assert records[good.name].problem is None
    (problem,) = catalog.problems(records.values())
    assert bad.name in problem and "left out" in problem
    assert set(catalog.results_frame(records.values())["source"]) == {good.name}


def test_usable_models_are_the_default_then_finished_runs_with_a_checkpoint(tmp_path):
    older = make_run(tmp_path, scores={"test_in": scores_with(40, 2, 1, 4, 33)})
    make_run(tmp_path, state="running")
    make_run(tmp_path)  # completed, but no checkpoint
    newer = make_run(tmp_path, arch="resnet18", scores={"test_in": scores_with(40, 2, 1, 4, 33)})
    status = runs.read_json(older / runs.STATUS)
    runs.write_json_atomic(older / runs.STATUS, status | {"created_at": "2026-01-01T00:00:00+00:00"})  # all four began this second
    keys = [record.key for record in catalog.usable_models(tmp_path)]
    assert keys == ["default", newer.name, older.name]


def test_a_run_on_the_demo_data_is_flagged_however_it_is_reached(tmp_path):
    demo = tmp_path / "shared" / "demo-data" / "train" / "captive"
    demo.mkdir(parents=True)
    (demo / "a.jpg").write_bytes(b"x")
    subset = tmp_path / "subset"
    (subset / "captive").mkdir(parents=True)
    (subset / "captive" / "a.jpg").symlink_to(demo / "a.jpg")
    linked = make_run(tmp_path / "runs", data=str(subset))
    runs.write_json_atomic(linked / runs.SPLIT, {"data": str(subset), "train": ["captive/a.jpg"], "test_in": []})
    record = catalog.read_model(linked)
    assert record.demo and "links into" in record.data and record.data.startswith(str(subset))
    assert catalog.read_model(make_run(tmp_path / "runs", data="../shared/demo-data/train")).demo
    assert not catalog.read_model(make_run(tmp_path / "runs", data="/field/photos")).demo


def test_no_page_home_or_command_reads_run_folder_json_itself():
    """The catalog is the one reader of results.json, config.json and split.json: pages and the CLI ask it."""
    readers = [ROOT / "Home.py", *sorted((ROOT / "wildvision" / "cli").glob("*.py")), *sorted((ROOT / "app_pages").glob("*.py"))]
    pattern = re.compile(r"read_json\(|\.config\[|\.config\.get\(|\.train\[|\.train\.get\(|\[\"test_sets\"\]|\.status\[|\.status\.get\(")
    found = [
        f"{path.name}:{number}: {line.strip()}" for path in readers for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
    ]
    assert found == []
