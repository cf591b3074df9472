"""Checkpoints are code: only plain tensors load, and one that does not fit its model is refused in words."""

import os

import pytest
import torch

from helpers import run_cli
from wildvision.models import build_model
from wildvision.predict import CheckpointError, load_model


class Payload:
    """What a hostile checkpoint could carry: unpickling it would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def checkpoint(arch="squeezenet1_0", class_names=("not_captive", "captive"), state_dict=None, **extra):
    torch.manual_seed(0)
    state = state_dict if state_dict is not None else build_model("squeezenet1_0", "none").state_dict()
    return {"format": "wildvision-checkpoint-1", "arch": arch, "class_names": list(class_names), "threshold": 0.5, "state_dict": state, **extra}


def test_a_sound_checkpoint_loads(tmp_path):
    torch.save(checkpoint(), tmp_path / "good.pt")
    loaded = load_model(tmp_path / "good.pt")
    assert loaded.arch == "squeezenet1_0" and loaded.class_names == ["not_captive", "captive"]


def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(checkpoint(note=Payload(marker)), tmp_path / "hostile.pt")
    with pytest.raises(CheckpointError, match="cannot be loaded safely .only plain tensors and containers"):
        load_model(tmp_path / "hostile.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (checkpoint(arch="resnet18"), "says it is a resnet18 with 2 classes, but its tensors do not fit that model"),
        (checkpoint(class_names=("a", "b", "c")), "says it is a squeezenet1_0 with 3 classes, but its tensors do not fit"),
        (checkpoint(arch="mystery_net"), "unknown architecture 'mystery_net'"),
        ({"state_dict": {}}, "is not a wildvision checkpoint .it needs arch, state_dict, class_names, threshold"),
        ([1, 2, 3], "is not a wildvision checkpoint"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_in_words(tmp_path, content, message):
    torch.save(content, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "odd.pt")


def test_a_tensor_of_the_wrong_shape_is_refused_in_words(tmp_path):
    state = build_model("squeezenet1_0", "none").state_dict()
    state["classifier.1.weight"] = torch.zeros(2, 256, 1, 1)
    torch.save(checkpoint(state_dict=state), tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match="tensors do not fit that model"):
        load_model(tmp_path / "reshaped.pt")


def test_truncated_and_non_checkpoint_files_are_refused_and_the_cli_says_so_in_one_line(tmp_path):
    torch.save(checkpoint(), tmp_path / "whole.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:50_000])
    (tmp_path / "notes.pt").write_text("my notes, not a model")
    for name in ("truncated.pt", "notes.pt"):
        with pytest.raises(CheckpointError, match="cannot be loaded safely"):
            load_model(tmp_path / name)
    photo = tmp_path / "photo.png"
    from conftest import write_image

    write_image(photo, seed=1)
    result = run_cli("predict", "--model", str(tmp_path / "truncated.pt"), str(photo))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'truncated.pt'} cannot be loaded safely") and result.stderr.count("\n") == 1
