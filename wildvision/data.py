"""Datasets as the paper lays them out: one sub-folder per class, a stratified 80/20 split, Table S6 augmentation.

A training folder holds the positive class (default `captive/`), one or more negative classes
(`wild/`, ...) and optionally `background/`, which joins the negatives only when asked for (the
paper's data_bg). A test folder has the same layout: the positive folder plus any negative folders.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from wildvision import roots
from wildvision.cache import open_reduced
from wildvision.images import ImageError, is_image_file, open_image
from wildvision.models import IMAGENET, Normalisation

log = logging.getLogger(__name__)

BACKGROUND = "background"
INPUT_SIZE = 224


class DataFolderError(ValueError):
    """A data folder whose layout cannot be used; the message says what is wrong and what is expected."""


@dataclass(frozen=True)
class Sample:
    path: Path
    class_name: str
    label: int  # 1 = positive (captive / for sale), 0 = negative


def scan_folder(root: str | Path, positive: str = "captive", with_background: bool = True) -> list[Sample]:
    """Every image under `root`, labelled by its class sub-folder; `background/` only if `with_background`."""
    root = Path(root)
    if not root.is_dir():
        raise DataFolderError(f"data folder {root} does not exist or is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not with_background:
        class_dirs = [d for d in class_dirs if d.name != BACKGROUND]
    names = [d.name for d in class_dirs]
    expected = f"expected {root}/{positive}/ (positive) and at least one negative folder such as {root}/wild/"
    if positive not in names:
        raise DataFolderError(f"{root} has no positive class folder '{positive}/' (found: {names or 'no folders'}); {expected}")
    if len(names) < 2:
        raise DataFolderError(f"{root} has only the class '{positive}/'; {expected}")
    samples = []
    for class_dir in class_dirs:
        files = _image_files(class_dir)
        if not files:
            raise DataFolderError(f"class folder {class_dir} holds no images (.jpg, .png, .webp, ...)")
        label = int(class_dir.name == positive)
        samples.extend(Sample(path, class_dir.name, label) for path in files)
    return samples


def _image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, following symbolic links to files and folders (people link their datasets).

    The walk is roots.walk: each real folder once (a link back up the tree, `a -> ..`, ends) and at most
    roots.WALK_LIMIT entries (roots.WalkTooLarge past it: a mistyped `/` is not walked through). A link that points
    nowhere raises: a dataset with holes should be fixed before training, not silently trained on less.
    """
    files, broken = [], []
    for directory, _, names in roots.walk(folder, roots.WALK_LIMIT):
        for name in names:
            path = Path(directory) / name
            if not is_image_file(path):
                continue
            if path.is_symlink() and not path.exists():
                broken.append(path)
            elif path.is_file():
                files.append(path)
    if broken:
        raise DataFolderError(f"{len(broken)} image link(s) in {folder} point to nothing, e.g. {broken[0]} -> {os.readlink(broken[0])}; fix or remove them")
    return sorted(files)


