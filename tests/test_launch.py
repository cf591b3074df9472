import time

import pytest

from wildvision import runs
from wildvision.launch import cancel_run, launch_run, load_grid, parse_named_folders, progress, resume_run, select_grid
from wildvision.train import TrainConfig
from conftest import SQUEEZENET_WEIGHTS, demo_subset


def wait_until(run_dir, predicate, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = runs.read_run(run_dir)
        if predicate(run):
            return run
        time.sleep(0.3)
    raise AssertionError(f"timed out; last state {runs.read_run(run_dir).state}: {runs.read_run(run_dir).status}")


def test_named_folders_are_parsed_and_bad_lines_explained(tmp_path):
    assert parse_named_folders(f"a={tmp_path}\n\n b = {tmp_path}/x ") == {"a": str(tmp_path), "b": str(tmp_path / "x")}
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_named_folders("just/a/folder")


def test_paper_grid_selection_by_pattern():
    entries = load_grid()
    assert len(entries) == 24
    assert len(select_grid(entries, ["*-combi-*"])) == 4
    assert len(select_grid(entries, [])) == 24
    with pytest.raises(ValueError, match="matches none"):
        select_grid(entries, ["nothing*"])


def test_background_run_can_be_cancelled_and_resumed_to_completion(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 30, "wild": 30})
    # The plain loop (feature_views=0): epochs on stored features could all finish before the cancel arrives.
    config = TrainConfig(arch="squeezenet1_0", regime="transfer", data=str(data), weights=str(SQUEEZENET_WEIGHTS),
                         epochs=4, batch_size=8, lr=0.0001, num_workers=0, device="cpu", feature_views=0)
    run_dir = launch_run(config, tmp_path / "runs")
    run = wait_until(run_dir, lambda r: r.state == "running" and len(runs.read_metrics(r.path)) >= 1)
    assert progress(run).seconds_per_epoch > 0
    cancel_run(run_dir)
    run = wait_until(run_dir, lambda r: r.state != "running")
    assert run.state == "cancelled" and "resume" in run.status["message"]
    with pytest.raises(runs.RunError, match="nothing to cancel"):
        cancel_run(run_dir)

    resume_run(run_dir)
    run = wait_until(run_dir, lambda r: r.state in ("completed", "failed"))
    assert run.state == "completed", run.status
    assert [row["epoch"] for row in runs.read_metrics(run_dir)] == list(range(1, runs.read_json(run_dir / runs.RESULTS)["epochs_run"] + 1))
    with pytest.raises(runs.RunError, match="completed"):
        resume_run(run_dir)


def test_time_left_leaves_out_the_one_off_computation_of_stored_features(tmp_path):
    from conftest import make_class_folder
    from wildvision.train import start_run

    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), epochs=10, device="cpu"), tmp_path / "runs")
    runs.append_metrics(run_dir, {"epoch": 1, "epoch_time_s": 62.0, "feature_cache_s": 60.0})
    runs.append_metrics(run_dir, {"epoch": 2, "epoch_time_s": 2.0})
    runs.write_status(run_dir, "running", epoch=2)
    estimate = progress(runs.read_run(run_dir))
    assert estimate.seconds_per_epoch == 2.0 and estimate.seconds_left_at_most == 16.0
