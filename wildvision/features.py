"""Backbone outputs computed once per photo and model, so head-only epochs, evaluation and the novelty summary of a
transfer run run only the head.

When every layer but the head is frozen and in eval mode (as `train` runs head-only phases), the backbone's output
depends only on the input image. Two kinds of entry are kept (wildvision.feature_store has the files, keys and bound):

- training views: each training photo gets a fixed number of augmented views (Table S6 augmentation, seeded per
  photo and view, so a view is the same in every run) of its decoded copy at 256 px (wildvision.cache). Every
  head-only epoch draws one view per photo and trains the head on it, which costs a small fraction of a forward
  pass. The trade: `views` distinct augmentations per photo instead of a fresh one every epoch, and a one-off cost
  of about `views` plain epochs of forward passes, repaid once a run trains more epochs than that.
- the evaluation view: the original photo resized and normalised, exactly as evaluation and prediction see it. It
  serves test_in's validation in every epoch, the evaluation of every test set (`evaluate_stored`) and the novelty
  summary's features (`pooled_eval_features`) for as long as the evaluated backbone is the one the features came
  from (`stored_backbone` checks its weights' digest), so a transfer run forwards each photo through the backbone
  once, and the next run of the same architecture and weights (the no_bg run after the bg run) only its new photos.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wildvision import feature_store
from wildvision.cache import content_hash, open_reduced
from wildvision.data import Sample, eval_transform
from wildvision.evaluate import Inference, summarise
from wildvision.images import ImageError, open_image
from wildvision.inference import default_batch_size, pooled
from wildvision.models import Normalisation, split_at_head

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (images done, images to do)
PHOTOS_PER_BATCH = 16  # photos decoded per loader batch; the backbone runs on them in passes of default_batch_size images


@dataclass(frozen=True)
class FeatureSet:
    """Backbone outputs of the readable images of a sample list: features[i, v] is view v of image indices[i]."""

    features: torch.Tensor  # [images, views, *backbone output shape], float16
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the sample list; unreadable images are left out

    @property
    def views(self) -> int:
        return self.features.shape[1]


def weights_digest(module: nn.Module) -> str:
    """A digest of every parameter and buffer: different weights, different cache entries."""
    digest = hashlib.blake2b()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())  # logical order, whatever the memory format
    return digest.hexdigest()[:32]


def view_seed(image_hash: str, view: int, seed: int) -> int:
    return int(hashlib.sha256(f"{image_hash}:{view}:{seed}".encode()).hexdigest()[:15], 16)


class _Views(Dataset):
    """All views of one image per item, as ([views, 3, H, W], position); None for an unreadable image."""

    def __init__(self, samples, hashes, positions, transform_for_label, views, seed, opener: Callable[[Path], object]):
        self.samples, self.hashes, self.positions = samples, hashes, positions
        self.transforms = {label: transform_for_label(label) for label in (0, 1)}
        self.views, self.seed, self.opener = views, seed, opener

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: int):
        position = self.positions[item]
        sample = self.samples[position]
        try:
            image = self.opener(sample.path)
        except ImageError as error:
            log.warning("skipping unreadable image %s", error)
            return None
        stack = []
        with torch.random.fork_rng(devices=[]):  # the transforms draw from torch's global generator
            for view in range(self.views):
                torch.manual_seed(view_seed(self.hashes[position], view, self.seed))
                stack.append(self.transforms[sample.label](image))
        return torch.stack(stack), position


def _collate(batch):
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    images, positions = zip(*batch)
    return torch.stack(images), list(positions)


def _hashes(samples: Sequence[Sample]) -> list[str | None]:
    hashes: list[str | None] = []
    for sample in samples:
        try:
            hashes.append(content_hash(sample.path))
        except OSError as error:
            log.warning("skipping unreadable image %s: %s", sample.path, error.strerror or error)
            hashes.append(None)
    return hashes


@dataclass(frozen=True)
class _Request:
    """What one call asks of the store: the samples, their hashes, the folder and each one's entry file name in it,
    and how to make its views."""

    samples: Sequence[Sample]
    hashes: list[str | None]
    folder: Path
    name: Callable[[int], str]
    transform_for_label: Callable[[int], Callable]
    views: int
    seed: int
    opener: Callable[[Path], object]
    cache_dir: Path

    def entry(self, position: int) -> Path:
        return self.folder / self.name(position)


@torch.inference_mode()
def _gather(request: _Request, backbone: nn.Module, device: torch.device, num_workers: int, progress: Progress | None) -> FeatureSet:
    """Every sample's stored entry, computing (and storing) those not stored; a photo listed twice is computed once.

    Entries are read first and whatever could not be read is computed and kept in memory, so an entry that another
    process evicts at any moment is recomputed, never a crash nor a photo silently left out."""
    arrays: dict[int, np.ndarray] = {}
    first: dict[Path, int] = {}  # entry file -> the first position that needs it
    copies: dict[int, list[int]] = {}  # that position -> later positions of the same photo
    to_compute = []
    for position, image_hash in enumerate(request.hashes):
        if image_hash is None:
            continue
        path = request.entry(position)
        if path in first:
            copies.setdefault(first[path], []).append(position)
            continue
        first[path] = position
        array = feature_store.read_entry(path)
        if array is not None and array.shape[0] == request.views:
            arrays[position] = array
        else:
            to_compute.append(position)
    log.info("backbone features of %d views: %d of %d images to compute, the rest cached in %s", request.views, len(to_compute), len(first), request.folder)
    if to_compute:
        backbone.eval()
        dataset = _Views(request.samples, request.hashes, to_compute, request.transform_for_label, request.views, request.seed, request.opener)
        loader = DataLoader(dataset, PHOTOS_PER_BATCH, num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda")
        done = 0
        for batch in loader:
            if batch is not None:
                images, positions = batch
                flat = images.flatten(0, 1).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                # contiguous, as an entry loads: a channels_last feature map would pool in another order, so a photo's
                # features would differ in their last bit between the run that computed them and the runs that read them
                outputs = torch.cat([_forward(backbone, part, device) for part in flat.split(default_batch_size(device))]).contiguous()
                for position, output in zip(positions, outputs.unflatten(0, (len(positions), request.views)).numpy()):
                    feature_store.write_entry(request.entry(position), output)
                    arrays[position] = output
                done += len(positions)
            if progress:
                progress(done, len(to_compute))
        feature_store.enforce_bound(request.cache_dir)
    for position, others in copies.items():
        if position in arrays:
            arrays.update((other, arrays[position]) for other in others)
    readable = sorted(arrays)
    if not readable:
        raise ValueError("none of the images could be read, so there are no backbone features")
    features = torch.from_numpy(np.stack([arrays[position] for position in readable]))
    labels = torch.tensor([request.samples[position].label for position in readable])
    return FeatureSet(features, labels, torch.tensor(readable))


def _forward(backbone: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One pass of at most default_batch_size images (on the CPU, larger passes run slower: inference.default_batch_size)."""
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        return backbone(images).half().cpu()


