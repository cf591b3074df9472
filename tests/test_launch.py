import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

import wildvision
from conftest import demo_subset, slow_squeezenet_config
from conftest import wait_until as poll
from wildvision import runs
from wildvision.training.config import TrainConfig
from wildvision.training.launch import PAPER_GRID, cancel_run, launch_run, load_grid, parse_named_folders, parse_weights, progress, resume_run, select_grid


def wait_until(run_dir, predicate, timeout_s=300):
    return poll(lambda: runs.read_run(run_dir), predicate, timeout_s, describe=lambda run: f"{run.state}: {run.status}")


def test_named_folders_are_parsed_and_bad_lines_explained(tmp_path):
    assert parse_named_folders(f"a={tmp_path}\n\n b = {tmp_path}/x ") == {"a": str(tmp_path), "b": str(tmp_path / "x")}
    with pytest.raises(ValueError, match="NAME=DIR"):
        parse_named_folders("just/a/folder")


def test_weights_per_architecture_are_parsed_and_bad_lines_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = ["squeezenet1_0=sq.pth", "", " mobilenet_v2 = ~/m.pth ", "resnet18=imagenet", "imagenet"]
    assert parse_weights(lines) == {
        "squeezenet1_0": str(tmp_path / "sq.pth"),
        "mobilenet_v2": str(Path("~/m.pth").expanduser()),
        "resnet18": "imagenet",
        "*": "imagenet",
    }
    assert parse_weights(["*=all.pth"]) == {"*": str(tmp_path / "all.pth")} and parse_weights(["none"]) == {"*": "none"}
    for lines, problem in (
        (["squeezenet1_0.pth"], "weights 'squeezenet1_0.pth': write ARCH=FILE"),
        (["resnet18="], "weights 'resnet18=': write ARCH=FILE"),
        (["squeezenet=sq.pth"], "weights 'squeezenet=sq.pth': unknown architecture 'squeezenet'"),
        (["resnet18=a.pth", "resnet18=b.pth"], f"weights 'resnet18=b.pth': resnet18 already has weights \\({tmp_path / 'a.pth'}\\)"),
        (["imagenet", "*=b.pth"], "weights '\\*=b.pth': every architecture already has weights \\(imagenet\\)"),
    ):
        with pytest.raises(ValueError, match=problem):
            parse_weights(lines)


def test_the_paper_grid_is_package_data():
    assert PAPER_GRID.parent == Path(wildvision.__file__).parent
    assert (resources.files("wildvision") / PAPER_GRID.name).read_text(encoding="utf-8") == PAPER_GRID.read_text(encoding="utf-8")
    installed = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["wildvision"]
    assert PAPER_GRID.name in installed


def test_paper_grid_selection_by_pattern():
    entries = load_grid()
    assert len(entries) == 24
    assert len(select_grid(entries, ["*-combi-*"])) == 4
    assert len(select_grid(entries, [])) == 24
    with pytest.raises(ValueError, match="matches none"):
        select_grid(entries, ["nothing*"])


def test_background_run_can_be_cancelled_and_resumed_to_completion(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 30, "wild": 30})
    config = slow_squeezenet_config(data, epochs=4)
    run_dir = launch_run(config, tmp_path / "runs")
    run = wait_until(run_dir, lambda r: r.state == "running" and len(runs.read_metrics(r.path)) >= 1)
    assert progress(run).words.startswith("epoch ")
    command = Path(f"/proc/{run.status['pid']}/cmdline").read_bytes().decode().split("\0")
    assert command[1:] == ["-m", "wildvision.worker", str(run_dir), ""], command  # the worker, not the user-facing CLI
    cancel_run(run_dir)
    run = wait_until(run_dir, lambda r: r.state != "running")
    assert run.state == "cancelled" and run.status["message"] == "cancelled by the user" and run.status["hint"] == "resume"
    with pytest.raises(runs.RunError, match="nothing to cancel"):
        cancel_run(run_dir)

    resume_run(run_dir)
    run = wait_until(run_dir, lambda r: r.state in ("completed", "failed"))
    assert run.state == "completed", run.status
    assert [row["epoch"] for row in runs.read_metrics(run_dir)] == list(range(1, runs.read_json(run_dir / runs.RESULTS)["epochs_run"] + 1))
    with pytest.raises(runs.RunError, match="completed"):
        resume_run(run_dir)


