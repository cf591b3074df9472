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

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from wildvision import runs

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

    @cached_property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mean, components and train as float32 tensors, converted once rather than on every batch scored."""
        return tuple(torch.from_numpy(np.asarray(array, dtype=np.float32)) for array in (self.mean, self.components, self.train))

    def unusual(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score lies above the warning level (NaN, an unreadable image, never does)."""
        return np.asarray(scores) > self.warning_level


def _unit(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _project(features: torch.Tensor, mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    return _unit((_unit(features) - mean) @ components)


def _distances(train: torch.Tensor, projected: torch.Tensor, k: int) -> torch.Tensor:
    """Mean cosine distance from each row of `projected` to its k nearest rows of `train` (a brute-force
    product: a few thousand training photos take well under a millisecond per image).

    torch, not numpy: inside the inference loop numpy's BLAS threads would compete with torch's forward pass
    for the same cores (on 2 cores the score cost 15 ms per batch of 8 in numpy, about 1 in torch)."""
    return 1.0 - (projected @ train.T).topk(k, dim=1).values.mean(dim=1)


def fit_summary(train_features: np.ndarray, test_in_features: np.ndarray, *, arch: str, k: int = DEFAULT_K, dims: int = DEFAULT_DIMS) -> NoveltySummary:
    """The summary of `train_features` ([photos, feature dim]; pooled backbone outputs) with its warning level
    set on `test_in_features`, photos from the same source that the training features do not include. Rows of
    NaN (unreadable images, as backbone_features gives them) are left out of both.

    test_in and not the training photos set the level because a training photo is among its own nearest
    neighbours, so its distances are too small to say what a new photo of the same kind scores.
    """
    train_features, test_in_features = (f[~np.isnan(f).any(axis=1)] for f in (np.asarray(train_features, np.float32), np.asarray(test_in_features, np.float32)))
    unit = _unit(torch.from_numpy(train_features))
    mean = unit.mean(dim=0)
    # centred on their mean, n photos span at most n - 1 directions: a further component would be whatever the SVD
    # returns for a zero singular value, and would add noise to every new photo's score
    dims = max(1, min(dims, unit.shape[0] - 1, unit.shape[1]))
    _, _, right = np.linalg.svd((unit - mean).numpy(), full_matrices=False)
    components = right[:dims].T.astype(np.float16)
    components32 = torch.from_numpy(components.astype(np.float32))
    train = _project(torch.from_numpy(train_features), mean, components32).numpy().astype(np.float16)
    scores = _distances(torch.from_numpy(train.astype(np.float32)), _project(torch.from_numpy(test_in_features), mean, components32), k).numpy()
    level = float(np.quantile(scores, IN_DISTRIBUTION_SHARE, method="inverted_cdf"))
    return NoveltySummary(arch, mean.numpy(), components, train, k, level)


def score(summary: NoveltySummary, features: np.ndarray) -> np.ndarray:
    """Each image's novelty score (0: at its training photos; larger: further away); NaN for a NaN row."""
    return score_tensor(summary, torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()


def score_tensor(summary: NoveltySummary, features: torch.Tensor) -> torch.Tensor:
    """`score` of a [images, feature dim] float tensor (the pooled head inputs of a forward pass), as a CPU tensor."""
    if features.ndim != 2 or features.shape[1] != summary.mean.shape[0]:
        raise ValueError(f"features of shape {tuple(features.shape)} do not fit this summary of {summary.mean.shape[0]}-dimensional {summary.arch} features")
    mean, components, train = summary.tensors
    features = features.detach().float().cpu()
    with torch.no_grad():
        return _scores(features, mean, components, train, summary.k)


def _scores(features: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, train: torch.Tensor, k: int) -> torch.Tensor:
    readable = ~features.isnan().any(dim=1)
    if readable.all():
        return _distances(train, _project(features, mean, components), k)
    scores = torch.full((len(features),), float("nan"))
    if readable.any():
        scores[readable] = _distances(train, _project(features[readable], mean, components), k)
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


def backbone_features(loaded: LoadedModel, paths: Sequence[str | Path], batch_size: int | None = None, workers: int | None = None) -> np.ndarray:
    """The pooled backbone output for each image file, [len(paths), dim] float32; a row of NaN for an unreadable image.

    The images go through inference.batches, as predict.predict_paths reads them, so the features are those
    a prediction sees.
    """
    from wildvision import inference  # here: inference scores novelty with this module

    rows: dict[int, np.ndarray] = {}
    batches = inference.batches(loaded, paths, batch_size=batch_size, workers=workers, features=True)
    with closing(batches):
        for batch in batches:
            if batch.features is not None:
                rows.update(zip((row.position for row in batch.readable), batch.features.cpu().numpy()))
    if not rows:
        raise ValueError("none of the images could be read, so there are no features")
    dim = next(iter(rows.values())).shape[0]
    return np.stack([rows.get(index, np.full(dim, np.nan, dtype=np.float32)) for index in range(len(paths))])
