"""Adopting a retrained model for a screening job (wildvision.screening.rescore): the job re-scored from its stored
features as a new version of its scores, the old version readable, decisions kept, the job read with the new model;
refusals in words."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import copy_job
from wildvision import runs
from wildvision.models import build_model
from wildvision.predict import load_model, predict_paths
from wildvision.screening import decisions, job_features, rescore, retrain, review
from wildvision.screening.config import SCORES, read_config


def scores(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def adopted(screened_job, tmp_path):
    """A copy of the market job, decided by folder, with a threshold adopted on its first scores, and a model retrained on it."""
    job = copy_job(screened_job, tmp_path / "screens")
    rows = [row for row in scores(job / SCORES) if not row["error"]]
    truth = lambda path: "captive" if "/captive/" in path or path.endswith("repost.jpg") else "not_captive"
    decisions.decide_each(job, [("", row["path"], truth(row["path"])) for row in rows], "ana")
    decisions.adopt_threshold(job, 0.7, "ana")
    run_dir = retrain.retrain(job, runs_dir=tmp_path / "runs", held_out=set()).run_dir
    return job, run_dir


def test_adopting_a_model_rescores_the_job_as_a_new_version_keeping_the_old_one_and_the_decisions(adopted):
    job, run_dir = adopted
    before, decided = (job / SCORES).read_bytes(), decisions.current(job)
    assert rescore.current(job)["model"] == "default" and len(rescore.versions(job)) == 1
    entry = rescore.use_model(job, run_dir, "ben")
    assert (entry["version"], entry["adopted_by"], entry["file"], entry["model"]) == (2, "ben", SCORES, str(run_dir.resolve()))
    first, current = rescore.versions(job)
    assert first["file"] == "scores-versions/v1.csv" and first["model"] == "default" and rescore.current(job) == current == entry
    assert (job / first["file"]).read_bytes() == before, "the old scores stay readable as they were"
    assert decisions.current(job) == decided
    new, old = scores(job / SCORES), scores(job / first["file"])
    assert [(r["path"], r["sha256"], r["duplicate_group"], r["error"]) for r in new] == [
        (r["path"], r["sha256"], r["duplicate_group"], r["error"]) for r in old
    ]
    assert [r["probability"] for r in new] != [r["probability"] for r in old]
    # the probabilities are those the model gives when it scores the photos itself
    loaded = load_model(run_dir)
    readable = [r for r in new if not r["error"]][:6]
    fresh = predict_paths(loaded, [r["path"] for r in readable])
    np.testing.assert_allclose([p.probability for p in fresh], [float(r["probability"]) for r in readable], atol=2e-3)
    np.testing.assert_allclose([p.unlike_training for p in fresh], [float(r["unlike_training"]) for r in readable], atol=2e-2)
    assert [r["label"] for r in readable] == [loaded.label_for(float(r["probability"])) for r in readable]
    # the job is read with the new model; the threshold adopted on the old scores no longer applies
    job_read = review.read_job(job)
    assert job_read.model_file == str(run_dir / runs.CHECKPOINT) and job_read.threshold == loaded.threshold and job_read.adopted is None
    assert read_config(job).model_version == {
        "checkpoint": str((run_dir / runs.CHECKPOINT).resolve()),
        "checkpoint_mtime_ns": (run_dir / runs.CHECKPOINT).stat().st_mtime_ns,
    }
    items = review.read_items(job)
    assert items["probability"].dropna().round(6).tolist() == [float(r["probability"]) for r in new if r["probability"]]
    counts = runs.read_json(job / runs.STATUS)["counts"]
    assert counts["flagged"] == sum(r["label"] == "captive" for r in new)
    decisions.adopt_threshold(job, 0.6, "ben")
    assert review.read_job(job).threshold == 0.6, "a threshold adopted on the new scores applies"


def test_adoption_is_refused_in_words(adopted, tmp_path):
    job, run_dir = adopted
    unfinished = Path(shutil.copytree(run_dir, tmp_path / "runs" / "unfinished"))
    runs.write_status(unfinished, "running", message="training")
    with pytest.raises(runs.RunError, match="is running, not completed"):
        rescore.use_model(job, unfinished, "ben")
    other = Path(shutil.copytree(run_dir, tmp_path / "runs" / "resnet"))
    checkpoint = torch.load(other / runs.CHECKPOINT, weights_only=True)
    resnet = build_model("resnet18", weights=None)
    torch.save(checkpoint | {"arch": "resnet18", "state_dict": resnet.state_dict()}, other / runs.CHECKPOINT)
    with pytest.raises(runs.RunError, match="is a resnet18 model, but the photos of .* were screened by a efficientnet_lite0"):
        rescore.use_model(job, other, "ben")
    tuned = Path(shutil.copytree(run_dir, tmp_path / "runs" / "tuned"))
    checkpoint = torch.load(tuned / runs.CHECKPOINT, weights_only=True)
    first = next(name for name in checkpoint["state_dict"] if name.endswith("weight"))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 0.01
    torch.save(checkpoint, tuned / runs.CHECKPOINT)
    with pytest.raises(runs.RunError, match="backbone is not the one that screened"):
        rescore.use_model(job, tuned, "ben")
    with pytest.raises(ValueError, match="say who adopts"):
        rescore.use_model(job, run_dir, " ")
    (job / job_features.FEATURES).unlink()
    with pytest.raises(runs.RunError, match="has no stored photo features"):
        rescore.use_model(job, run_dir, "ben")
    assert len(rescore.versions(job)) == 1 and rescore.current(job)["model"] == "default", "nothing changed"
