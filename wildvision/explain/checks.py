"""Checks that a saliency map says something about the model, not only about the photo (issue 15).

A map on the Predict page or in an evidence pack is only worth showing if it depends on what the model
learned and points at what drives its score. Three checks, all on the maps wildvision.explain.saliency makes:

1. Sanity (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", model-parameter randomisation
   test): re-initialise the network's layers from the head down, in stages, on a deep copy, and
   compare each method's maps with the trained model's. A method whose maps hardly change once the
   weights are random shows edges of the photo, not the model's reasons. Guided Backprop is the known
   failure and runs here as a control (saliency.CONTROL_METHODS); Saliency and Grad-CAM should pass.
2. Faithfulness (deletion curves, Petsiuk et al. 2018): the positive-class probability as the most
   salient pixels are removed first, against removing them in random order. A map that points at what
   drives the prediction makes the probability fall faster, so its area under the curve is lower.
3. Spurious cues: how much of a map's mass lies in the image's border, where the paper's Fig S3 found
   maps drawn to corners, watermarks and captions rather than the animal. Text detection is left out:
   nothing dependable for it is available offline here (no OCR engine is installed or allowed as a new
   dependency), and a guess would flag captions less reliably than looking at the border-heavy maps.

All maps are compared at the model's input size, 224 x 224, where they are made; explain resizes them
to the photo afterwards only for display.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage, stats
from scipy.integrate import trapezoid
from torch import nn

from wildvision import inference
from wildvision.explain import saliency
from wildvision.models import architecture
from wildvision.predict import LoadedModel

INPUT_SIZE = (224, 224)  # (width, height) the model sees (eval_transform); maps are compared here
SANITY_METHODS = ("saliency", "gradcam", "guided_backprop")
STAGE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # of the layers below the head randomised, head always included
SPEARMAN_THRESHOLD = 0.8  # a method passes when its maps' mean Spearman stays below this at every stage (see randomisation_test)

# SSIM constants of Wang et al. (2004) for data in [0, 1] (dynamic range L = 1): C1 = (0.01 L)^2, C2 = (0.03 L)^2.
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2

# --- 1. sanity: model-parameter randomisation ---------------------------------------------------


@dataclass(frozen=True)
class MethodSanity:
    """How one method's maps changed as the model was randomised from the head down.

    stages: what was re-initialised at each stage ("head", "head + top 12 of 49 layers", ... "all layers").
    spearman, ssim: per stage, the mean over the images of the Spearman rank correlation and the SSIM
    between the randomised model's map and the trained model's (1 = unchanged).
    passed: the maps changed substantially at every stage, from the head alone on (see `randomisation_test`).
    """

    method: str
    stages: tuple[str, ...]
    spearman: tuple[float, ...]
    ssim: tuple[float, ...]
    passed: bool
    threshold: float = SPEARMAN_THRESHOLD

    @property
    def highest_spearman(self) -> float:
        """The stages' highest mean Spearman correlation (in practice the head-only stage's): what `passed` is decided on."""
        return max(self.spearman)


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = SSIM_SIGMA) -> float:
    """Mean structural similarity (Wang et al. 2004) of two maps in [0, 1]; 1 when they are identical.

    Local means, variances and covariance come from a Gaussian window (sigma 1.5, as in the paper's
    11 x 11 window) via scipy.ndimage, so no image library is needed; constants C1 = 0.01^2 and
    C2 = 0.03^2 for a dynamic range of 1. Adebayo et al. report SSIM beside rank correlation because it
    also sees whether the map's structure (edges, blobs) survived, not only the order of its values.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {a.shape} and {b.shape}")

    def blur(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sigma, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return float(index.mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' absolute values, pixel by pixel.

    A constant map (e.g. blank: no pixel had any influence) has no ranks to share, so its correlation
    is taken as 0 rather than scipy's nan: a map that went blank has certainly changed.
    """
    x, y = np.abs(np.ravel(a)), np.abs(np.ravel(b))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def _layers(model: nn.Module, head: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """(head layers, the other layers from the top down): modules that hold parameters of their own.

    Registration order follows the forward pass in torchvision's and EfficientNet-Lite's networks, so
    reversing it walks from the output towards the input, as Adebayo et al.'s cascade does.
    """
    head_module = model.get_submodule(head)
    head_ids = {id(m) for m in head_module.modules()}
    own = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return [m for m in own if id(m) in head_ids], [m for m in reversed(own) if id(m) not in head_ids]


def _reinitialise(module: nn.Module) -> None:
    """Give `module` fresh random weights as a new network would have (its reset_parameters).

    BatchNorm's reset also restores running statistics to mean 0, variance 1, as in a new network.
    A layer without reset_parameters gets normal noise at its weights' own scale.
    """
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    with torch.no_grad():
        for parameter in module.parameters(recurse=False):
            parameter.normal_(0.0, float(parameter.std()) if parameter.numel() > 1 else 0.01)


def _stage_name(randomised: int, total: int) -> str:
    if randomised == 0:
        return "head"
    if randomised == total:
        return "all layers"
    return f"head + top {randomised} of {total} layers"


def _maps(loaded: LoadedModel, images: Sequence[Image.Image], method: str) -> list[np.ndarray]:
    """The method's maps of `images` at the model's input size (with explain's blank-map fallback)."""
    return [e.heatmap for e in saliency.explain_many(loaded, images, method, sizes=[INPUT_SIZE] * len(images))]


def randomisation_test(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    methods: Sequence[str] = SANITY_METHODS,
    seed: int = 0,
    stages: Sequence[float] = STAGE_FRACTIONS,
    threshold: float = SPEARMAN_THRESHOLD,
) -> dict[str, MethodSanity]:
    """Adebayo et al.'s cascading model-parameter randomisation test for each method, on `images`.

    The trained model's maps are made once; then, on a deep copy of the network (`loaded.model` is never
    touched), the head is re-initialised, then the head and the top fraction of the other layers in
    `stages` (0.25 = the quarter nearest the head), until every layer is random. At each stage each
    method's maps are compared with the trained model's by Spearman rank correlation of the absolute
    maps and by SSIM, averaged over the images.

    Rule: a method passes when the mean Spearman correlation stays below `threshold` (0.8) at every
    stage, i.e. its maps have already changed substantially once the head alone is random. The head is
    what turns features into "captive / for sale" (and the default model's only trained part); a map
    that ranks pixels as before although the head is noise explains the photo, not the model's answer,
    which is Adebayo et al.'s finding for Guided Backprop. Measured on the default model
    (EfficientNet-Lite0) and 8 demo photos of test_out_pet (4 captive, 4 other), stages head / +24 /
    +49 / +74 of 98 layers / all: Saliency 0.50, 0.41, 0.36, 0.32, 0.08; Grad-CAM 0.15, 0.18, 0.12,
    0.13, 0.13; Guided Backprop 0.998, 0.94, 0.69, 0.52, 0.21. A rule on full randomisation alone
    (e.g. below 0.5) would pass Guided Backprop here, where resetting every layer, BatchNorm statistics
    included, finally scrambles it too; the threshold sits between Saliency's 0.50 and Guided
    Backprop's 0.998 at the head stage.
    Re-initialisation draws from torch's generator seeded with `seed`, forked so the caller's random
    state is left as it was.
    """
    for method in methods:
        saliency._check_method(loaded, method)
    if not images:
        raise ValueError("the randomisation test needs at least one image")
    fractions = sorted({float(f) for f in stages})
    if fractions[-1] != 1.0:
        fractions.append(1.0)  # the rule is decided with every layer random
    trained = {method: _maps(loaded, images, method) for method in methods}
    with loaded.lock:  # nobody's attribution hooks are on the model while it is copied
        network = copy.deepcopy(loaded.model)
    randomised_model = dataclasses.replace(loaded, model=network, lock=threading.Lock(), novelty=None)
    head_layers, body = _layers(network, architecture(loaded.arch).head)
    names: list[str] = []
    scores: dict[str, tuple[list[float], list[float]]] = {method: ([], []) for method in methods}
    done = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in head_layers:
            _reinitialise(layer)
        for fraction in fractions:
            target = round(fraction * len(body))
            for layer in body[done:target]:
                _reinitialise(layer)
            done = max(done, target)
            names.append(_stage_name(done, len(body)))
            for method in methods:
                maps = _maps(randomised_model, images, method)
                scores[method][0].append(float(np.mean([spearman(a, b) for a, b in zip(trained[method], maps)])))
                scores[method][1].append(float(np.mean([ssim(a, b) for a, b in zip(trained[method], maps)])))
    return {
        method: MethodSanity(method, tuple(names), tuple(rho), tuple(similarity), max(rho) < threshold, threshold)
        for method, (rho, similarity) in scores.items()
    }


def sanity_json(results: Mapping[str, MethodSanity]) -> dict:
    """What `sanity.json` holds: the test, its rule, and per method the stages, correlations, SSIM and verdict."""
    thresholds = {r.threshold for r in results.values()}
    return {
        "test": "model-parameter randomisation, cascading from the head (Adebayo et al. 2018)",
        "rule": "passed when the mean Spearman rank correlation of the absolute maps with the trained model's is below the threshold at every stage, from the head alone re-initialised to all layers",
        "threshold": thresholds.pop() if len(thresholds) == 1 else sorted(thresholds),
        "methods": {
            method: {
                "stages": list(r.stages),
                "spearman": [round(v, 4) for v in r.spearman],
                "ssim": [round(v, 4) for v in r.ssim],
                "passed": bool(r.passed),
            }
            for method, r in results.items()
        },
    }


# --- 2. faithfulness: deletion curves -----------------------------------------------------------


@dataclass(frozen=True)
class DeletionCurve:
    """The positive-class probability as pixels are removed, most salient first and in random order.

    fractions: the share of pixels removed at each point, 0 to 1 in equal steps; salient[0] and
    random[0] are the unmodified image's probability. auc, random_auc: trapezoid areas over 0..1, in
    [0, 1]; a faithful map has auc below random_auc.
    """

    fractions: np.ndarray
    salient: np.ndarray
    random: np.ndarray
    auc: float
    random_auc: float


def _probabilities(loaded: LoadedModel, batch: torch.Tensor) -> np.ndarray:
    with loaded.lock, torch.inference_mode():
        logits = loaded.model(batch.contiguous(memory_format=torch.channels_last))
    return inference.positive_probabilities(logits).cpu().numpy().astype(np.float64)


@dataclass(frozen=True)
class _Deletion:
    """What a photo's deletion curves share, whatever the map: its input, the removal steps, the seeded
    tie-break values and the random-order baseline (made once per photo, not once per method)."""

    inputs: torch.Tensor  # 1 x 3 x H x W, normalised as the model expects
    mean: torch.Tensor  # 1 x 3 x 1 x 1: the colour removed pixels take
    fractions: np.ndarray
    counts: np.ndarray  # pixels removed at each step
    tie_break: np.ndarray  # a random value per pixel: equal map values are removed in this order
    random: np.ndarray  # the probability at each step, pixels removed in random order


def _removal_probabilities(loaded: LoadedModel, inputs: torch.Tensor, mean: torch.Tensor, counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The probability at each step as pixels go in `order`: the steps' inputs go through the model as one batch."""
    height, width = inputs.shape[-2:]
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    removed = torch.from_numpy(rank.reshape(height, width)[None] < counts[:, None, None]).to(inputs.device)  # (steps+1) x H x W
    return _probabilities(loaded, torch.where(removed[:, None], mean, inputs))


def _deletion(loaded: LoadedModel, image: Image.Image, steps: int, seed: int) -> _Deletion:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    inputs = saliency._to_batch(loaded, [image])
    pixels = inputs.shape[-2] * inputs.shape[-1]
    rng = np.random.default_rng(seed)
    tie_break = rng.random(pixels)
    random_order = rng.permutation(pixels)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * pixels).astype(np.int64)
    mean = inputs.mean(dim=(2, 3), keepdim=True)
    return _Deletion(inputs, mean, fractions, counts, tie_break, _removal_probabilities(loaded, inputs, mean, counts, random_order))


def _deletion_curve(loaded: LoadedModel, prepared: _Deletion, heatmap: np.ndarray) -> DeletionCurve:
    height, width = prepared.inputs.shape[-2:]
    saliency = torch.as_tensor(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)))[None, None]
    saliency = nn.functional.interpolate(saliency, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy().ravel()
    salient_order = np.lexsort((prepared.tie_break, -saliency))  # descending saliency, ties at random
    salient = _removal_probabilities(loaded, prepared.inputs, prepared.mean, prepared.counts, salient_order)
    fractions = prepared.fractions
    return DeletionCurve(fractions, salient, prepared.random, float(trapezoid(salient, fractions)), float(trapezoid(prepared.random, fractions)))


def deletion_curve(loaded: LoadedModel, image: Image.Image, heatmap: np.ndarray, steps: int = 20, seed: int = 0) -> DeletionCurve:
    """Remove `image`'s most salient pixels first, in `steps` equal fractions, and track the probability.

    Removed pixels take the image's mean colour (per channel, on the model's input) rather than a blur:
    a blur keeps the coarse shapes and colours a CNN can still read, so little would seem to matter,
    while a flat mean colour takes the information away and adds no new edges at the removal's outline
    beyond its boundary. The map (at any size; it spans the whole image) is resized to the model's
    224 x 224 input, which is where pixels are removed. Equal map values are ordered at random (seeded),
    so a saturated map does not remove pixels in raster order. The same is done in a random order as
    the baseline. Each curve's steps + 1 inputs go through the model as one batch.
    """
    return _deletion_curve(loaded, _deletion(loaded, image, steps, seed), heatmap)


def deletion_summary(
    loaded: LoadedModel, images: Sequence[Image.Image], methods: Sequence[str] = saliency.FAST_METHODS, steps: int = 20, seed: int = 0
) -> dict[str, dict]:
    """Per method, the mean deletion AUC over `images` against the random order's mean AUC.

    Returns {method: {"auc", "random_auc", "images", "lower_than_random"}}: an AUC below the random
    baseline's means removing what the map points at lowers the score faster than removing anything,
    i.e. the map points at what drives the prediction. Image i uses seed + i, and its random-order curve
    is made once and shared by every method, so all methods are measured against the same baseline.
    """
    prepared = [_deletion(loaded, image, steps, seed + index) for index, image in enumerate(images)]
    summary: dict[str, dict] = {}
    for method in methods:
        curves = [_deletion_curve(loaded, photo, heatmap) for photo, heatmap in zip(prepared, _maps(loaded, images, method))]
        auc = float(np.mean([c.auc for c in curves]))
        random_auc = float(np.mean([c.random_auc for c in curves]))
        summary[method] = {"auc": auc, "random_auc": random_auc, "images": len(curves), "lower_than_random": auc < random_auc}
    return summary


# --- 3. spurious cues: maps drawn to the border -------------------------------------------------


def border_share(heatmap: np.ndarray, width: float = 0.1) -> float:
    """The share of the map's total mass within the outer `width` of the image on each side.

    The band is round(width x height) rows at the top and bottom and round(width x width) columns at
    the left and right; at width 0.1 it covers 36% of the area, so a uniform map scores 0.36. The
    paper's Fig S3 shows maps drawn to corners and overlaid text, which sit there. A blank map has no
    mass anywhere and scores 0.
    """
    if not 0 <= width <= 0.5:
        raise ValueError(f"width must be between 0 and 0.5, not {width}")
    mass = np.abs(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)))
    if mass.ndim != 2:
        raise ValueError(f"a heatmap is H x W, not of shape {mass.shape}")
    total = mass.sum()
    if total <= 0:
        return 0.0
    rows, cols = mass.shape
    band_rows, band_cols = round(width * rows), round(width * cols)
    inner = mass[band_rows : rows - band_rows, band_cols : cols - band_cols].sum()
    return float((total - inner) / total)