def test_epoch_times_leave_out_stored_features_and_a_kind_of_epoch_not_yet_timed_is_not_guessed():
    from wildvision.training.progress import epochs_left

    transfer = TrainConfig(arch="squeezenet1_0", regime="transfer", data="", epochs=10)
    metrics = [
        {"epoch": 1, "phase": "head", "on_stored_features": True, "epoch_time_s": 62.0, "feature_cache_s": 60.0},
        {"epoch": 2, "phase": "head", "on_stored_features": True, "epoch_time_s": 2.0},
    ]
    assert epochs_left(transfer, metrics) == 16.0 and epochs_left(transfer, metrics, fraction=0.5) == 15.0
    assert epochs_left(transfer, []) is None
    combi = TrainConfig(arch="squeezenet1_0", regime="combi", data="", epochs=12, head_epochs=10)  # then 2 epochs on all layers
    assert epochs_left(combi, metrics) is None  # the all-layer epochs to come have not been timed
    timed = metrics * 5 + [{"epoch": 11, "phase": "all_layers", "on_stored_features": False, "epoch_time_s": 30.0}]
    assert epochs_left(combi, timed) == 30.0


def test_durations_read_as_seconds_minutes_and_hours():
    from wildvision.jobs import format_duration

    assert [format_duration(s) for s in (0.01, 0.42, 4.25, 42.4, 59.6, 185, 2520, 7500)] == [
        "under 0.1 s",
        "0.4 s",
        "4.2 s",
        "42 s",
        "1 min 00 s",
        "3 min 05 s",
        "42 min",
        "2 h 05 min",
    ]


def test_progress_names_the_phase_and_time_left_counts_down_or_is_not_yet_known(tmp_path):
    from conftest import make_class_folder
    from wildvision.training.launch import progress_line
    from wildvision.training.train import start_run

    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="transfer", data=str(data), epochs=10, device="cpu"), tmp_path / "runs")
    assert progress_line(runs.read_run(run_dir)) == "queued: waiting to start (at most 10 epochs)"
    evaluating = {
        "phase": "evaluation",
        "words": "evaluating the test sets, now test_out_pet: 400 of 1,250 photos",
        "step": 4,
        "steps": 5,
        "done": 400,
        "total": 1250,
    }
    runs.write_status(run_dir, "running", progress=evaluating | {"phase_seconds_left": 200.0, "seconds_left": 300.0})
    run = runs.read_run(run_dir)
    assert progress(run).fraction == 400 / 1250  # the bar of the phase under way, not a full one
    seconds = r"(00|59|58) s"  # counting down from when status.json was written, a second or two ago
    line = progress_line(run)
    assert re.fullmatch(
        rf"running: step 4 of 5: evaluating the test sets, now test_out_pet: 400 of 1,250 photos; time left: about (5|4) min {seconds}", line
    ), line
    runs.write_status(run_dir, "running", progress=evaluating | {"phase_seconds_left": 240.0, "seconds_left": None})
    line = progress_line(runs.read_run(run_dir))
    assert re.fullmatch(rf"running: step 4 of 5: .*; time left: not yet known \(this step: about (4|3) min {seconds} left\)", line), line
    epochs = {"phase": "epochs", "words": "epoch 3 of at most 10", "step": 2, "steps": 5, "done": 2.5, "total": 10, "phase_seconds_left": 80.0}
    runs.write_status(run_dir, "running", progress=epochs | {"seconds_left": 3000.0})
    line = progress_line(runs.read_run(run_dir))
    assert line.endswith(("time left: at most 50 min (early stopping usually ends it sooner)", "at most 49 min (early stopping usually ends it sooner)")), line
    # An estimate written long ago that has run out while the run goes on is not shown as "under 0.1 s left"
    stale = runs.read_json(run_dir / runs.STATUS) | {"updated_at": "2020-01-01T00:00:00+00:00"}
    runs.write_json_atomic(run_dir / runs.STATUS, stale)
    assert progress_line(runs.read_run(run_dir)).endswith("time left: not yet known")


