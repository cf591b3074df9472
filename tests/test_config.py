"""wildvision.training.config: what a run is, checked before a run folder is made."""

from __future__ import annotations

import pytest

from wildvision.training.config import TrainConfig


def test_the_threshold_can_only_be_calibrated_on_a_named_test_set():
    config = TrainConfig(arch="resnet18", regime="transfer", data="/data/train", tests={"market": "/data/market"}, calibrate_on="market")
    assert config.calibrate_on == "market"
    with pytest.raises(ValueError, match="cannot calibrate the threshold on 'test_out_pet': it is not one of the test sets \\(market\\)"):
        TrainConfig(arch="resnet18", regime="transfer", data="/data/train", tests={"market": "/data/market"}, calibrate_on="test_out_pet")
    with pytest.raises(ValueError, match="none given"):
        TrainConfig(arch="resnet18", regime="transfer", data="/data/train", calibrate_on="test_in")
