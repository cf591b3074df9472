"""Integration tests: real training runs on a subset of ../shared/demo-data with the offline SqueezeNet weights."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import SQUEEZENET_WEIGHTS, demo_subset, train_args
from helpers import run_cli
from wildvision import runs
from wildvision.data import scan_folder
from wildvision.evaluate import compute_metrics
from wildvision.predict import load_model, predict_paths
from wildvision.training.config import TrainConfig

TRAIN_COUNTS = {"captive": 60, "wild": 60, "background": 20}
TEST_COUNTS = {"captive": 20, "other": 40}
RUN_FILES = (runs.CONFIG, runs.STATUS, runs.SPLIT, runs.METRICS, runs.RESULTS, runs.CHECKPOINT, runs.LOG)


@pytest.fixture(scope="module")
def trained_run(completed_run):
    data, test = (completed_run.parents[1] / name for name in ("train", "test_out_pet"))
    return completed_run, data, test


def test_run_folder_holds_every_file_of_the_contract(trained_run):
    run_dir, _, _ = trained_run
    assert all((run_dir / name).is_file() for name in RUN_FILES)
    assert not (run_dir / runs.LAST).exists()
    status = runs.read_json(run_dir / runs.STATUS)
    assert status["state"] == "completed" and status["epoch"] == 3 and status["finished_at"]
    config = runs.read_json(run_dir / runs.CONFIG)
    assert len(config["data_hash"]) == 64 and config["n_parameters"] == 736_450
    TrainConfig(**config["train"])  # enough to re-run it
    assert [row["epoch"] for row in runs.read_metrics(run_dir)] == [1, 2, 3]
    assert [row["on_stored_features"] for row in runs.read_metrics(run_dir)] == [True, True, True]
    assert "feature_cache_s" in runs.read_metrics(run_dir)[0]
    assert {"train_loss", "val_loss", "val_f_score", "epoch_time_s"} <= set(runs.read_metrics(run_dir)[0])


def test_split_is_stratified_80_20_and_disjoint(trained_run):
    run_dir, _, _ = trained_run
    split = runs.read_json(run_dir / runs.SPLIT)
    assert len(split["test_in"]) == 28 and len(split["train"]) == 112
    assert not set(split["train"]) & set(split["test_in"])
    assert sum(p.startswith("background/") for p in split["test_in"]) == 4


def test_transfer_learning_beats_chance_on_test_in(trained_run):
    run_dir, _, _ = trained_run
    results = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
    majority_share = 16 / 28  # negatives (12 wild + 4 background) in test_in
    assert results["test_in"]["accuracy"] >= majority_share + 0.1
    assert results["test_in"]["n_images"] == 28 and results["test_out_pet"]["n_images"] == 60


def test_checkpoint_loads_safely_and_carries_what_rebuilds_it(trained_run):
    run_dir, _, _ = trained_run
    checkpoint = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
    assert checkpoint["arch"] == "squeezenet1_0" and checkpoint["class_names"] == ["not_captive", "captive"]
    rule = runs.read_json(run_dir / runs.RESULTS)["threshold"]
    assert checkpoint["threshold"] == rule["threshold"] and checkpoint["threshold_rule"]["target_precision"] == 0.95
    assert checkpoint["normalisation"]["input_size"] == 224


def test_decision_threshold_meets_the_target_precision_on_test_in(trained_run):
    run_dir, _, _ = trained_run
    results = runs.read_json(run_dir / runs.RESULTS)
    at = results["test_sets"]["test_in"]["at_threshold"]
    assert at["threshold"] == results["threshold"]["threshold"]
    if results["threshold"]["met"]:
        assert at["positive_precision"] >= 0.95
    scores = runs.read_json(run_dir / runs.SCORES)
    assert len(scores["test_out_pet"]["probabilities"]) == results["test_sets"]["test_out_pet"]["n_images"]


def test_predict_agrees_with_the_stored_test_in_results(trained_run):
    run_dir, data, _ = trained_run
    split = runs.read_json(run_dir / runs.SPLIT)
    by_path = {str(s.path.relative_to(data)): s for s in scan_folder(data)}
    samples = [by_path[p] for p in split["test_in"]]
    predictions = predict_paths(load_model(run_dir), [s.path for s in samples])
    metrics = compute_metrics([s.label for s in samples], [p.probability for p in predictions])
    stored = runs.read_json(run_dir / runs.RESULTS)["test_sets"]["test_in"]
    assert metrics["confusion_matrix"] == stored["confusion_matrix"]
    assert metrics["f_score"] == pytest.approx(stored["f_score"])


def test_predict_cli_writes_csv_and_reports_unreadable_images(trained_run, tmp_path):
    run_dir, _, test = trained_run
    folder = tmp_path / "mixed"
    folder.mkdir()
    for image in sorted((test / "captive").iterdir())[:3]:
        (folder / image.name).symlink_to(image.resolve())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = run_cli("predict", "--model", str(run_dir), str(folder), "--csv", str(tmp_path / "out.csv"))
    assert result.returncode == 1  # some images failed
    assert "broken.jpg" in result.stderr and "Traceback" not in result.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "path,probability,label,unlike_training,unusual" and len(lines) == 4
    assert all(0 <= float(line.split(",")[1]) <= 1 for line in lines[1:])
    assert (run_dir / "novelty.npz").is_file()  # the run keeps what its predictions' unlike-training score needs
    assert all(float(line.split(",")[3]) >= 0 and line.split(",")[4] in ("true", "false") for line in lines[1:])


def test_evaluate_reproduces_the_stored_out_of_distribution_results(trained_run):
    run_dir, _, test = trained_run
    before = runs.read_json(run_dir / runs.RESULTS)["test_sets"]["test_out_pet"]
    result = run_cli("evaluate", str(run_dir), "--test", f"again={test}", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    after = runs.read_json(run_dir / runs.RESULTS)["test_sets"]
    assert after["again"]["confusion_matrix"] == before["confusion_matrix"]
    assert after["again"]["f_score"] == pytest.approx(before["f_score"])
    assert after["test_out_pet"] == before


def test_a_run_killed_mid_epoch_resumes_and_finishes(shared, tmp_path):
    data = demo_subset(tmp_path, TRAIN_COUNTS)
    runs_dir = tmp_path / "runs"
    # The plain loop (--feature-views 0): its epochs are long enough to be killed in the middle of one.
    process = subprocess.Popen(
        [sys.executable, "-m", "wildvision", *train_args(data, runs_dir, "--epochs", "4", "--feature-views", "0")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    run_dir = None
    while time.monotonic() < deadline:
        folders = list(runs_dir.glob("*")) if runs_dir.exists() else []
        if folders and len(runs.read_metrics(folders[0])) >= 1:
            run_dir = folders[0]
            break
        time.sleep(0.2)
    assert run_dir is not None, "the run did not finish its first epoch in time"
    time.sleep(1.0)  # well inside epoch 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert runs.read_run(run_dir).state == runs.INTERRUPTED
    epochs_done = len(runs.read_metrics(run_dir))
    assert epochs_done < 4

    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs.read_run(run_dir).state == "completed"
    assert [row["epoch"] for row in runs.read_metrics(run_dir)] == [1, 2, 3, 4]
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())
    assert "resuming after epoch" in (run_dir / runs.LOG).read_text()


def test_a_run_killed_while_computing_stored_features_resumes_without_recomputing_them(shared, tmp_path):
    data = demo_subset(tmp_path, TRAIN_COUNTS)
    runs_dir, cache = tmp_path / "runs", tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-m", "wildvision", *train_args(data, runs_dir, "--epochs", "2", "--cache-dir", str(cache))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(cache.glob("features/*/*.npy"))) < 20:
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    (run_dir,) = runs_dir.iterdir()
    assert runs.read_run(run_dir).state == runs.INTERRUPTED and runs.read_metrics(run_dir) == []
    assert runs.read_json(run_dir / runs.STATUS)["progress"]["words"].startswith("computing stored features: ")

    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert runs.read_run(run_dir).state == "completed" and len(runs.read_metrics(run_dir)) == 2
    log = (run_dir / runs.LOG).read_text()
    computed = [int(n) for n in re.findall(r"backbone features of 5 views: (\d+) of 112 images to compute", log)]
    assert computed[0] == 112 and computed[-1] <= 112 - 20, computed  # the second attempt reused the 20 or more the first stored


def _random_backbone(path, arch="squeezenet1_0"):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), path)
    return path


def test_combi_trains_the_head_first_then_all_layers(tmp_path):
    from conftest import make_class_folder
    from wildvision.training.train import execute_run, start_run

    data = make_class_folder(tmp_path / "train", {"captive": 10, "wild": 10})
    weights = _random_backbone(tmp_path / "backbone.pth")
    config = TrainConfig(
        arch="squeezenet1_0", regime="combi", data=str(data), weights=str(weights), epochs=3, head_epochs=2, batch_size=8, num_workers=0, device="cpu"
    )
    run_dir = start_run(config, tmp_path / "runs")
    execute_run(run_dir)
    assert [row["phase"] for row in runs.read_metrics(run_dir)] == ["head", "head", "all_layers"]
    first_conv = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)["state_dict"]["features.0.weight"]
    frozen = torch.load(weights, weights_only=True)["features.0.weight"]
    best_epoch = runs.read_json(run_dir / runs.RESULTS)["best_epoch"]
    assert torch.equal(first_conv, frozen) == (best_epoch <= 2)  # backbone untouched while only the head trains


def test_scratch_runs_repeat_exactly_with_the_same_seed(tmp_path):
    from conftest import make_class_folder
    from wildvision.training.train import execute_run, start_run

    data = make_class_folder(tmp_path / "train", {"captive": 8, "wild": 8})
    losses = []
    for attempt in range(2):
        config = TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), epochs=2, batch_size=4, num_workers=1, device="cpu", seed=7)
        run_dir = start_run(config, tmp_path / f"runs{attempt}")
        execute_run(run_dir)
        losses.append([(row["train_loss"], row["val_loss"]) for row in runs.read_metrics(run_dir)])
    assert losses[0] == losses[1]


def test_scratch_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="random init"):
        TrainConfig(arch="resnet18", regime="scratch", data="x", weights="imagenet")


def test_a_grid_entry_becomes_the_same_run_config_from_the_cli_and_the_page():
    from wildvision.training.launch import grid_name, load_grid

    weights = {"squeezenet1_0": "/w/squeezenet.pth", "*": "/w/any.pth"}
    sq = TrainConfig.from_grid_entry({"arch": "squeezenet1_0", "regime": "combi", "background": True}, data="/d", weights=weights, epochs=3, lr=0.01)
    assert (sq.name, sq.with_background, sq.weights, sq.data, sq.epochs, sq.lr) == ("squeezenet1_0-combi-bg", True, "/w/squeezenet.pth", "/d", 3, 0.01)
    other = TrainConfig.from_grid_entry({"arch": "resnet18", "regime": "transfer", "background": False}, data="/d", weights=weights)
    assert (other.name, other.weights) == ("resnet18-transfer-no_bg", "/w/any.pth")
    scratch = TrainConfig.from_grid_entry({"arch": "squeezenet1_0", "regime": "scratch", "background": True}, data="/d", weights=weights)
    assert scratch.weights == "none"  # whatever weights are given: scratch trains from random init
    assert TrainConfig.from_grid_entry({"arch": "resnet18", "regime": "transfer", "background": True}, data="/d").weights == "imagenet"
    assert [grid_name(entry) for entry in load_grid()][-2:] == ["vgg11_bn-combi-bg", "vgg19_bn-combi-bg"]


def test_grid_runs_the_chosen_configurations_and_reports_failures(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 12, "wild": 12, "background": 6})
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[[run]]\narch = "squeezenet1_0"\nregime = "transfer"\nbackground = true\n\n'
        '[[run]]\narch = "resnet18"\nregime = "transfer"\nbackground = true\n\n'
        '[[run]]\narch = "vgg11_bn"\nregime = "transfer"\nbackground = false\n'
    )
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wildvision",
            "grid",
            str(grid),
            "--data",
            str(data),
            "--only",
            "*-bg",
            "--weights",
            f"squeezenet1_0={SQUEEZENET_WEIGHTS}",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 1  # resnet18 has no offline ImageNet weights here
    assert "2 of 3 configurations" in result.stdout and "1 completed, 1 failed: resnet18-transfer-bg" in result.stdout
    assert "--weights PATH" in result.stderr and "Traceback" not in result.stderr
    by_arch = {run.config["train"]["arch"]: run for run in runs.list_runs(tmp_path / "runs")}
    assert {arch: run.state for arch, run in by_arch.items()} == {"squeezenet1_0": "completed", "resnet18": "failed"}
    assert by_arch["resnet18"].status["hint"] == "offline_weights" and "--" not in by_arch["resnet18"].status["message"]


def test_efficientnet_lite0_trains_in_the_combi_regime_offline(tmp_path):
    from conftest import make_class_folder
    from wildvision.training.train import execute_run, start_run

    data = make_class_folder(tmp_path / "train", {"captive": 8, "wild": 8})
    config = TrainConfig(arch="efficientnet_lite0", regime="combi", data=str(data), epochs=2, head_epochs=1, batch_size=8, num_workers=0, device="cpu")
    run_dir = start_run(config, tmp_path / "runs")
    execute_run(run_dir)
    assert [row["phase"] for row in runs.read_metrics(run_dir)] == ["head", "all_layers"]
    checkpoint = torch.load(run_dir / runs.CHECKPOINT, weights_only=True)
    assert checkpoint["normalisation"]["mean"] == [0.5, 0.5, 0.5]
    assert load_model(run_dir).normalisation == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_a_test_image_identical_to_a_training_image_is_warned_about_before_training(tmp_path, caplog):
    from conftest import make_class_folder
    from wildvision.training.train import start_run

    data = make_class_folder(tmp_path / "train", {"captive": 5, "wild": 5})
    test = make_class_folder(tmp_path / "test", {"captive": 2, "other": 2}, seed=3)
    (test / "captive" / "copy.png").write_bytes((data / "captive" / "img0.png").read_bytes())
    config = TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), tests={"test_out": str(test)}, epochs=1, device="cpu")
    run_dir = start_run(config, tmp_path / "runs")
    (warning,) = runs.read_json(run_dir / runs.CONFIG)["warnings"]
    assert warning.startswith("1 of the 5 images of test_out are identical or nearly identical to training images") and "copy.png" in warning
    assert warning in caplog.text
    assert runs.read_run(run_dir).state == "queued"


def test_copies_are_used_once_a_conflict_is_left_out_and_test_copies_can_be_excluded(tmp_path):
    from conftest import make_class_folder
    from wildvision.training.train import samples_in_split, start_run

    data = make_class_folder(tmp_path / "train", {"captive": 20, "wild": 20})
    for index in range(3):  # three photos saved twice in captive/: each must be used once, on one side of the split
        (data / "captive" / f"again{index}.png").write_bytes((data / "captive" / f"img{index}.png").read_bytes())
    (data / "wild" / "misfiled.png").write_bytes((data / "captive" / "img5.png").read_bytes())
    test = make_class_folder(tmp_path / "test", {"captive": 2, "other": 2}, seed=3)
    (test / "other" / "leaked.png").write_bytes((data / "wild" / "img7.png").read_bytes())
    config = TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), tests={"test_out": str(test)}, exclude_test_duplicates=True, device="cpu")
    run_dir = start_run(config, tmp_path / "runs")
    split, stored = runs.read_json(run_dir / runs.SPLIT), runs.read_json(run_dir / runs.CONFIG)
    used = split["train"] + split["test_in"]
    assert "captive/img5.png" not in used and "wild/misfiled.png" not in used and len(used) == 40 - 1
    assert sum(f"captive/img{i}.png" in used or f"captive/again{i}.png" in used for i in range(3)) == 3
    assert not any(f"captive/again{i}.png" in used and f"captive/img{i}.png" in used for i in range(3))
    reasons = {entry["reason"].split(":")[0].split(" of ")[0] for entry in split["left_out"]}
    assert reasons == {"label conflict", "copies"} and len(split["left_out"]) == 4
    conflict = next(e for e in stored["excluded"] if e["reason"].startswith("label conflict"))
    assert sorted(conflict["files"]) == [str(data / "captive" / "img5.png"), str(data / "wild" / "misfiled.png")]
    assert any("left out of train and test_in" in w for w in stored["warnings"])
    assert any(w.startswith("1 of the 5 images of test_out") and "left out of it" in w for w in stored["warnings"])
    assert [e["files"] for e in stored["excluded"] if e["reason"].startswith("test_out")] == [[str(test / "other" / "leaked.png")]]
    assert stored["n_images"]["test_out"] == 4
    samples_in_split(config, split, "split.json")  # the split stays readable by what reads it


def _file_size_limit(limit_bytes):
    """Run in the child: writes beyond `limit_bytes` fail with EFBIG, as they would on a nearly full disk."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_a_write_failing_mid_run_leaves_a_failed_state_and_resume_finishes_it(shared, tmp_path):
    data = demo_subset(tmp_path, TRAIN_COUNTS)
    runs_dir = tmp_path / "runs"
    # SqueezeNet's checkpoint is 2.9 MB: with a 2 MB limit the first checkpoint write fails, the small files do not.
    # No loader workers: they pass batches through shared-memory files, which the limit would also hit.
    result = subprocess.run(
        [sys.executable, "-m", "wildvision", *train_args(data, runs_dir, "--epochs", "2", "--workers", "0")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_file_size_limit(2_000_000),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (run_dir,) = runs_dir.iterdir()
    assert f"error: run {run_dir.name} failed: could not write {run_dir / runs.CHECKPOINT}" in result.stderr
    assert "is the disk full or the folder read-only?" in result.stderr
    status = runs.read_json(run_dir / runs.STATUS)
    assert status["state"] == "failed" and f"could not write {run_dir / runs.CHECKPOINT}" in status["message"]
    assert not list(run_dir.glob(".*.tmp")), "a failed write must not leave temporary files"
    assert "Traceback" in (run_dir / runs.LOG).read_text()

    resumed = run_cli("resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert runs.read_run(run_dir).state == "completed" and len(runs.read_metrics(run_dir)) == 2


def test_an_unusable_runs_folder_is_refused_in_one_line(tmp_path):
    (tmp_path / "not-a-folder").write_text("a file where the runs folder should be")
    from conftest import make_class_folder

    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    result = run_cli(
        "train", "--arch", "squeezenet1_0", "--regime", "scratch", "--data", str(data), "--epochs", "1", "--runs-dir", str(tmp_path / "not-a-folder" / "runs")
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot create run folders in {tmp_path / 'not-a-folder' / 'runs'}: Not a directory"


def test_predict_cli_reads_zips_safely_and_names_members_as_the_user_knows_them(trained_run, tmp_path):
    import stat
    import zipfile

    run_dir, _, test = trained_run
    photos = sorted((test / "captive").iterdir())[:2]
    archive = tmp_path / "sent.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("kennel/a.jpg", photos[0].read_bytes())
        z.writestr("../../escape.jpg", photos[1].read_bytes())  # zip slip: skipped, never written outside
        z.writestr("notes.txt", b"not an image")
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("broken.jpg", b"\xff\xd8 not really a jpeg")
    result = run_cli("predict", "--model", str(run_dir), str(archive), str(photos[1]), "--csv", str(tmp_path / "out.csv"))
    assert result.returncode == 1 and "Traceback" not in result.stderr  # broken.jpg failed
    rows = (tmp_path / "out.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == [str(photos[1]), f"{archive}/kennel/a.jpg"]
    assert "escape.jpg" in result.stderr and "link.jpg" in result.stderr and f"{archive}/broken.jpg" in result.stderr
    assert not (tmp_path.parent / "escape.jpg").exists()
