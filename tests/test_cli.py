import os
from pathlib import Path

import pytest

from helpers import run_cli
from wildvision.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_of_every_subcommand_is_explained(name, capsys):
    subparser = _subcommands()[name]
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in subparser._actions:
        for option in action.option_strings:
            assert option in text
        if action.option_strings and action.help is None:
            pytest.fail(f"{name} {action.option_strings} has no help text")


def test_gain_on_the_papers_numbers_ranks_densenet121_first():
    result = run_cli("gain", "--source", "paper", "--test", "test_out_pet", "--dataset", "bg", "--regime", "transfer")
    assert result.returncode == 0, result.stderr
    ranked = [line.split()[1] for line in result.stdout.splitlines()[2:]]
    assert ranked[0] == "densenet121" and len(ranked) == 7 and "squeezenet1_0" not in ranked


def test_gain_without_a_baseline_is_a_clear_error():
    result = run_cli("gain", "--regime", "scratch")
    assert result.returncode == 2
    assert "squeezenet1_0" in result.stderr and "Traceback" not in result.stderr


def test_models_prints_table_s4_counts():
    result = run_cli("models")
    assert "736,450" in result.stdout and "139,589,442" in result.stdout and "mobilenet_v2" in result.stdout


def test_training_on_a_wrong_folder_explains_without_a_traceback(tmp_path):
    (tmp_path / "data" / "wild").mkdir(parents=True)
    result = run_cli("train", "--arch", "resnet18", "--regime", "scratch", "--data", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "no positive class folder 'captive/'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_runs_on_an_empty_folder(tmp_path):
    assert "no runs" in run_cli("runs", "--runs-dir", str(tmp_path)).stdout


def test_training_with_imagenet_weights_that_cannot_be_had_stops_before_making_a_run(tmp_path):
    from conftest import make_class_folder

    data = make_class_folder(tmp_path / "data", {"captive": 3, "wild": 3})
    # an empty torch cache, and HTTPS sent to a closed local port: an offline machine
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = run_cli("train", "--arch", "resnet18", "--regime", "transfer", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), env=env)
    assert result.returncode == 2
    assert "ImageNet weights for resnet18" in result.stderr and "--weights PATH" in result.stderr and "Traceback" not in result.stderr
    assert "under Pretrained weights" not in result.stderr  # the command line's words, not the Train page's
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_gpu_asked_for_on_a_machine_without_one_is_answered_with_the_device_option(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["predict", "--device", "cuda", str(tmp_path / "photo.jpg")]) == 2
    err = capsys.readouterr().err
    assert err == "error: device cuda was asked for, but no CUDA GPU is available here; use --device cpu (or auto)\n"


def test_grid_defaults_to_the_paper_grid_and_says_so_wherever_the_clone_lives(capsys, monkeypatch):
    """A clone at a long path once made argparse wrap the grid's absolute path mid-word, so its help lost the name."""
    from wildvision.cli import training

    monkeypatch.setenv("COLUMNS", "80")  # what argparse assumes without a terminal, as in CI
    deep = Path("/builds", *["a-rather-long-folder-name"] * 6, "ci", "wildvision", "wildvision", "paper_grid.toml")
    monkeypatch.setattr(training, "PAPER_GRID", deep)
    assert build_parser().parse_args(["grid", "--data", "x"]).gridfile == str(deep), "the default is still the file itself"
    with pytest.raises(SystemExit):
        main(["grid", "--help"])
    help_text = capsys.readouterr().out
    assert "(default: the paper's 24 configurations in the package's wildvision/paper_grid.toml)" in " ".join(help_text.split())
    assert "a-rather-long-folder-name" not in help_text


def test_grid_weights_that_cannot_be_read_stop_it_before_anything_is_made(tmp_path, capsys):
    args = ["grid", "--data", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--only", "squeezenet1_0-*"]
    assert main([*args, "--weights", "squeezenet=sq.pth"]) == 2
    assert capsys.readouterr().err.startswith("error: weights 'squeezenet=sq.pth': unknown architecture 'squeezenet'; choose one of: alexnet,")
    assert main([*args, "--weights", "sq.pth", "--launcher", "slurm", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: weights 'sq.pth': write ARCH=FILE")
    assert not (tmp_path / "runs").exists()
