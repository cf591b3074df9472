"""Saliency maps: which pixels moved a trained model's score for the positive class (paper Sections 2.4, 3.4).

The paper used Flashtorch's saliency maps (Simonyan et al. 2014): the magnitude of the gradient of
the positive-class output with respect to each input pixel, maximised over the colour channels. That
is `saliency` here, computed with captum. Two more methods help where plain gradients are noisy:

- `gradcam`: Grad-CAM on the last convolutional feature map of each architecture (its `gradcam_layer`
  in wildvision.models): coarse regions (7x7 to 14x14 cells) rather than single pixels, easier to read
  for non-experts.
- `smoothgrad`: SmoothGrad (Smilkov et al. 2017, captum's `NoiseTunnel` over `Saliency`): the pixel
  map averaged over SMOOTHGRAD_SAMPLES copies of the photo with Gaussian noise (15% of the input's
  range) added; the speckle of single gradients averages out, at SMOOTHGRAD_SAMPLES times the work.
- `integrated_gradients`: gradients averaged along a path from a black image to the photo; steadier
  than plain saliency but `n_steps` times the work, so it is only run on request, with progress.

The two slow methods never pass the photo itself through the model, so its probability comes from one
more forward pass; they run one photo at a time and report progress per pass.

`guided_backprop` (CONTROL_METHODS) is no choice for people: wildvision.explain.checks runs it as the
control that the weight-randomisation sanity check must flag (Adebayo et al. 2018).

Every map is for the positive class (output index 1), whatever the model predicted, so a bright area
always means "this part pushed the score for captive / for sale" (where SqueezeNet's final ReLU clamps
that output at 0 its gradient vanishes, and the map uses the positive-minus-negative score instead). Maps come back in [0, 1] at the
size of the image that was passed in (or a requested display size); the model sees the image squashed
to 224x224 (`data.eval_pixels`), so resizing the map back to the image's size keeps it aligned.

Cost per image, photo to map, against an inference forward pass of the same batch on ready tensors
(experiments/bench_saliency.py, EfficientNet-Lite0 on 2 CPU cores): Grad-CAM about 1.3x (the input
needs no gradient, so autograd records only the layers after the Grad-CAM layer), Saliency about 3.1x
(a forward with a graph and a backward to the pixels; the transform alone is 0.2x). The probability
comes from the attribution's own forward pass, not a second one. While we explain, parameters do not
require gradients, so backward computes activation gradients only, and eval-mode BatchNorm layers use
a backward that is the one multiplication that frozen statistics make of it (PyTorch's own took longer
than the forward pass). Every attribution runs in `session.attribution_session`, under the model's lock,
which restores the model's state on the way out.

`examine` is what the dashboard's Predict page runs: for each file, from one decode, the probability,
the label, the map at display size and the photo at that size, batched and decoded ahead by
inference.batches as predict_paths is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum._utils.common import _register_backward_hook
from captum.attr import GuidedBackprop, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency
from PIL import Image
from torch import nn

from wildvision import inference
from wildvision.classes import NEGATIVE, POSITIVE
from wildvision.data import eval_pixels
from wildvision.explain.session import attribution_session
from wildvision.images import open_image
from wildvision.models import architecture
from wildvision.predict import LoadedModel

METHODS: dict[str, str] = {
    "saliency": "Saliency (the paper's method: pixel gradients)",
    "gradcam": "Grad-CAM (coarser regions, easier to read)",
    "smoothgrad": "SmoothGrad (Saliency averaged over noisy copies: smoother, slower)",
    "integrated_gradients": "Integrated Gradients (steadier, much slower)",
}
FAST_METHODS = ("saliency", "gradcam")
SLOW_METHODS = ("smoothgrad", "integrated_gradients")  # many passes of altered copies, never of the photo itself
# Methods that wildvision.explain.checks runs as controls and no page offers: Guided Backprop is the
# method Adebayo et al. (2018) found nearly unchanged when the model's weights are randomised, so the
# sanity check must flag it. Kept out of METHODS, which lists what people can pick.
CONTROL_METHODS: dict[str, str] = {
    "guided_backprop": "Guided Backprop (a control for the sanity check: its maps barely depend on the weights)",
}
IG_STEPS = 32
IG_INTERNAL_BATCH = 8  # images per forward/backward pass inside the slow methods: bounds memory
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15  # noise standard deviation as a share of the input's range (Smilkov et al. suggest 10-20%)
SALIENCY_PERCENTILE = 99.0  # pixel gradients are spiky: the top 1% saturate so the rest stays visible

Progress = Callable[[float], None]  # called with the fraction done, 0..1


class ExplainError(ValueError):
    """An explanation that cannot be made (unknown method or architecture); the message says why."""


@dataclass(frozen=True)
class Explanation:
    probability: float  # of the positive class
    label: str  # class name at the model's threshold
    heatmap: np.ndarray  # float32, H x W (the image's or the requested size), in [0, 1]; 1 = most influence
    method: str
    target: str = "positive output"  # or "score difference" where the positive output was clamped (see explain_many)
    unlike_training: float | None = None  # novelty.score, from the same forward pass; None when the model keeps no summary
    unusual: bool | None = None  # above the model's warning level: treat the probability with caution

    @property
    def blank(self) -> bool:
        """True when no pixel had any influence (e.g. SqueezeNet's ReLU head clamped the score at 0)."""
        return not bool(self.heatmap.max() > 0)


@dataclass(frozen=True)
class Examined:
    """One file as the Predict page shows it, all from a single decode (see `examine`)."""

    path: str
    image: Image.Image | None  # the photo shrunk to the display size (as Image.thumbnail does); None when unreadable
    explanation: Explanation | None  # probability, label at the model's threshold, and the map at the image's size
    error: str | None = None  # why the file could not be read


# --- preprocessing and postprocessing -----------------------------------------------------------


def target_layer(model: nn.Module, arch: str) -> nn.Module:
    """The module Grad-CAM reads for `arch` (its registry entry's `gradcam_layer`)."""
    try:
        return model.get_submodule(architecture(arch).gradcam_layer)
    except ValueError:
        raise ExplainError(f"no Grad-CAM layer is known for architecture {arch!r}") from None


def _to_batch(loaded: LoadedModel, images: Sequence[Image.Image]) -> torch.Tensor:
    pixels = eval_pixels()
    return inference.stack_inputs(loaded, [pixels(image) for image in images])


def _resize_maps(maps: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """N x h x w maps (over the whole 224x224 input) to one float32 array per image, at (width, height)."""
    resized = []
    for single, (width, height) in zip(maps, sizes):
        shrinking = height < single.shape[-2] or width < single.shape[-1]
        out = nn.functional.interpolate(single[None, None].float(), size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)
        resized.append(out[0, 0].clamp_(0, 1).cpu().numpy().astype(np.float32, copy=False))
    return resized


def _percentile(flat: torch.Tensor, percentile: float) -> torch.Tensor:
    """torch.quantile(flat, percentile / 100, dim=1) with linear interpolation, from the top values alone.

    Sorting all 50,176 values of each map cost a quarter of a forward pass per image; the top 1% give
    the same two neighbours to interpolate between (equal to torch.quantile within float rounding).
    """
    rank = percentile / 100 * (flat.shape[1] - 1)
    below = math.floor(rank)
    top = flat.topk(flat.shape[1] - below, dim=1).values  # descending: [-1] is the value at `below`, [-2] the next
    above = top[:, -2] if top.shape[1] > 1 else top[:, -1]
    return torch.lerp(top[:, -1], above, rank - below)


def _normalise(maps: torch.Tensor, percentile: float | None) -> torch.Tensor:
    """Scale each non-negative N x h x w map to [0, 1] by its maximum or a high percentile; all-zero stays zero."""
    flat = maps.flatten(1)
    scale = flat.max(dim=1).values if percentile is None else _percentile(flat, percentile)
    scale = torch.where(scale > 0, scale, flat.max(dim=1).values)  # a sparse map whose percentile is 0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (maps / scale[:, None, None]).clamp_(0, 1)


class _ScoreDifference(nn.Module):
    """The model with outputs (negative - positive, positive - negative): the log-odds that decide its answer."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        difference = logits[:, POSITIVE] - logits[:, NEGATIVE]
        return torch.stack([-difference, difference], dim=1)


class _GuidedBackprop(GuidedBackprop):
    """captum's GuidedBackprop, whose backward hooks also go on ReLU6 (EfficientNet-Lite's and MobileNetV2's
    activation), not only nn.ReLU: otherwise those networks would get plain gradients instead.

    For ReLU6 the hook's relu(grad_input) is grad_output * [0 < x < 6] kept where positive: the same
    guided rule as for ReLU.
    """

    def _register_hooks(self, module: nn.Module) -> None:
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))


class _Recorded(nn.Module):
    """`model` whose outputs are appended to `seen` (GuidedBackprop hooks modules, so it needs a module, not a function)."""

    def __init__(self, model: nn.Module, seen: list[torch.Tensor]):
        super().__init__()
        self.model = model
        self.seen = seen

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        output = self.model(inputs)
        self.seen.append(output.detach())
        return output


def _attribute(
    loaded: LoadedModel, batch: torch.Tensor, method: str, n_steps: int, progress: Progress | None, difference: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised non-negative maps, N x h x w, for the positive class, and the logits of the forward pass
    that made them (None for Integrated Gradients, which never runs the photo itself); the caller holds
    the attribution session.

    difference: attribute the positive-minus-negative score instead of the positive output alone.
    """
    model = _ScoreDifference(loaded.model) if difference else loaded.model
    seen: list[torch.Tensor] = []

    def recorded(inputs: torch.Tensor) -> torch.Tensor:
        output = model(inputs)
        seen.append(output.detach())
        return output

    if method == "saliency":
        grads = Saliency(recorded).attribute(batch.detach().requires_grad_(), target=POSITIVE, abs=True)
        return _normalise(grads.amax(dim=1), SALIENCY_PERCENTILE), seen[0]  # max over colour channels, as Simonyan et al.
    if method == "gradcam":
        # The input needs no gradient: captum makes the layer's output require one, so the graph starts there.
        layer = target_layer(loaded.model, loaded.arch)
        cam = LayerGradCam(recorded, layer).attribute(batch.detach(), target=POSITIVE, relu_attributions=True)
        return _normalise(cam[:, 0], None), seen[0]
    if method == "guided_backprop":  # a control (CONTROL_METHODS), made and scaled like saliency
        with warnings.catch_warnings():  # captum announces its ReLU hooks on every call
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU", category=UserWarning)
            grads = _GuidedBackprop(_Recorded(model, seen)).attribute(batch.detach().requires_grad_(), target=POSITIVE)
        return _normalise(grads.abs().amax(dim=1), SALIENCY_PERCENTILE), seen[0]
    if method in SLOW_METHODS:
        passes = n_steps if method == "integrated_gradients" else SMOOTHGRAD_SAMPLES
        calls, total = 0, math.ceil(passes / max(1, IG_INTERNAL_BATCH // len(batch)))

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            nonlocal calls
            output = model(inputs.contiguous(memory_format=torch.channels_last))
            calls += 1
            if progress is not None:
                progress(min(calls / total, 1.0))
            return output

        if method == "smoothgrad":
            grads = NoiseTunnel(Saliency(forward)).attribute(
                batch.detach(),
                nt_type="smoothgrad",
                nt_samples=SMOOTHGRAD_SAMPLES,
                nt_samples_batch_size=max(1, IG_INTERNAL_BATCH // len(batch)),
                stdevs=SMOOTHGRAD_NOISE * float(batch.max() - batch.min()),
                target=POSITIVE,
                abs=True,
            )
            return _normalise(grads.amax(dim=1), SALIENCY_PERCENTILE), None
        mean = torch.tensor(loaded.normalisation[0], device=batch.device)[None, :, None, None]
        std = torch.tensor(loaded.normalisation[1], device=batch.device)[None, :, None, None]
        black = ((0 - mean) / std).expand(batch.shape).contiguous()  # a black photo, normalised like the input
        attributions = IntegratedGradients(forward).attribute(
            batch,
            baselines=black,
            target=POSITIVE,
            n_steps=n_steps,
            internal_batch_size=max(IG_INTERNAL_BATCH, len(batch)),
        )
        return _normalise(attributions.abs().sum(dim=1), SALIENCY_PERCENTILE), None
    raise ExplainError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")


def _explain_batch(
    loaded: LoadedModel, batch: torch.Tensor, method: str, sizes: Sequence[tuple[int, int]], n_steps: int, progress: Progress | None
) -> list[Explanation]:
    """An Explanation per image of a transformed batch, maps at `sizes`; the caller holds the attribution session.

    progress: the fraction of this batch done (the slow methods report it pass by pass).
    """
    # The head's input is read from the pass that gave the logits (the slow methods' passes see altered copies).
    with inference.maybe_head_inputs(loaded, method not in SLOW_METHODS) as captured:
        maps, logits = _attribute(loaded, batch, method, n_steps, progress)
    if logits is None:
        with torch.no_grad(), inference.maybe_head_inputs(loaded) as captured:
            logits = loaded.model(batch)
    probabilities = inference.positive_probabilities(logits).cpu().tolist()
    unlike = inference.novelty_scores(loaded, captured, len(batch))
    maps = maps.detach()
    # SqueezeNet's head ends in a ReLU: where it clamps the positive output at 0, that output has no
    # gradient and the paper's map is blank. The answer still depends on the score difference, so
    # those maps are made from that instead (and say so).
    blank = (maps.flatten(1).amax(dim=1) <= 0).nonzero().flatten().tolist()
    if blank:
        maps[blank] = _attribute(loaded, batch[blank], method, n_steps, None, difference=True)[0].detach()
    targets = ["score difference" if index in blank else "positive output" for index in range(len(batch))]
    level = loaded.novelty.warning_level if loaded.novelty is not None else None
    return [
        Explanation(probability, loaded.label_for(probability), heatmap, method, target, score, None if score is None else score > level)
        for probability, heatmap, target, score in zip(probabilities, _resize_maps(maps, sizes), targets, unlike)
    ]


def _check_method(loaded: LoadedModel, method: str) -> None:
    """Fail before any work (and before taking the lock) on an unknown method, or Grad-CAM on an unknown architecture."""
    if method not in METHODS and method not in CONTROL_METHODS:
        raise ExplainError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "gradcam":
        target_layer(loaded.model, loaded.arch)


def _part(progress: Progress | None, done: int, count: int, total: int) -> Progress | None:
    """`progress` over all `total` images, as a progress callback for the `count` of them after the first `done`."""
    if progress is None:
        return None
    return lambda fraction: progress((done + fraction * count) / total)


# --- public API ---------------------------------------------------------------------------------


def explain_many(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    method: str = "saliency",
    progress: Progress | None = None,
    batch_size: int = 8,
    sizes: Sequence[tuple[int, int]] | None = None,
    n_steps: int = IG_STEPS,
) -> list[Explanation]:
    """An Explanation per image, in order, computed `batch_size` images per pass (one at a time for SLOW_METHODS).

    sizes: (width, height) of each heatmap; default each image's own size. A display-sized map saves
    memory on very large photos and stays aligned, since the map always spans the whole image.
    """
    _check_method(loaded, method)
    sizes = list(sizes) if sizes is not None else [image.size for image in images]
    if len(sizes) != len(images):
        raise ValueError(f"{len(images)} images but {len(sizes)} sizes")
    step = 1 if method in SLOW_METHODS else max(1, batch_size)
    explanations: list[Explanation] = []
    with attribution_session(loaded):
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            part = _part(progress, start, len(chunk), len(images))
            explanations.extend(_explain_batch(loaded, _to_batch(loaded, chunk), method, sizes[start : start + step], n_steps, part))
            if progress is not None:
                progress(min(start + step, len(images)) / len(images))
    return explanations


def _decode_for_display(path: str | Path, transform: Callable[[Image.Image], torch.Tensor], display_max: int) -> tuple[torch.Tensor, Image.Image]:
    """The model's input tensor and the photo shrunk to display size, from one decode (run in a loader thread)."""
    image = open_image(path)
    tensor = transform(image)  # from the full-size photo, as predict_paths and explain_many see it
    image.thumbnail((display_max, display_max))
    return tensor, image


def examine(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    method: str = "gradcam",
    display_max: int = 640,
    progress: Progress | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    n_steps: int = IG_STEPS,
) -> list[Examined]:
    """Each file's probability, label, map and photo at display size, in order, decoding each file once.

    This is everything the Predict page shows of a photo. Loader threads decode the next batches while
    this one is explained (`inference.batches`, as in predict_paths); each batch is explained as
    in explain_many, and its probabilities come from the attribution's own forward pass, so a score and
    its Grad-CAM map cost about 1.3 forward passes. The probability equals predict_paths' and the map
    explain_many's (at the display size) for the same file, up to float rounding. The map and the photo
    are at most `display_max` pixels on their longest side (the size Image.thumbnail gives), so they line
    up and keep memory small. An unreadable file gets its reason instead. batch_size: default
    `inference.default_batch_size(loaded.device)`; SLOW_METHODS run one photo at a time.
    """
    _check_method(loaded, method)
    transform = eval_pixels()
    step = 1 if method in SLOW_METHODS else batch_size or inference.default_batch_size(loaded.device)
    examined: list[Examined] = []
    batches = inference.batches(
        loaded,
        paths,
        lambda path: _decode_for_display(path, transform, display_max),
        tensor=lambda decoded: decoded[0],
        batch_size=step,
        workers=workers,
        run_forward=False,
    )
    with closing(batches):
        for batch in batches:
            explanations = {}
            if batch.inputs is not None:
                sizes = [row.prepared[1].size for row in batch.readable]
                with attribution_session(loaded):
                    explained = _explain_batch(
                        loaded, batch.inputs, method, sizes, n_steps, _part(progress, batch.rows[0].position, len(batch.rows), len(paths))
                    )
                explanations = {row.position: explanation for row, explanation in zip(batch.readable, explained)}
            for row in batch.rows:
                path = str(paths[row.position])
                examined.append(Examined(path, row.prepared[1], explanations[row.position]) if row.prepared else Examined(path, None, None, row.error))
            if progress is not None:
                progress((batch.rows[-1].position + 1) / len(paths))
    return examined


def explain(
    loaded: LoadedModel,
    image: Image.Image,
    method: str = "saliency",
    progress: Progress | None = None,
    size: tuple[int, int] | None = None,
    n_steps: int = IG_STEPS,
) -> Explanation:
    """The positive-class probability, label and a saliency map of one upright RGB image (see module doc)."""
    return explain_many(loaded, [image], method, progress, sizes=None if size is None else [size], n_steps=n_steps)[0]


def _colormap_lut() -> np.ndarray:
    """A 256 x 3 uint8 lookup table close to matplotlib's 'inferno': dark = no influence, bright yellow = most.

    Built from a few of inferno's colours by linear interpolation, so no plotting library is needed.
    """
    anchors = np.array(
        [
            (0.00, 0, 0, 4),
            (0.13, 31, 12, 72),
            (0.25, 85, 15, 109),
            (0.38, 136, 34, 106),
            (0.50, 186, 54, 85),
            (0.63, 227, 89, 51),
            (0.75, 249, 140, 10),
            (0.88, 249, 201, 50),
            (1.00, 252, 255, 164),
        ]
    )
    positions = np.linspace(0, 1, 256)
    return np.stack([np.interp(positions, anchors[:, 0], anchors[:, c]) for c in (1, 2, 3)], axis=1).round().astype(np.uint8)


COLORMAP = _colormap_lut()


def colorize(heatmap: np.ndarray) -> Image.Image:
    """The heatmap alone as an RGB image in the overlay's colours."""
    indices = (np.clip(np.nan_to_num(heatmap), 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(COLORMAP[indices], "RGB")


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """`image` blended with the coloured heatmap (weight `alpha`); the map is resized to the image if needed."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    colours = colorize(heatmap)
    if colours.size != image.size:
        colours = colours.resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), colours, alpha)
