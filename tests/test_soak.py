"""Soak test: four training runs at once, two of them with the same name, while predictions are being made."""

import time

import torch

from conftest import DEMO, SQUEEZENET_WEIGHTS, demo_subset
from wildvision import runs
from wildvision.predict import load_model, predict_paths
from wildvision.training.config import TrainConfig
from wildvision.training.launch import launch_run


def test_four_concurrent_runs_and_predictions_all_finish_with_sound_run_folders(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 25, "wild": 25, "background": 10})
    test = demo_subset(tmp_path, {"captive": 10, "other": 10}, source="test_out_pet")
    common = {
        "arch": "squeezenet1_0",
        "data": str(data),
        "with_background": True,
        "weights": str(SQUEEZENET_WEIGHTS),
        "lr": 0.0001,
        "batch_size": 16,
        "epochs": 2,
        "num_workers": 0,
        "device": "cpu",
        "tests": {"test_out_pet": str(test)},
        "cache_dir": str(tmp_path / "cache"),
    }
    configs = [
        (TrainConfig(regime="transfer", **common), "same-name"),  # these two also share every cache entry
        (TrainConfig(regime="transfer", **common), "same-name"),
        (TrainConfig(regime="transfer", feature_views=0, seed=1, **common), None),
        (TrainConfig(regime="combi", head_epochs=1, **common), None),
    ]
    run_dirs = [launch_run(config, tmp_path / "runs", name) for config, name in configs]
    assert len(set(run_dirs)) == 4

    model = load_model("default")
    photos = sorted((DEMO / "test_out_nopet" / "captive").iterdir())[:6]
    reference = [p.probability for p in predict_paths(model, photos)]
    rounds = 0
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and any(runs.read_run(d).state in ("queued", "running") for d in run_dirs):
        assert [p.probability for p in predict_paths(model, photos)] == reference  # same answers under load
        rounds += 1
    assert rounds >= 1

    for run_dir in run_dirs:
        run = runs.read_run(run_dir)
        assert run.state == "completed", f"{run_dir.name}: {run.state} {run.status.get('message')}"
        for name in (runs.CONFIG, runs.STATUS, runs.SPLIT, runs.RESULTS, runs.SCORES):
            runs.read_json(run_dir / name)
        assert [row["epoch"] for row in runs.read_metrics(run_dir)] == [1, 2]
        results = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
        assert set(results) == {"test_in", "test_out_pet"} and results["test_out_pet"]["n_images"] == 20
        checkpoint = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
        assert checkpoint["arch"] == "squeezenet1_0" and checkpoint["config"]["regime"] == runs.read_json(run_dir / runs.CONFIG)["train"]["regime"]
        assert not list(run_dir.glob(".*.tmp")) and not (run_dir / runs.LAST).exists()
    same_name = [d for d in run_dirs if d.name.startswith("same-name")]
    assert len(same_name) == 2
    assert runs.read_metrics(same_name[0]) != [] and (same_name[0] / runs.LOG).read_text().count("run same-name") == 1
