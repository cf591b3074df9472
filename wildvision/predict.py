"""Load a trained model and predict images: the code path shared by the CLI, evaluation and the dashboard."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from wildvision import model_card, novelty, runs
from wildvision.data import eval_transform
from wildvision.evaluate import resolve_device
from wildvision.images import ImageError, is_image_file, open_image
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
        return self.class_names[1]

    def label_for(self, probability: float) -> str:
        """The class at this model's decision threshold."""
        return self.positive_class if probability >= self.threshold else self.class_names[0]


@dataclass(frozen=True)
class Prediction:
    path: str
    probability: float | None  # of the positive class; None when the image could not be read
    label: str | None
    error: str | None = None
    unlike_training: float | None = None  # novelty.score; None when the model has no summary of its training photos
    unusual: bool | None = None  # above the model's warning level: treat the probability with caution


def forward(loaded: LoadedModel, inputs: torch.Tensor) -> tuple[list[float], list[float] | None]:
    """One forward pass under the model's lock: each image's positive-class probability and, when the model keeps a
    summary of its training photos, how unlike them the image is (novelty.score), read from the same pass."""
    with loaded.lock, novelty.head_inputs(loaded) if loaded.novelty is not None else nullcontext([]) as captured:
        logits = loaded.model(inputs)
    probabilities = torch.softmax(logits.float(), dim=1)[:, 1].cpu().tolist()
    if loaded.novelty is None:
        return probabilities, None
    return probabilities, novelty.score(loaded.novelty, captured[0].float().numpy()).tolist()


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
    """Files as given, and the image files inside any folder (recursively), in a stable order."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)))
        else:
            expanded.append(path)
    return expanded


MAX_LOADER_THREADS = 8
PREFETCH_BATCHES = 2  # batches decoded ahead of the forward pass: bounds memory on long path lists
CPU_BATCH_SIZE = 8
GPU_BATCH_SIZE = 32


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass: 32 on a GPU, 8 on the CPU.

    On the CPU bigger batches are slower, not faster: once an activation tensor passes glibc's 32 MB
    mmap ceiling (EfficientNet-Lite0 between 8 and 12 images), every pass maps fresh memory and
    page-faults it in. On 2 cores the default model ran about 100 images/s at batch 8, 60 at 12 and 32 at 32.
    """
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def loader_threads() -> int:
    """Threads that decode images while the model runs: one core is left to the forward pass.

    Threads, not worker processes: Pillow and torch release the GIL while they decode, resize and
    normalise, and threads start at once and are safe inside Streamlit's script thread, where forking
    a multi-threaded server is not. On a 2-core machine that is one thread, on one core still one (it
    overlaps file reads with the forward pass); more than 8 never paid off.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_LOADER_THREADS, cores - 1))


Prepared = TypeVar("Prepared")


def _attempt(prepare: Callable[[str | Path], Prepared], path: str | Path) -> Prepared | ImageError:
    try:
        return prepare(path)
    except ImageError as error:
        return error


def prepared_batches(
    paths: Sequence[str | Path], prepare: Callable[[str | Path], Prepared], batch_size: int, workers: int | None = None
) -> Iterator[list[tuple[int, Prepared | ImageError]]]:
    """`paths` in batches of `batch_size`, each as (index, prepare(path), or the ImageError that stopped it).

    `workers` threads (default `loader_threads()`) run `prepare` (decoding, transforming) on the next
    PREFETCH_BATCHES batches while the caller works on this one, so decoding costs little time on top of
    the forward pass and memory stays bounded on long path lists. Closing the iterator early stops them.
    """
    batches = [range(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=workers or loader_threads(), thread_name_prefix="wildvision-load") as pool:
        pending = deque([pool.submit(_attempt, prepare, paths[i]) for i in batch] for batch in batches[:PREFETCH_BATCHES])
        for number, batch in enumerate(batches):
            futures = pending.popleft()
            if number + PREFETCH_BATCHES < len(batches):
                pending.append([pool.submit(_attempt, prepare, paths[i]) for i in batches[number + PREFETCH_BATCHES]])
            yield [(index, future.result()) for index, future in zip(batch, futures)]


def partition(batch: list[tuple[int, Prepared | ImageError]]) -> tuple[list[tuple[int, Prepared]], list[tuple[int, ImageError]]]:
    """A batch from prepared_batches split into (index, prepared) for the files that could be read and (index, error) for the rest."""
    readable = [(index, prepared) for index, prepared in batch if not isinstance(prepared, ImageError)]
    return readable, [(index, prepared) for index, prepared in batch if isinstance(prepared, ImageError)]


def stack_inputs(loaded: LoadedModel, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Transformed images as one input batch on the model's device, channels_last as the model is."""
    return torch.stack(list(tensors)).to(loaded.device, memory_format=torch.channels_last)


@torch.inference_mode()
def predict_paths(loaded: LoadedModel, paths: Sequence[str | Path], batch_size: int | None = None, workers: int | None = None) -> list[Prediction]:
    """A prediction per path, in order; an unreadable image gets its error instead of a probability.

    Images are decoded and transformed by `workers` loader threads ahead of the forward pass
    (`prepared_batches`); each forward pass holds the model's lock. batch_size: default
    `default_batch_size(loaded.device)`.
    """
    transform = eval_transform(loaded.normalisation)
    predictions: list[Prediction | None] = [None] * len(paths)
    batches = prepared_batches(paths, lambda path: transform(open_image(path)), batch_size or default_batch_size(loaded.device), workers)
    with closing(batches):
        for batch in batches:
            readable, failed = partition(batch)
            for index, error in failed:
                predictions[index] = Prediction(str(paths[index]), None, None, error.reason)
            if readable:
                probabilities, unlike = forward(loaded, stack_inputs(loaded, [tensor for _, tensor in readable]))
                for position, ((index, _), probability) in enumerate(zip(readable, probabilities)):
                    score = unlike[position] if unlike is not None else None
                    unusual = bool(score > loaded.novelty.warning_level) if score is not None else None
                    predictions[index] = Prediction(str(paths[index]), probability, loaded.label_for(probability), None, score, unusual)
    return predictions
