"""Retraining a job's model on people's decisions from the photo features screening stored (wildvision.screening.retrain,
job_features): features kept aligned with scores.csv, also across a resume; an ordinary run folder with its lineage;
unsure decisions and held-out photos left out; the shipped model retrained without ../shared; refusals in words."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_job, demo_subset
from helpers import run_cli
from wildvision import catalog, novelty, runs
from wildvision.predict import load_model
from wildvision.screening import audit, decisions, job_features, retrain
from wildvision.screening.config import PARTS, SCORES
from wildvision.screening.job import create_screen, finish_screen, resume_screen

ROOT = Path(__file__).resolve().parents[1]


def scores(job: Path) -> list[dict]:
    with open(job / SCORES, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def true_label(path: str) -> str:
    return "captive" if "/captive/" in path or path.endswith("repost.jpg") else "not_captive"


def decide_all(job: Path, skip: int = 0) -> list[dict]:
    """Decide each readable photo of the market job by its folder (the last `skip` left undecided); returns the rows."""
    rows = [row for row in scores(job) if not row["error"]]
    decisions.decide_each(job, [("", row["path"], true_label(row["path"])) for row in rows[: len(rows) - skip]], "tester")
    return rows


def test_a_job_stores_each_photos_features_aligned_with_its_rows_across_a_resume(shared, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 6, "other": 6}, source="test_out_pet")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    loaded = load_model("default")
    job = create_screen([str(folder)], "default", loaded, 4, tmp_path / "screens", "aligned", part_batches=1)
    finish_screen(job, loaded, shard=(0, 2))  # what a kill between parts leaves: every other part written
    assert sorted(p.name for p in (job / PARTS).glob("features-*.npy")) == ["features-000000000.npy", "features-000000008.npy"]
    resume_screen(job)
    description, stored = job_features.read_features(job)
    rows = scores(job)
    assert not (job / PARTS).exists() and stored.shape == (len(rows), 1280) and stored.dtype == np.float16
    assert description.arch == "efficientnet_lite0" and description == job_features.describe(loaded)
    readable = [i for i, row in enumerate(rows) if not row["error"]]
    assert job_features.scored_rows(stored).tolist() == [not row["error"] for row in rows], "the broken file's row is NaN"
    direct = novelty.backbone_features(loaded, [rows[i]["path"] for i in readable])
    np.testing.assert_allclose(stored[readable].astype(np.float32), direct, rtol=2e-3, atol=2e-3)
    # each row is its own photo: the head on the stored row gives the probability scores.csv holds
    head_probabilities = retrain.head_probabilities(loaded.model._fc, stored[readable])
    np.testing.assert_allclose(head_probabilities, [float(rows[i]["probability"]) for i in readable], atol=1e-3)


def test_retrain_writes_an_ordinary_run_with_its_lineage_leaving_out_unsure_and_held_out_photos(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    rows = decide_all(job)
    unsure = [row["path"] for row in rows if "/captive/" in row["path"]][1]  # not the repost's twin
    held = next(row["path"] for row in rows if "/other/" in row["path"])
    decisions.decide(job, [unsure], "unsure", "tester")
    result = retrain.retrain(job, "default", "better", tmp_path / "runs", held_out={held})
    run_dir = result.run_dir
    lineage = runs.read_json(run_dir / runs.CONFIG)["retrain"]
    # 26 files: 12 + 12 photos, a repost of the first captive one (one photo with it) and a broken file; 1 unsure, 1 held out
    assert lineage["decisions_used"] == {"captive": 11, "not_captive": 11}
    assert (lineage["unsure_left_out"], lineage["held_out_photos"], lineage["base_model"]) == (1, 1, "default")
    assert lineage["screening_job"] == str(job.resolve()) and lineage["code_version"] not in ("", None)
    assert runs.read_run(run_dir).state == "completed"
    record = catalog.read_model(run_dir)
    assert record.usable and record.problem is None and record.threshold == result.threshold
    assert set(record.results) == {"test_in", "held_out_decisions"} and record.results["held_out_decisions"].n_images == 1
    assert run_dir in [model.path for model in catalog.list_models(tmp_path / "runs")]
    loaded = load_model(run_dir)
    assert loaded.arch == "efficientnet_lite0" and loaded.threshold == result.threshold and loaded.novelty is not None
    # the new head was fitted: the decided photos' probabilities moved from the shipped model's
    before = load_model("default")
    _, stored = job_features.read_features(job)
    readable = [i for i, row in enumerate(scores(job)) if not row["error"]]
    moved = retrain.head_probabilities(loaded.model._fc, stored[readable]) - retrain.head_probabilities(before.model._fc, stored[readable])
    assert np.abs(moved).max() > 0.01


def test_predict_and_evaluate_run_on_a_retrained_model(shared, screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    decide_all(job)
    run_dir = retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set()).run_dir
    photo = min((shared / "demo-data" / "test_out_nopet" / "captive").iterdir())
    predicted = run_cli("predict", str(run_dir), str(photo))
    assert predicted.returncode == 0 and photo.name in predicted.stdout, predicted.stderr[-2000:]
    test = demo_subset(tmp_path, {"captive": 4, "other": 4}, source="test_out_nopet")
    evaluated = run_cli("evaluate", str(run_dir), "--test", f"nopet={test}", "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert catalog.read_model(run_dir).results["nopet"].n_images == 8


def test_the_shipped_model_is_retrained_without_the_shared_folder(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    decide_all(job)
    (tmp_path / "empty").mkdir()
    env = os.environ | {"WILDVISION_SHARED": str(tmp_path / "empty")}
    env.pop("WILDVISION_REQUIRE_SHARED", None)
    code = "import sys; from wildvision.screening.retrain import retrain; print(retrain(sys.argv[1], runs_dir=sys.argv[2], held_out=set()).run_dir)"
    done = subprocess.run([sys.executable, "-c", code, str(job), str(tmp_path / "runs")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    assert runs.read_run(run_dir).state == "completed" and (run_dir / runs.CHECKPOINT).is_file()
    assert (ROOT / "wildvision" / "default_model" / retrain.DEFAULT_FEATURES).stat().st_size < 10_000_000


def test_retrain_refuses_in_words(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    with pytest.raises(runs.RunError, match="has no photo decided as one of its classes"):
        retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set())
    decide_all(job)
    good = retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set()).run_dir
    with pytest.raises(runs.RunError, match="was itself retrained on decisions"):
        retrain.retrain(job, str(good), runs_dir=tmp_path / "runs", held_out=set())
    unfinished = Path(shutil.copytree(good, tmp_path / "runs" / "unfinished"))
    runs.write_json_atomic(unfinished / runs.CONFIG, {k: v for k, v in runs.read_json(good / runs.CONFIG).items() if k != "retrain"})
    runs.write_status(unfinished, "failed", message="stopped")
    with pytest.raises(runs.RunError, match="is failed, not completed"):
        retrain.retrain(job, str(unfinished), runs_dir=tmp_path / "runs", held_out=set())
    (job / job_features.FEATURES).unlink()
    with pytest.raises(runs.RunError, match="has no stored photo features"):
        retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set())
    result = run_cli("retrain", str(job), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "has no stored photo features" in result.stderr and "Traceback" not in result.stderr


def test_a_head_that_is_not_linear_is_refused(completed_run, screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    decide_all(job)
    with pytest.raises(runs.RunError, match="head is not one linear layer"):
        retrain.retrain(job, str(completed_run), runs_dir=tmp_path / "runs", held_out=set())


def test_features_of_another_backbone_are_refused(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    decide_all(job)
    description = job_features.read_description(job)
    job_features.write_description(job, job_features.Description(description.arch, "0" * 32, description.dim))
    with pytest.raises(runs.RunError, match="retrain from the model that screened the job"):
        retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set())


def test_a_completed_run_is_retrained_from_its_photos_features_computed_once(screened_job, tmp_path):
    """A small EfficientNet-Lite0 transfer run: its backbone is the packaged ImageNet one, as the shipped model's, so
    the job the shipped model screened fits it; its training photos' features come from the feature store."""
    from wildvision.training.config import TrainConfig
    from wildvision.training.train import execute_run, start_run

    data = demo_subset(tmp_path, {"captive": 20, "wild": 20, "background": 6})
    config = TrainConfig(
        arch="efficientnet_lite0",
        regime="transfer",
        data=str(data),
        with_background=True,
        epochs=2,
        feature_views=1,
        num_workers=0,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
    )
    base = start_run(config, tmp_path / "runs", "small")
    execute_run(base)
    job = copy_job(screened_job, tmp_path / "screens")
    decide_all(job)
    result = retrain.retrain(job, str(base), runs_dir=tmp_path / "runs", held_out=set())
    lineage = runs.read_json(result.run_dir / runs.CONFIG)["retrain"]
    split = runs.read_json(base / runs.SPLIT)
    assert lineage["base_model"] == str(base.resolve()) and lineage["base_training_photos"] == len(split["train"])
    assert catalog.read_model(result.run_dir).results["test_in"].n_images == len(split["test_in"])
    assert load_model(result.run_dir).arch == "efficientnet_lite0"
    # a second retrain reads the photos' features from the store: no photo is decoded again
    entries = lambda: {p: p.stat().st_ino for p in (tmp_path / "cache").rglob("*.npy")}  # reading an entry touches its time (LRU)
    stored = entries()
    assert len(stored) >= len(split["train"]) + len(split["test_in"])
    again = retrain.retrain(job, str(base), runs_dir=tmp_path / "runs", held_out=set())
    assert entries() == stored and again.threshold == result.threshold, "every entry read, none written again"


def test_the_audit_sample_is_held_out_and_the_command_prints_the_new_run_last(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")
    rows = decide_all(job)
    sampled = audit.draw(job, 4, seed=1)
    held = audit.audit_paths(job)
    assert set(sampled) <= held
    result = run_cli("retrain", str(job), "--name", "from-market", "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("from-market-")
    lineage = runs.read_json(run_dir / runs.CONFIG)["retrain"]
    groups = {row["duplicate_group"] for row in rows if row["path"] in held}
    assert lineage["held_out_photos"] == len(groups) == 4, "each sampled photo held out once, with its reposts"
    assert sum(lineage["decisions_used"].values()) == len({row["duplicate_group"] for row in rows}) - 4
    assert catalog.read_model(run_dir).results["held_out_decisions"].n_images == 4
