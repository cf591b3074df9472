"""Home and Train pages under Streamlit's AppTest: real runs folders, real launches."""

import shutil

from streamlit.testing.v1 import AppTest

from wildvision import runs


def test_home_on_a_fresh_machine_says_what_to_do_next(runs_dir):
    at = AppTest.from_file("../Home.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "wildvision"
    assert any("No training runs" in info.value for info in at.info)
    assert len(at.get("page_link")) == 5


def test_train_page_without_runs_invites_a_first_run(runs_dir):
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    assert [tab.label for tab in at.tabs] == ["One run", "The paper's grid"]
    assert any("No runs yet" in info.value for info in at.info)
    assert len(at.get("multiselect")[0].value) == 24


def test_a_wrong_training_folder_gets_a_clear_message_and_no_run(runs_dir, tmp_path):
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    at.text_input[0].set_value(str(tmp_path / "missing"))
    at.text_area[0].set_value("")
    at.button[0].click().run()
    assert not at.exception
    assert "does not exist" in at.error[0].value
    assert runs.list_runs(runs_dir) == []


def test_completed_run_is_listed_with_its_curves_and_log(runs_dir, completed_run):
    shutil.copytree(completed_run, runs_dir / completed_run.name)
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    assert at.dataframe[0].value["state"].tolist() == ["completed"]
    assert "epoch 3" in at.code[0].value


def test_a_run_whose_test_set_shares_images_with_training_shows_the_warning(runs_dir, tmp_path):
    from conftest import make_class_folder
    from wildvision.train import TrainConfig, start_run

    data = make_class_folder(tmp_path / "train", {"captive": 5, "wild": 5})
    test = make_class_folder(tmp_path / "test_[x]", {"captive": 2, "other": 2}, seed=3)
    (test / "captive" / "copy_*1*.png").write_bytes((data / "captive" / "img0.png").read_bytes())
    start_run(TrainConfig(arch="squeezenet1_0", regime="scratch", data=str(data), tests={"test_out": str(test)}, device="cpu"), runs_dir)
    at = AppTest.from_file("../app_pages/train.py", default_timeout=60).run()
    assert not at.exception
    (shown,) = [w.value for w in at.warning if "identical to training images" in w.value]
    assert shown.startswith("1 of the 5 images of test\\_out are identical") and "copy\\_\\*1\\*.png" in shown