def test_the_log_tail_of_a_real_failed_run_leaves_out_its_traceback(tmp_path, monkeypatch):
    from conftest import make_class_folder
    from wildvision.models import WeightsError
    from wildvision.training.launch import log_tail
    from wildvision.training.train import execute_run, start_run

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # offline: nothing cached, downloads refused at once
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_local_port()}")
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="resnet18", regime="transfer", data=str(data), weights="imagenet", device="cpu", num_workers=0), tmp_path / "runs")
    with pytest.raises(WeightsError):
        execute_run(run_dir)
    log = (run_dir / runs.LOG).read_text()
    assert "Traceback (most recent call last):" in log and 'File "' in log and "wildvision.models.WeightsError:" in log
    tail = log_tail(run_dir)
    assert "Traceback" not in tail and 'File "' not in tail and "WeightsError:" not in tail
    assert "ERROR run failed\n[Python traceback left out: the technical details are in this run's train.log]" in tail
    assert "Traceback" in log_tail(run_dir, tracebacks=True)


def test_log_lines_after_a_traceback_are_kept():
    from wildvision.training.launch import without_tracebacks

    lines = [
        "2026-01-01 10:00:00,000 INFO epoch 1",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in f',
        "ValueError: a",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "y.py", line 2, in g',
        "RuntimeError: b",
        "  second line of its message",
        "10:00:05 resuming after epoch 1",
    ]
    assert without_tracebacks(lines, "[left out]") == ["2026-01-01 10:00:00,000 INFO epoch 1", "[left out]", "10:00:05 resuming after epoch 1"]


def test_suggested_learning_rate_per_architecture_regime_and_weights():
    from wildvision.training.config import suggested_lr

    deep = "/anywhere/squeezenet1_0-imagenet-deepcompression.pth"
    assert suggested_lr("resnet18", "transfer", "imagenet") == (0.001, "Table S5's learning rate for the transfer regime")
    assert suggested_lr("squeezenet1_0", "scratch")[0] == 0.0005
    assert suggested_lr("squeezenet1_0", "transfer", "imagenet")[0] == 0.001  # torchvision's own weights: Table S5
    lr, why = suggested_lr("squeezenet1_0", "transfer", deep)
    assert lr == 0.0001 and "deep-compression" in why and "--" not in why
    assert suggested_lr("squeezenet1_0", "combi", deep)[0] == 0.0001
    assert suggested_lr("resnet18", "combi") == (None, "Table S5's learning rates for combi: 0.001 for the 10 head-only epochs, then 0.0005 for all layers")


def test_the_shared_folder_follows_wildvision_shared(tmp_path, monkeypatch):
    from wildvision.shared import demo_data, local_weights_file, shared_folder

    monkeypatch.setenv("WILDVISION_SHARED", str(tmp_path))
    assert shared_folder() == tmp_path and demo_data() is None and local_weights_file("squeezenet1_0") is None
    (tmp_path / "demo-data" / "train").mkdir(parents=True)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mobilenet_v2-imagenet-bnfolded.pth").write_bytes(b"")
    assert demo_data() == tmp_path / "demo-data" / "train"
    assert local_weights_file("mobilenet_v2") == tmp_path / "weights" / "mobilenet_v2-imagenet-bnfolded.pth"
    assert local_weights_file("squeezenet1_0") is None


def closed_local_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