def file_list_hash(samples: Sequence[Sample], root: str | Path) -> str:
    """A fingerprint of which files a run saw: relative paths and sizes, so a changed dataset is noticed."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: str(s.path)):
        digest.update(f"{sample.path.relative_to(root)}\t{sample.path.stat().st_size}\n".encode())
    return digest.hexdigest()


def stratified_split(samples: Sequence[Sample], test_fraction: float, seed: int, groups: Sequence[int] | None = None) -> tuple[list[Sample], list[Sample]]:
    """The paper's 80/20 split into train and test_in, stratified by class folder (so background too).

    `groups` (one id per sample) keeps samples of one group on one side, so that copies of a photo never
    end up in both train and test_in: then the test part is one fold of StratifiedGroupKFold with
    round(1 / test_fraction) folds (so test_fraction 0.2 gives 5 folds and about 20%). Without groups, or when
    every group is one sample, the split is the plain stratified one it always was, so earlier splits repeat.
    """
    classes = [s.class_name for s in samples]
    if groups is not None and len(set(groups)) < len(samples):
        folds = StratifiedGroupKFold(n_splits=max(2, round(1 / test_fraction)), shuffle=True, random_state=seed)
        train_index, test_index = next(folds.split(samples, classes, groups))
        train, test = [samples[i] for i in train_index], [samples[i] for i in test_index]
    else:
        train, test = train_test_split(list(samples), test_size=test_fraction, random_state=seed, stratify=classes)
    key = lambda s: str(s.path)
    return sorted(train, key=key), sorted(test, key=key)


class CenterCropFraction(torch.nn.Module):
    """Keep the central `fraction` of each side (Table S6: 0.85 on positives, to cut off watermark text)."""

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"

    def forward(self, image):
        height, width = F.get_size(image)
        return F.center_crop(image, [round(height * self.fraction), round(width * self.fraction)])


class RandomCropFraction(torch.nn.Module):
    """A crop of `fraction` of each side at a random place (Table S6: 0.8, to cut off stray text)."""

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"

    def forward(self, image):
        height, width = F.get_size(image)
        crop_h, crop_w = round(height * self.fraction), round(width * self.fraction)
        top = int(torch.randint(0, height - crop_h + 1, ()).item())
        left = int(torch.randint(0, width - crop_w + 1, ()).item())
        return F.crop(image, top, left, crop_h, crop_w)


def _to_normalised_tensor(normalisation: Normalisation) -> list:
    mean, std = normalisation
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(positive: bool, normalisation: Normalisation = IMAGENET) -> v2.Compose:
    """Table S6, in its order: the centre crop applies to the positive class only."""
    steps = [v2.Resize((INPUT_SIZE, INPUT_SIZE))]
    if positive:
        steps.append(CenterCropFraction(0.85))
    steps += [
        RandomCropFraction(0.8),
        v2.RandomApply([RandomCropFraction(0.8)], p=0.3),
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([v2.RandomRotation((180, 180))], p=0.5),
        v2.Resize((INPUT_SIZE, INPUT_SIZE)),
    ]
    return v2.Compose(steps + _to_normalised_tensor(normalisation))


def eval_transform(normalisation: Normalisation = IMAGENET) -> v2.Compose:
    """Table S6: at prediction time only Resize and Normalise."""
    return v2.Compose([v2.Resize((INPUT_SIZE, INPUT_SIZE))] + _to_normalised_tensor(normalisation))


def eval_pixels() -> v2.Compose:
    """eval_transform's per-photo part: the resized photo as a uint8 tensor. Batch inference converts and normalises
    a whole batch at once (`normalise_batch`): per photo on the CPU, those two steps cost as much as decoding."""
    return v2.Compose([v2.Resize((INPUT_SIZE, INPUT_SIZE)), v2.ToImage()])


def normalise_batch(images: torch.Tensor, normalisation: Normalisation = IMAGENET) -> torch.Tensor:
    """eval_transform's last two steps on a batch of eval_pixels photos ([N, 3, H, W] uint8): the same numbers."""
    mean, std = normalisation
    return v2.functional.normalize(v2.functional.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


class ImageDataset(Dataset):
    """Samples as (tensor, label, index); an unreadable image yields None, is logged once and is skipped.

    With an `image_cache` folder, images are read through `cache.open_reduced` (decoded once, at
    256 px short side): training and validation do this every epoch; one-off evaluation reads originals.
    """

    def __init__(self, samples: Sequence[Sample], transform_for_label: Callable[[int], Callable], image_cache: Path | None = None):
        self.samples = list(samples)
        self.transforms = {label: transform_for_label(label) for label in (0, 1)}
        self.image_cache = image_cache
        self._reported: set[str] = set()

    def open(self, path: Path):
        return open_image(path) if self.image_cache is None else open_reduced(path, self.image_cache)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image = self.open(sample.path)
        except ImageError as error:
            if error.path not in self._reported:
                self._reported.add(error.path)
                log.warning("skipping unreadable image %s", error)
            return None
        return self.transforms[sample.label](image), sample.label, index


def collate_readable(batch: list):
    """Stack the readable items of a batch; returns (images, labels, indices) or None if none was readable."""
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    images, labels, indices = zip(*batch)
    return torch.stack(images), torch.tensor(labels), torch.tensor(indices)


def make_loader(
    samples: Sequence[Sample],
    train: bool,
    batch_size: int,
    num_workers: int,
    seed: int = 0,
    pin_memory: bool = False,
    normalisation: Normalisation = IMAGENET,
    image_cache: Path | None = None,
) -> DataLoader:
    """A DataLoader with Table S6 augmentation when `train`, else evaluation transforms; seeded for repeatability."""
    if train:
        transform_for_label = lambda label: train_transform(label == 1, normalisation)
    else:
        transform_for_label = lambda label: eval_transform(normalisation)
    dataset = ImageDataset(samples, transform_for_label, image_cache)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        num_workers=num_workers,
        collate_fn=collate_readable,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
        persistent_workers=False,
    )
