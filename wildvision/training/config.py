"""What a training run is: TrainConfig (saved as config.json), the paper's regimes and their Table S5 phases.

Kept apart from the training loop (wildvision.training.train) so that the dashboard, the launcher and the command line can
build, check and describe runs without the loop's machinery; one constructor turns a grid entry into a run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wildvision import runs
from wildvision.cache import default_cache_dir
from wildvision.models import check_architecture

REGIMES = ("transfer", "scratch", "combi")
# The shipped SqueezeNet file whose folded-in 0-255 input scale makes Table S5's learning rate too high for it
DEEP_COMPRESSION_WEIGHTS = "squeezenet1_0-imagenet-deepcompression.pth"


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one set of trainable layers and hyperparameters."""

    train_all_layers: bool
    batch_size: int
    lr: float
    patience: int | None  # None: no early stopping in this phase
    epochs: int | None  # None: until early stopping or the run's last epoch


@dataclass
class TrainConfig:
    """Everything a run needs; saved as config.json so that `resume` and re-runs need nothing else."""

    arch: str
    regime: str
    data: str
    with_background: bool = False
    positive: str = "captive"
    weights: str | None = None  # imagenet, none or a path; None: imagenet, or none for scratch
    tests: dict[str, str] = field(default_factory=dict)
    epochs: int = 200
    patience: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    head_epochs: int = 10
    seed: int = 0
    device: str = "auto"
    num_workers: int = min(8, os.cpu_count() or 1)
    test_fraction: float = 0.2
    split: str | None = None
    target_precision: float = 0.95
    calibrate_on: str | None = None  # a test set to choose the threshold on (no floor); None: test_in, never below 0.5
    feature_views: int = 5  # head-only epochs train on this many stored views per image; 0: plain loop
    cache_dir: str | None = None  # None: wildvision.cache.default_cache_dir()
    exclude_test_duplicates: bool = False  # leave out test images that are one photo with a training image
    replaces: str | None = None  # the run folder of a model this run is meant to replace: compared on the same test sets

    def __post_init__(self) -> None:
        check_architecture(self.arch)
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; choose one of: {', '.join(REGIMES)}")
        if self.regime == "scratch" and self.weights not in ("none", None):
            raise ValueError("the scratch regime trains from random init; leave out --weights (or pass --weights none)")
        if self.weights is None:
            self.weights = "none" if self.regime == "scratch" else "imagenet"
        if self.regime != "scratch" and self.weights == "none":
            raise ValueError(f"the {self.regime} regime needs pretrained weights: --weights imagenet or --weights PATH")
        for name, value in (("epochs", self.epochs), ("batch size", self.batch_size), ("patience", self.patience)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.calibrate_on is not None and self.calibrate_on not in self.tests:
            raise ValueError(
                f"cannot calibrate the threshold on {self.calibrate_on!r}: it is not one of the test sets ({', '.join(self.tests) or 'none given'})"
            )
        if not 0 < self.target_precision <= 1:
            raise ValueError(f"target precision must be in (0, 1], not {self.target_precision}")
        if self.feature_views < 0:
            raise ValueError(f"feature views must be 0 (off) or more, not {self.feature_views}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")

    @classmethod
    def from_grid_entry(cls, entry: Mapping, data: str, weights: Mapping[str, str] | None = None, **overrides) -> TrainConfig:
        """The run of one grid configuration ([[run]] table: arch, regime, background), the same from the command line
        and the dashboard. `weights` maps an architecture, or "*" for every one not named, to its pretrained weights
        (launch.parse_weights reads them); scratch runs get none, whatever is given."""
        return cls(
            arch=entry["arch"],
            regime=entry["regime"],
            data=data,
            with_background=entry["background"],
            weights=grid_weights(weights or {}, entry["arch"], entry["regime"]),
            **overrides,
        )

    @property
    def dataset(self) -> str:
        return runs.dataset_name(self.with_background)

    @property
    def cache_folder(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.regime}-{self.dataset}"

    def phases(self) -> list[Phase]:
        """Table S5, with any overrides applied to every phase."""
        head_phase = Phase(False, self.batch_size or 75, self.lr or 0.001, self.patience or 15, None)
        all_phase = Phase(True, self.batch_size or 15, self.lr or 0.0005, self.patience or 35, None)
        if self.regime == "transfer":
            return [head_phase]
        if self.regime == "scratch":
            return [all_phase]
        return [Phase(False, head_phase.batch_size, head_phase.lr, None, self.head_epochs), all_phase]

    def phase_at(self, epoch: int) -> tuple[int, Phase]:
        """Which of `phases()` a (1-based) epoch belongs to, and its index."""
        phases, start = self.phases(), 0
        for index, phase in enumerate(phases):
            if phase.epochs is None or epoch <= start + phase.epochs:
                return index, phase
            start += phase.epochs
        return len(phases) - 1, phases[-1]

    def on_stored_features(self, phase: Phase) -> bool:
        """Whether the phase's epochs train the head on stored backbone outputs (wildvision.features)."""
        return not phase.train_all_layers and self.feature_views > 0


def grid_weights(weights: Mapping[str, str], arch: str, regime: str) -> str | None:
    """The weights a grid's `arch` trains from in `regime`: its own entry, else the "*" entry, else None (TrainConfig's
    default, ImageNet); always None for scratch, which trains from random init."""
    return None if regime == "scratch" else weights.get(arch, weights.get("*"))


def table_s5(regime: str, head_epochs: int = TrainConfig.head_epochs) -> list[Phase]:
    """The regime's phases with Table S5's batch size, learning rate and patience (no overrides)."""
    return TrainConfig(arch="squeezenet1_0", regime=regime, data="", head_epochs=head_epochs).phases()


def suggested_lr(arch: str, regime: str, weights: str | Path | None = None) -> tuple[float | None, str]:
    """The learning rate to start a run with, and why; None keeps Table S5's per-phase rates (combi).

    Table S5's rate for the regime, except SqueezeNet from the shipped deep-compression weights file:
    its first layer has Caffe's 0-255 input scale folded in, so activations are tens of times larger
    than with torchvision's weights and at 0.001 the head's final ReLU clamps most outputs at zero.
    """
    phases = table_s5(regime)
    if regime != "scratch" and arch == "squeezenet1_0" and weights and Path(str(weights)).name == DEEP_COMPRESSION_WEIGHTS:
        return 0.0001, (
            "0.0001 for SqueezeNet with the shipped deep-compression weights file: its first layer has Caffe's 0-255 input "
            "scale folded in, so at Table S5's 0.001 the head's final ReLU clamps most outputs at zero and they stop learning "
            "(see docs/data.md, 'Demo data and offline weights')"
        )
    if len(phases) == 1:
        return phases[0].lr, f"Table S5's learning rate for the {regime} regime"
    return None, (f"Table S5's learning rates for combi: {phases[0].lr:g} for the {phases[0].epochs} head-only epochs, then {phases[1].lr:g} for all layers")
