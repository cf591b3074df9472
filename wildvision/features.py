"""Backbone outputs stored on disk, so head-only epochs (transfer; combi's first phase) train only the head.

When every layer but the head is frozen and in eval mode (as `train` runs head-only phases), the
backbone's output depends only on the input image. So each training image gets a fixed number of
augmented views (Table S6 augmentation, seeded per image and view, so a view is the same in every run),
whose backbone outputs are computed once; every epoch then draws one view per image and trains the
head on them, which costs a small fraction of a forward pass. Validation images get their single
evaluation view.

The trade: `views` distinct augmentations per image instead of a fresh one every epoch, and a one-off
cost of about `views` plain epochs of forward passes, repaid once a run trains more epochs than that.

An entry is never read for other inputs than it was made from: a folder per (architecture, digest of
the backbone's weights, description of the transforms, views, seed), described in its key.json, and
a file per (image content hash, label) holding that image's views as float16.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wildvision import runs
from wildvision.cache import REDUCED_SHORT_SIDE, content_hash, open_reduced, save_array_atomic
from wildvision.data import Sample
from wildvision.evaluate import Inference
from wildvision.images import ImageError

log = logging.getLogger(__name__)

FORMAT = 1
Progress = Callable[[int, int], None]  # (images done, images to do)


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


def feature_folder(cache_dir: Path, arch: str, weights: str, transform_for_label: Callable[[int], Callable], views: int, seed: int) -> Path:
    """The cache folder for these exact inputs (`weights`: the backbone's `weights_digest`), with a key.json saying what they are."""
    description = {
        "format": FORMAT,
        "arch": arch,
        "weights": weights,
        "transforms": {str(label): repr(transform_for_label(label)) for label in (0, 1)},
        "views": views,
        "seed": seed,
        "images": f"short side {REDUCED_SHORT_SIDE} px (wildvision.cache)",
    }
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "features" / f"{arch}-{key}"
    if not (folder / "key.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        runs.write_json_atomic(folder / "key.json", description)
    return folder


def view_seed(image_hash: str, view: int, seed: int) -> int:
    return int(hashlib.sha256(f"{image_hash}:{view}:{seed}".encode()).hexdigest()[:15], 16)


class _Views(Dataset):
    """All views of one image per item, as ([views, 3, H, W], position); None for an unreadable image."""

    def __init__(self, samples, hashes, positions, transform_for_label, views, seed, image_cache):
        self.samples, self.hashes, self.positions = samples, hashes, positions
        self.transforms = {label: transform_for_label(label) for label in (0, 1)}
        self.views, self.seed, self.image_cache = views, seed, image_cache

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: int):
        position = self.positions[item]
        sample = self.samples[position]
        try:
            image = open_reduced(sample.path, self.image_cache)
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


@torch.inference_mode()
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
    batch_size: int = 16,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> FeatureSet:
    """The backbone's output for `views` transformed views of every sample, computing only what is not cached.

    `weights` is `weights_digest(backbone)`, passed in so that a caller asking for several sets hashes the weights once.
    """
    folder = feature_folder(cache_dir, arch, weights, transform_for_label, views, seed)
    hashes: list[str | None] = []
    for sample in samples:
        try:
            hashes.append(content_hash(sample.path))
        except OSError as error:
            log.warning("skipping unreadable image %s: %s", sample.path, error.strerror or error)
            hashes.append(None)
    entry = lambda position: folder / f"{hashes[position]}_{samples[position].label}.npy"
    to_compute = [i for i, h in enumerate(hashes) if h is not None and not entry(i).exists()]
    log.info("backbone features of %d views: %d of %d images to compute, the rest cached in %s", views, len(to_compute), len(samples), folder)
    if to_compute:
        backbone.eval()
        loader = DataLoader(
            _Views(samples, hashes, to_compute, transform_for_label, views, seed, cache_dir),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
        )
        done = 0
        for batch in loader:
            if batch is not None:
                images, positions = batch
                flat = images.flatten(0, 1).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                    outputs = backbone(flat)
                outputs = outputs.half().cpu().unflatten(0, (len(positions), views))
                for position, output in zip(positions, outputs):
                    save_array_atomic(entry(position), output.numpy())
                done += len(positions)
            if progress:
                progress(done, len(to_compute))
    readable = [i for i, h in enumerate(hashes) if h is not None and entry(i).exists()]
    if not readable:
        raise ValueError("none of the images could be read, so there are no features to train on")
    features = torch.stack([torch.from_numpy(np.load(entry(i))) for i in readable])
    labels = torch.tensor([samples[i].label for i in readable])
    return FeatureSet(features, labels, torch.tensor(readable))


@torch.inference_mode()
def head_inference(tail: nn.Module, features: FeatureSet, device: torch.device, batch_size: int = 256) -> Inference:
    """The model's logits for the first view of every image, from stored backbone outputs."""
    logits = []
    for start in range(0, len(features.labels), batch_size):
        inputs = features.features[start : start + batch_size, 0].to(device).float()
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits.append(tail(inputs).float().cpu())
    return Inference(features.labels, torch.cat(logits), features.indices)
