"""How unlike a model's training photos an image is: a warning that its score may mean little.

A classifier gives a confident score even to a photo of something it has never seen (a screenshot, a
document, a kind of scene missing from its training folders), and that score says nothing. What the
head reads, the backbone's pooled output, tells how close an image is to the photos the head was
trained on. The novelty score is the mean cosine distance from an image's features to its 5 nearest training
photos, after projecting all features onto their 256 leading principal components (PCA). Measured on
the demo proxy (experiments/measure_novelty.py), it tells test_in from the out-of-distribution negatives
with AUROC 0.954 (test_out_pet/other) and 0.982 (test_out_nopet/other): nearly as well as all 1,280
dimensions (0.959, 0.985; 8.7 MB) or a Gaussian per class (Mahalanobis: 0.964, 0.983; 3.3 MB), and
better than 1 neighbour (0.938, 0.966), in a summary of 1.7 MB that ships beside the default model's head.

The warning level is the score that 95% of test_in (photos held back from the same folders as the
training photos) do not exceed: above it, an image is further from the training photos than all but
1 in 20 of the model's own kind of photo.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from wildvision import runs
from wildvision.data import eval_transform
from wildvision.images import open_image
from wildvision.models import head

if TYPE_CHECKING:
    from wildvision.predict import LoadedModel

FILE = "novelty.npz"
IN_DISTRIBUTION_SHARE = 0.95  # of test_in at or below the warning level
DEFAULT_K = 5
DEFAULT_DIMS = 256


@dataclass(frozen=True, eq=False)
class NoveltySummary:
    """What scoring needs of a model's training features, small enough to ship beside its head.

    Features are L2-normalised, centred on `mean`, projected onto `components` (PCA) and normalised
    again; `train` holds the training photos' projected features, stored as float16 to halve the size.
    """

    arch: str
    mean: np.ndarray  # [feature dim], float32
    components: np.ndarray  # [feature dim, projected dim], float16
    train: np.ndarray  # [training photos, projected dim], float16, unit length
    k: int
    warning_level: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoveltySummary):
            return NotImplemented
        same_arrays = all(np.array_equal(getattr(self, name), getattr(other, name)) for name in ("mean", "components", "train"))
        return same_arrays and (self.arch, self.k, self.warning_level) == (other.arch, other.k, other.warning_level)

    def unusual(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score lies above the warning level (NaN, an unreadable image, never does)."""
        return np.asarray(scores) > self.warning_level


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _project(features: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    return _unit((_unit(features) - mean) @ components.astype(np.float32))


def _distances(train: np.ndarray, projected: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance from each row of `projected` to its k nearest rows of `train` (a brute-force
    product: a few thousand training photos take well under a millisecond per image)."""
    similarity = projected @ train.astype(np.float32).T
    nearest = -np.partition(-similarity, k - 1, axis=1)[:, :k]
    return 1.0 - nearest.mean(axis=1)


def fit_summary(train_features: np.ndarray, test_in_features: np.ndarray, *, arch: str, k: int = DEFAULT_K, dims: int = DEFAULT_DIMS) -> NoveltySummary:
    """The summary of `train_features` ([photos, feature dim]; pooled backbone outputs) with its warning level
    set on `test_in_features`, photos from the same source that the training features do not include. Rows of
    NaN (unreadable images, as backbone_features gives them) are left out of both.

    test_in and not the training photos set the level because a training photo is among its own nearest
    neighbours, so its distances are too small to say what a new photo of the same kind scores.
    """
    train_features, test_in_features = (f[~np.isnan(f).any(axis=1)] for f in (np.asarray(train_features), np.asarray(test_in_features)))
    unit = _unit(train_features)
    mean = unit.mean(axis=0)
    dims = min(dims, unit.shape[0], unit.shape[1])
    _, _, right = np.linalg.svd(unit - mean, full_matrices=False)
    components = right[:dims].T.astype(np.float16)
    train = _project(train_features, mean, components).astype(np.float16)
    scores = _distances(train, _project(test_in_features, mean, components), k)
    level = float(np.quantile(scores, IN_DISTRIBUTION_SHARE, method="inverted_cdf"))
    return NoveltySummary(arch, mean.astype(np.float32), components, train, k, level)


def score(summary: NoveltySummary, features: np.ndarray) -> np.ndarray:
    """Each image's novelty score (0: at its training photos; larger: further away); NaN for a NaN row."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != summary.mean.shape[0]:
        raise ValueError(f"features of shape {features.shape} do not fit this summary of {summary.mean.shape[0]}-dimensional {summary.arch} features")
    scores = np.full(len(features), np.nan, dtype=np.float32)
    readable = ~np.isnan(features).any(axis=1)
    if readable.any():
        scores[readable] = _distances(summary.train, _project(features[readable], summary.mean, summary.components), summary.k)
    return scores


def save(summary: NoveltySummary, path: str | Path) -> None:
    """Store the summary as plain arrays (an .npz that loads without pickle), written atomically like a run's files."""
    arrays = {
        "arch": np.array(summary.arch),
        "mean": summary.mean,
        "components": summary.components,
        "train": summary.train,
        "k": np.array(summary.k),
        "warning_level": np.array(summary.warning_level),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not add ".npz" to the temporary name
            np.savez_compressed(handle, **arrays)

    runs.write_atomic(Path(path), write)


def load(path: str | Path) -> NoveltySummary:
    with np.load(path, allow_pickle=False) as stored:
        return NoveltySummary(str(stored["arch"]), stored["mean"], stored["components"], stored["train"], int(stored["k"]), float(stored["warning_level"]))


def pooled(outputs: torch.Tensor) -> torch.Tensor:
    """One vector per image: a feature map (SqueezeNet's head reads 512 x 13 x 13) is averaged over its positions."""
    return outputs.float().mean(dim=(2, 3)) if outputs.ndim == 4 else outputs.float().flatten(1)


@contextmanager
def head_inputs(loaded: LoadedModel) -> Iterator[list[torch.Tensor]]:
    """A list that collects the pooled input of the model's head, one [batch, dim] tensor per forward pass in the block.

    The head's input is the backbone output of models.split_at_head (in eval mode), read by a hook so that
    one forward pass gives both the logits and the features and no second copy of the network is made.
    Hold `loaded.lock` around the block, as for any forward pass: the hook would see other threads' passes.
    """
    captured: list[torch.Tensor] = []
    handle = head(loaded.model, loaded.arch).register_forward_pre_hook(lambda module, inputs: captured.append(pooled(inputs[0].detach()).cpu()))
    try:
        yield captured
    finally:
        handle.remove()


@torch.inference_mode()
def backbone_features(loaded: LoadedModel, paths: Sequence[str | Path], batch_size: int | None = None, workers: int | None = None) -> np.ndarray:
    """The pooled backbone output for each image file, [len(paths), dim] float32; a row of NaN for an unreadable image.

    Images are read and transformed exactly as predict.predict_paths reads them, so the features are those
    a prediction sees.
    """
    from wildvision.predict import default_batch_size, partition, prepared_batches, stack_inputs  # here, so that predict can import this module

    transform = eval_transform(loaded.normalisation)
    rows: dict[int, np.ndarray] = {}
    batches = prepared_batches(paths, lambda path: transform(open_image(path)), batch_size or default_batch_size(loaded.device), workers)
    with closing(batches):
        for batch in batches:
            readable, _ = partition(batch)
            if readable:
                with loaded.lock, head_inputs(loaded) as captured:
                    loaded.model(stack_inputs(loaded, [tensor for _, tensor in readable]))
                rows.update(zip((index for index, _ in readable), captured[0].numpy()))
    if not rows:
        raise ValueError("none of the images could be read, so there are no features")
    dim = next(iter(rows.values())).shape[0]
    return np.stack([rows.get(index, np.full(dim, np.nan, dtype=np.float32)) for index in range(len(paths))])