def backbone_features(
    samples: Sequence[Sample],
    arch: str,
    backbone: nn.Module,
    weights: str,
    transform_for_label: Callable[[int], Callable],
    views: int,
    seed: int,
    cache_dir: Path,
    device: torch.device,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> FeatureSet:
    """The backbone's output for `views` augmented views of every sample's decoded copy, computing only what is not stored.

    `weights` is `weights_digest(backbone)`, passed in so that a caller asking for several sets hashes the weights once.
    """
    folder = feature_store.keyed_folder(cache_dir, arch, feature_store.views_description(arch, weights, transform_for_label, views, seed))
    hashes = _hashes(samples)
    name = lambda position: f"{hashes[position]}_{samples[position].label}.npy"
    opener = functools.partial(open_reduced, cache_dir=Path(cache_dir))  # a partial, not a lambda: loader workers may pickle it
    return _gather(_Request(samples, hashes, folder, name, transform_for_label, views, seed, opener, Path(cache_dir)), backbone, device, num_workers, progress)


def eval_features(
    samples: Sequence[Sample],
    arch: str,
    backbone: nn.Module,
    weights: str,
    normalisation: Normalisation,
    cache_dir: Path,
    device: torch.device,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> FeatureSet:
    """The backbone's output for every sample's evaluation view (the original file resized and normalised, as
    evaluate_samples and predict read it), one view each, keyed by the photo alone: it does not depend on the label."""
    folder = feature_store.keyed_folder(cache_dir, arch, feature_store.eval_description(arch, weights, normalisation))
    hashes = _hashes(samples)
    transform = eval_transform(normalisation)
    request = _Request(samples, hashes, folder, lambda position: f"{hashes[position]}.npy", lambda label: transform, 1, 0, open_image, Path(cache_dir))
    return _gather(request, backbone, device, num_workers, progress)


@torch.inference_mode()
def head_inference(tail: nn.Module, features: FeatureSet, device: torch.device, batch_size: int = 256) -> Inference:
    """The model's logits for the first view of every image, from stored backbone outputs."""
    logits = []
    for start in range(0, len(features.labels), batch_size):
        inputs = features.features[start : start + batch_size, 0].to(device).float()
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits.append(tail(inputs).float().cpu())
    return Inference(features.labels, torch.cat(logits), features.indices)


@dataclass(frozen=True)
class StoredBackbone:
    """A model whose backbone's evaluation-view outputs are in the store: evaluating it, or fitting its novelty
    summary, needs the backbone only for photos the store has not seen, and the head for every photo."""

    arch: str
    backbone: nn.Module
    tail: nn.Module
    weights: str  # weights_digest(backbone): the key its entries are stored under
    normalisation: Normalisation
    cache_dir: Path
    device: torch.device
    num_workers: int = 0

    def eval_features(self, samples: Sequence[Sample], progress: Progress | None = None) -> FeatureSet:
        return eval_features(samples, self.arch, self.backbone, self.weights, self.normalisation, self.cache_dir, self.device, self.num_workers, progress)


def stored_backbone(
    model: nn.Module, arch: str, normalisation: Normalisation, cache_dir: Path, device: torch.device, num_workers: int = 0
) -> StoredBackbone | None:
    """The model as a StoredBackbone when the store holds evaluation-view features of exactly its backbone, else None.

    The check is the weights, never the regime's name: the store has a folder for a backbone's digest only when a
    head-only phase stored features from those very weights. For a transfer run the best model's backbone is still
    the one it started from, so it is found; a combi run's best model after its all-layers phase, or a scratch run's,
    has other weights and is evaluated by a full forward pass.
    """
    model.eval()  # the tail may hold dropout (SqueezeNet's classifier); the backbone copy keeps this mode
    backbone, tail = split_at_head(model, arch)
    weights = weights_digest(backbone)
    if feature_store.existing_folder(cache_dir, arch, feature_store.eval_description(arch, weights, normalisation)) is None:
        return None
    return StoredBackbone(arch, backbone, tail, weights, normalisation, Path(cache_dir), device, num_workers)


def evaluate_stored(store: StoredBackbone, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """evaluate_samples' metrics and scores for `samples`, from stored evaluation-view features and the head alone
    (computing and storing the features of photos not stored yet). Probabilities differ from a full forward pass
    only by the float16 rounding of the stored features (tests/test_feature_store.py measures it)."""
    started = time.perf_counter()
    counted = None if progress is None else (lambda done, to_compute: progress(len(samples) - to_compute + done))
    stored = store.eval_features(samples, counted)
    return summarise(head_inference(store.tail, stored, store.device), samples, started)


def pooled_eval_features(store: StoredBackbone, samples: Sequence[Sample], progress: Progress | None = None) -> np.ndarray:
    """The pooled head input of each readable sample ([readable photos, dim] float32), as novelty.backbone_features
    gets it from a forward pass: the novelty summary of a run whose backbone is stored needs no forward pass."""
    return pooled(store.eval_features(samples, progress).features[:, 0]).numpy()
