"""The worker that background processes and SLURM tasks run (`python -m wildvision.worker RUN_DIR...`):
real run folders on generated images, trained by real worker processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

from conftest import make_class_folder
from wildvision import runs
from wildvision.training.config import TrainConfig
from wildvision.training.train import start_run


def scratch_run(tmp_path: Path, name: str, **overrides) -> Path:
    """A small SqueezeNet scratch run, created (queued) and not yet started."""
    data = tmp_path / "train"
    if not data.exists():
        make_class_folder(data, {"captive": 4, "wild": 4})
    options = {"epochs": 1, "batch_size": 4, "num_workers": 0, "device": "cpu"} | overrides
    return start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), **options), tmp_path / "runs", name=name)


def worker(*run_dirs: Path, **popen) -> subprocess.Popen:
    """The worker as launch.spawn starts it, from a folder other than the clone's."""
    return subprocess.Popen(
        [sys.executable, "-m", "wildvision.worker", *map(str, run_dirs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def test_a_failed_run_is_recorded_and_the_worker_goes_on_with_the_next(tmp_path):
    weights = tmp_path / "backbone.pth"
    torch.save(torchvision.models.squeezenet1_0(weights=None).state_dict(), weights)
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    config = TrainConfig(arch="squeezenet1_0", regime="transfer", data=str(data), weights=str(weights), epochs=1, num_workers=0, device="cpu")
    failing = start_run(config, tmp_path / "runs", name="failing")
    weights.unlink()  # gone by the time the worker builds the model
    completing = scratch_run(tmp_path, "completing")

    process = worker(failing, completing, cwd=tmp_path)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1, err
    status = runs.read_json(failing / runs.STATUS)
    assert status["state"] == "failed" and str(weights) in status["message"]
    assert f"error: run {failing.name} failed: " in err and "Traceback" not in err
    assert "Traceback" in (failing / runs.LOG).read_text()  # the details stay in the run folder
    assert runs.read_run(completing).state == "completed"
    assert f"run folder: {completing}" in out and "best epoch 1 of 1" in out
    assert {runs.read_json(d / runs.STATUS)["pid"] for d in (failing, completing)} == {process.pid}


def test_a_run_without_imagenet_weights_offline_records_the_reason_and_prints_the_weights_option(tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    config = TrainConfig(arch="resnet18", regime="transfer", data=str(data), weights="imagenet", epochs=1, num_workers=0, device="cpu")
    run_dir = start_run(config, tmp_path / "runs", name="offline")
    # an empty torch cache, and HTTPS sent to a closed local port: an offline machine
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    _, err = worker(run_dir, env=env).communicate(timeout=600)
    status = runs.read_json(run_dir / runs.STATUS)
    assert status["state"] == "failed" and status["hint"] == "offline_weights"
    assert status["message"].startswith("WeightsError: ImageNet weights for resnet18 are not in ") and "--" not in status["message"]
    assert "; on a machine without internet pass a local ImageNet state dict with --weights PATH" in err and "Traceback" not in err


def test_sigterm_cancels_the_run_in_training_and_the_rest_of_the_queue(tmp_path):
    first = scratch_run(tmp_path, "first", epochs=200, patience=200)
    second = scratch_run(tmp_path, "second")
    process = worker(first, second)
    deadline = time.monotonic() + 300
    while not runs.read_metrics(first) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert runs.read_run(first).state == "running", process.communicate()[1] if process.poll() is not None else "no epoch within 300 s"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and f"cancelled {first}" in err
    assert runs.read_run(first).status["message"] == "cancelled by the user" and runs.read_run(first).status["hint"] == "resume"
    assert runs.read_run(second).state == "cancelled" and runs.read_run(second).status["message"] == "the queue was cancelled before this run started"
    assert runs.read_run(second).status["hint"] == "resume"
    assert runs.read_metrics(second) == []


def test_a_run_still_running_elsewhere_is_refused_and_left_alone(tmp_path):
    run_dir = scratch_run(tmp_path, "busy")
    runs.write_status(run_dir, "running", epoch=1)  # this test's own pid: a live process
    process = worker(run_dir)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.strip() == f"error: run {run_dir} is still running (pid {os.getpid()}); cancel it before resuming"
    assert runs.read_json(run_dir / runs.STATUS)["pid"] == os.getpid() and runs.read_metrics(run_dir) == []
