"""Load a trained model and predict images: the code path shared by the CLI, evaluation and the dashboard."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from wildvision import classes, inference, model_card, novelty, roots, runs
from wildvision.evaluate import resolve_device
from wildvision.images import is_image_file

# Kept importable from here until wildvision.screening.scoring uses inference.batches (issue 21): it imports them from predict.
from wildvision.models import IMAGENET, Normalisation, build_model, check_architecture, normalisation

REQUIRED_KEYS = ("arch", "state_dict", "class_names", "threshold")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or does not fit its architecture."""


@dataclass
class LoadedModel:
    """A network ready to predict, with what it needs to say what a score means.

    `lock` serialises every forward pass and attribution on `model`: the dashboard shares one model between
    all sessions, and a Grad-CAM hook or the gradient settings of an explanation would otherwise act on
    another thread's forward pass. predict_paths and wildvision.explain.saliency take it themselves, so callers
    never have to. Copies made with dataclasses.replace (a moved threshold) share the network and this lock.
    """

    model: nn.Module
    arch: str
    class_names: list[str]
    threshold: float
    source: str
    device: torch.device
    normalisation: Normalisation = IMAGENET
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    novelty: novelty.NoveltySummary | None = field(default=None, repr=False, compare=False)  # how unlike its training photos an image is

    @property
    def positive_class(self) -> str:
        return classes.positive_class(self.class_names)

    def label_for(self, probability: float) -> str:
        """The class at this model's decision threshold."""
        return self.positive_class if probability >= self.threshold else classes.negative_class(self.class_names)


@dataclass(frozen=True)
class Prediction:
    path: str
    probability: float | None  # of the positive class; None when the image could not be read
    label: str | None
    error: str | None = None
    unlike_training: float | None = None  # novelty.score; None when the model has no summary of its training photos
    unusual: bool | None = None  # above the model's warning level: treat the probability with caution


def checkpoint_path(model: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A checkpoint file, a run folder, or a run name under `runs_dir`, as a checkpoint path."""
    path = Path(model)
    if path.is_file():
        return path
    try:
        run_dir = runs.resolve_run(model, runs_dir)
    except runs.RunError:
        raise CheckpointError(f"{model} is neither a checkpoint file nor a run folder") from None
    if not (run_dir / runs.CHECKPOINT).is_file():
        raise CheckpointError(f"run {run_dir} has no {runs.CHECKPOINT} yet (state: {runs.read_run(run_dir).state})")
    return run_dir / runs.CHECKPOINT


def load_model(model: str | Path, runs_dir: str | Path = "runs", device: str = "cpu") -> LoadedModel:
    """Rebuild a trained model from its checkpoint, or the shipped default model for "default".

    Only plain tensors and containers are unpickled.
    """
    if str(model) == model_card.DEFAULT_NAME:
        return _load_default(device)
    path = checkpoint_path(model, runs_dir)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} cannot be loaded safely (only plain tensors and containers are accepted): {error}") from error
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a wildvision checkpoint (it needs {', '.join(REQUIRED_KEYS)})")
    arch = checkpoint["arch"]
    try:
        check_architecture(arch)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    network = build_model(arch, weights=None, num_classes=len(checkpoint["class_names"]))
    try:
        network.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError:
        raise CheckpointError(f"{path} says it is a {arch} with {len(checkpoint['class_names'])} classes, but its tensors do not fit that model") from None
    target = resolve_device(device)
    network = network.to(target, memory_format=torch.channels_last).eval()
    stored = checkpoint.get("normalisation", {})
    norm = (tuple(stored["mean"]), tuple(stored["std"])) if "mean" in stored else normalisation(arch)
    summary = _novelty_summary(path.parent / novelty.FILE, arch)
    return LoadedModel(network, arch, list(checkpoint["class_names"]), float(checkpoint["threshold"]), str(path), target, norm, novelty=summary)


def _novelty_summary(path: Path, arch: str) -> novelty.NoveltySummary | None:
    """The summary of a model's training photos kept beside it, if there is one for this architecture."""
    if not path.is_file():
        return None
    summary = novelty.load(path)
    return summary if summary.arch == arch else None


def _load_default(device: str) -> LoadedModel:
    if not model_card.has_default_model():
        raise CheckpointError(f"the default model is missing from {model_card.DEFAULT_DIR}; rebuild it with experiments/build_default_model.py")
    network, stored = model_card.load_default_network()
    target = resolve_device(device)
    network = network.to(target, memory_format=torch.channels_last).eval()
    norm = (tuple(stored["normalisation"]["mean"]), tuple(stored["normalisation"]["std"]))
    summary = _novelty_summary(model_card.DEFAULT_DIR / novelty.FILE, stored["arch"])
    return LoadedModel(network, stored["arch"], list(stored["class_names"]), float(stored["threshold"]), "default model", target, norm, novelty=summary)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files inside any folder (recursively, links to folders not followed, at most
    roots.WALK_LIMIT entries: roots.walk), in a stable order."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = (Path(directory) / name for directory, _, names in roots.walk(path, roots.WALK_LIMIT, follow_links=False) for name in names)
            expanded.extend(sorted(p for p in found if is_image_file(p) and p.is_file()))
        else:
            expanded.append(path)
    return expanded


def predict_paths(loaded: LoadedModel, paths: Sequence[str | Path], batch_size: int | None = None, workers: int | None = None) -> list[Prediction]:
    """A prediction per path, in order; an unreadable image gets its error instead of a probability.

    The images go through inference.batches: decoded by `workers` loader threads ahead of the forward pass,
    each pass under the model's lock. batch_size: default `inference.default_batch_size(loaded.device)`.
    """
    predictions: list[Prediction] = []
    batches = inference.batches(loaded, paths, batch_size=batch_size, workers=workers)
    with closing(batches):
        for batch in batches:
            for row in batch.rows:
                path, probability, score = str(paths[row.position]), row.probability, row.unlike_training
                if probability is None:
                    predictions.append(Prediction(path, None, None, row.error))
                    continue
                unusual = bool(score > loaded.novelty.warning_level) if score is not None else None
                predictions.append(Prediction(path, probability, loaded.label_for(probability), None, score, unusual))
    return predictions
