"""The published layouts of DeepGaze I / IIE, our EfficientNet-B5, and the literal reference forward
passes of the family (tests/reference_family.py), all on random weights made here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch
import torch.nn.functional as F

from deepgaze_hub.errors import WeightsError
from deepgaze_hub.hub import official
from deepgaze_hub.model.efficientnet import (
    B5,
    StaticSameConv2d,
    efficientnet_b5,
    round_filters,
    round_repeats,
    static_same_padding,
)

import reference_family as ref


pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_template(size: int = 1024) -> np.ndarray:
    """A (size, size) log density peaked off-centre, standing in for centerbias_mit1003.npy."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    logp = -((xx - 0.45 * size) ** 2 + (yy - 0.55 * size) ** 2) / (2 * (0.2 * size) ** 2)
    return logp - scipy.special.logsumexp(logp)


def centerbias_batch(batch: int, height: int, width: int) -> torch.Tensor:
    cb = torch.from_numpy(ref.authors_centerbias(gaussian_template(), height, width)).float()
    return cb.expand(batch, height, width).clone()


def images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator) * 255


def assert_log_density(out: torch.Tensor, batch: int, height: int, width: int) -> None:
    assert out.shape == (batch, height, width)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    sums = out.double().exp().sum(dim=(1, 2))
    torch.testing.assert_close(sums, torch.ones(batch, dtype=torch.float64), atol=1e-4, rtol=0)


# --- published layouts -------------------------------------------------------------------------


def test_published_key_counts():
    assert len(official.published_layout("deepgaze1")) == 19
    assert len(official.published_layout("deepgaze2e")) == 5461


def test_deepgaze1_layout():
    layout = official.published_layout("deepgaze1")
    assert layout["features.features.1.features.10.weight"] == (256, 256, 3, 3)
    assert layout["features.features.1.classifier.6.weight"] == (1000, 4096)
    assert layout["readout_network.conv0.weight"] == (1, 256, 1, 1)
    assert layout["finalizer.gauss.sigma"] == ()
    assert layout["finalizer.center_bias_weight"] == (1,)
    assert sum(math.prod(shape) for shape in layout.values()) == 61_101_098


def test_deepgaze2e_layout_structure():
    layout = official.published_layout("deepgaze2e")
    backbone_keys = {0: 320, 1: 854, 2: 1207, 3: 320}
    for b, count in backbone_keys.items():
        keys = [k for k in layout if k.startswith(f"models.{b}.")]
        assert sum(k.startswith(f"models.{b}.features.features.1.") for k in keys) == count
        assert sum(k.startswith(f"models.{b}.saliency_networks.") for k in keys) == 30 * 12
        assert sum(k.startswith(f"models.{b}.fixation_selection_networks.") for k in keys) == 30 * 9
        assert sum(k.startswith(f"models.{b}.finalizers.") for k in keys) == 30 * 2
        channels = official.DEEPGAZE2E_BACKBONES[b].channels
        assert layout[f"models.{b}.saliency_networks.29.layernorm0.weight"] == (channels,)
        assert layout[f"models.{b}.saliency_networks.0.conv0.weight"] == (8, channels, 1, 1)
    assert layout["models.0.features.features.1.module.conv1.weight"] == (64, 3, 7, 7)
    assert layout["models.1.features.features.1._blocks.38._bn2.running_var"] == (512,)
    assert layout["models.1.features.features.1._fc.weight"] == (1000, 2048)
    assert layout["models.2.features.features.1.features.denseblock4.denselayer32.norm1.weight"] == (1888,)
    assert layout["models.3.features.features.1.layer3.5.conv2.weight"] == (512, 16, 3, 3)
    assert layout["models.2.fixation_selection_networks.7.layernorm0.layernorm_part0.weight"] == (1,)
    assert layout["models.2.fixation_selection_networks.7.conv0.conv_part0.weight"] == (128, 1, 1, 1)
    assert layout["models.3.finalizers.29.gauss.sigma"] == ()
    assert layout["models.0.features.features.1.module.bn1.num_batches_tracked"] == ()


@pytest.mark.parametrize("kind", ["deepgaze1", "deepgaze2e"])
def test_tap_channels_match_readout_input(kind):
    """Run every backbone on the meta device and sum the channels at its taps."""
    backbones = [official.DEEPGAZE1_BACKBONE] if kind == "deepgaze1" else list(official.DEEPGAZE2E_BACKBONES)
    refs = [ref.DEEPGAZE1] if kind == "deepgaze1" else ref.DEEPGAZE2E_BACKBONES
    expected = [256] if kind == "deepgaze1" else [2048, 2416, 2048, 2560]
    for backbone, reference, channels in zip(backbones, refs, expected):
        assert list(backbone.taps) == reference["taps"]  # the two independent writings agree
        with torch.device("meta"):
            network = backbone.build().eval()
            x = torch.empty(1, 3, 128, 96)
        shapes = [t.shape for t in ref.tapped_outputs(network, list(backbone.taps), x, full_forward=False)]
        assert sum(shape[1] for shape in shapes) == backbone.channels == channels


def test_unknown_kind_is_refused():
    with pytest.raises(WeightsError, match="deepgaze3"):
        official.published_layout("deepgaze3")


def test_check_layout_accepts_the_published_layout(deepgaze1_state):
    official.check_layout(deepgaze1_state, "deepgaze1", "deepgaze1.pth")


def test_check_layout_names_missing_extra_and_misshapen(deepgaze1_state):
    broken = dict(deepgaze1_state)
    del broken["readout_network.conv0.weight"]
    broken["readout_network.conv1.weight"] = torch.zeros(1)
    broken["finalizer.center_bias_weight"] = torch.zeros(2)
    broken["finalizer.gauss.sigma"] = 8.0
    with pytest.raises(WeightsError) as info:
        official.check_layout(broken, "deepgaze1", "my/deepgaze1.pth")
    message = str(info.value)
    assert message.startswith("my/deepgaze1.pth: ")
    assert "1 missing key(s): readout_network.conv0.weight" in message
    assert "1 unexpected key(s): readout_network.conv1.weight" in message
    assert "2 key(s) of the wrong shape" in message
    assert "finalizer.center_bias_weight (expected shape (1,), got (2,))" in message
    assert "finalizer.gauss.sigma (expected a tensor of shape (), got float)" in message


def test_check_layout_truncates_long_lists(deepgaze1_state, deepgaze2e_state):
    partial = {k: v for k, v in deepgaze2e_state.items() if not k.startswith("models.3.")}
    with pytest.raises(WeightsError) as info:
        official.check_layout(partial, "deepgaze2e", "deepgaze2e.pth")
    message = str(info.value)
    missing = sum(k.startswith("models.3.") for k in deepgaze2e_state)
    assert f"{missing} missing key(s)" in message
    assert f"and {missing - 5} more" in message
    assert len(message) < 1000
    # a DeepGaze I file passed as DeepGaze IIE: everything is wrong, the message stays short
    with pytest.raises(WeightsError, match="5461 missing key.*19 unexpected key") as info:
        official.check_layout(deepgaze1_state, "deepgaze2e", "deepgaze1.pth")
    assert len(str(info.value)) < 1000


def test_check_layout_refuses_non_mappings():
    with pytest.raises(WeightsError, match="got list"):
        official.check_layout([1, 2], "deepgaze1", "deepgaze1.pth")


def test_random_state_dict_layout_and_determinism(deepgaze1_state):
    official.check_layout(deepgaze1_state, "deepgaze1", "random")
    again = official.random_published_state_dict("deepgaze1", seed=0)
    assert all(torch.equal(again[k], deepgaze1_state[k]) for k in deepgaze1_state)
    assert all(v.dtype == torch.float32 for v in deepgaze1_state.values())
    assert 2.0 <= float(deepgaze1_state["finalizer.gauss.sigma"]) <= 9.0


def test_random_deepgaze2e_state_dict(deepgaze2e_state):
    official.check_layout(deepgaze2e_state, "deepgaze2e", "random")
    tracked = [k for k in deepgaze2e_state if k.endswith("num_batches_tracked")]
    assert len(tracked) == 53 + 116 + 201 + 53
    assert all(deepgaze2e_state[k].dtype == torch.int64 for k in tracked)
    assert all(float(deepgaze2e_state[k].min()) >= 0.5 for k in deepgaze2e_state if k.endswith("running_var"))


# --- EfficientNet-B5 -----------------------------------------------------------------------------


def test_efficientnet_scaling_rules():
    assert [round_filters(c, 1.6) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        48, 24, 40, 64, 128, 176, 304, 512, 2048
    ]
    assert [round_repeats(r, 2.2) for r in (1, 2, 2, 3, 3, 4, 1)] == [3, 5, 5, 7, 7, 9, 3]
    assert static_same_padding(3, 2, 456) == (0, 1)
    assert static_same_padding(5, 2, 456) == (1, 2)
    assert static_same_padding(3, 1, 456) == (1, 1)
    assert static_same_padding(5, 1, 456) == (2, 2)
    assert static_same_padding(1, 1, 456) == (0, 0)
    # the per-layer rule differs where a strided layer sees an odd size (57 px -> pad 2, not 1)
    assert static_same_padding(3, 2, 57) == (1, 1)


def test_efficientnet_b5_structure():
    with torch.device("meta"):
        network = efficientnet_b5()
    assert len(network._blocks) == 39
    assert len(network.state_dict()) == 854
    assert network._blocks[24]._depthwise_conv.out_channels == 1056
    assert network._blocks[26]._depthwise_conv.out_channels == 1056
    assert network._blocks[35]._project_conv.out_channels == 304
    assert not hasattr(network._blocks[0], "_expand_conv") and hasattr(network._blocks[3], "_expand_conv")
    for name, module in network.named_modules():
        if isinstance(module, StaticSameConv2d):  # padding computed for 456 px at every depth
            before, after = static_same_padding(module.kernel_size[0], module.stride[0], B5.resolution)
            assert module.static_pad == (before, after, before, after), name
            assert module.padding == (0, 0)
        elif isinstance(module, torch.nn.BatchNorm2d):
            assert (module.eps, module.momentum) == (1e-3, 0.01), name


def test_efficientnet_b5_static_padding_shrinks_odd_sizes_even_at_456():
    """Padding for 456 px at every depth is not TF "same" deeper down: the stride-2 layer that sees
    57 px pads (0, 1) and gives 28, not 29 (the per-layer rule pads (1, 1) -> 29, then 15)."""
    with torch.device("meta"):
        network = efficientnet_b5().eval()
        x = torch.empty(1, 3, 456, 456)
    taps = ["_conv_stem", "_blocks.3._depthwise_conv", "_blocks.8._depthwise_conv",
            "_blocks.13._depthwise_conv", "_blocks.27._depthwise_conv"]
    shapes = [t.shape[-1] for t in ref.tapped_outputs(network, taps, x, full_forward=False)]
    assert shapes == [228, 114, 57, 28, 14]


def _randomise_(network: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if tensor.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.dim() == 1:
                tensor.copy_(0.5 + 0.5 * torch.rand(tensor.shape, generator=generator) if name.endswith("weight")
                             else 0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(tensor[0].numel()))


def test_efficientnet_matches_efficientnet_pytorch_with_static_456_padding():
    package = pytest.importorskip("efficientnet_pytorch")
    from efficientnet_pytorch.utils import Conv2dStaticSamePadding

    theirs = package.EfficientNet.from_name("efficientnet-b5").eval()
    ours = efficientnet_b5().eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)

    _randomise_(ours, seed=3)
    theirs.load_state_dict(ours.state_dict())

    # The package (0.7.x) computes each layer's padding from that layer's resolution for a 456 px
    # input; the published weights were made with padding computed for 456 px at every layer.
    per_layer = {}
    for name, module in theirs.named_modules():
        if isinstance(module, Conv2dStaticSamePadding):
            padder = module.static_padding
            pad = tuple(padder.padding) if isinstance(padder, torch.nn.ZeroPad2d) else (0, 0, 0, 0)
            before, after = static_same_padding(module.kernel_size[0], module.stride[0], 456)
            if pad != (before, after, before, after):
                per_layer[name] = pad
            module.static_padding = torch.nn.ZeroPad2d((before, after, before, after))  # static 456
    assert per_layer == {"_blocks.13._depthwise_conv": (1, 1, 1, 1), "_blocks.27._depthwise_conv": (2, 2, 2, 2)}

    taps = ["_blocks.13._depthwise_conv", "_blocks.24._depthwise_conv", "_blocks.26._depthwise_conv",
            "_blocks.35._project_conv", "_conv_head"]
    for shape in [(2, 3, 64, 80), (1, 3, 57, 61)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            mine = ref.tapped_outputs(ours, taps, x, full_forward=True)
            other = ref.tapped_outputs(theirs, taps, x, full_forward=True)
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
        for name, m, o in zip(taps, mine, other):
            assert m.shape == o.shape, name
            torch.testing.assert_close(m, o, rtol=1e-4, atol=1e-4 * float(o.abs().max()), msg=name)


# --- reference pieces ----------------------------------------------------------------------------


def test_reference_blur_matches_scipy_for_integer_three_sigma():
    x = torch.randn(1, 1, 23, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for sigma in (1.0, 2.0, 3.0):  # kernel radius ceil(3 sigma) == scipy's int(3 sigma + 0.5)
        out = ref.gaussian_filter_1d(ref.gaussian_filter_1d(x, 2, torch.tensor(sigma)), 3, torch.tensor(sigma))
        expected = scipy.ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(out[0, 0].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_reference_layer_norm_is_group_norm_with_one_group():
    x = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    weight, bias = torch.rand(5) + 0.5, torch.randn(5)
    expected = F.group_norm(x, 1, weight, bias, eps=1e-12)
    torch.testing.assert_close(ref.layer_norm(x, weight, bias), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1024, 1024), (768, 1024), (101, 57), (64, 64)])
def test_authors_centerbias(size):
    template = gaussian_template()
    cb = ref.authors_centerbias(template, *size)
    assert cb.shape == size and cb.dtype == np.float64
    assert abs(scipy.special.logsumexp(cb)) < 1e-9
    if size == (1024, 1024):
        np.testing.assert_allclose(cb, template, atol=1e-9)
    # nearest sampling: the peak stays where the template's is, in relative coordinates
    row, col = np.unravel_index(np.argmax(cb), cb.shape)
    assert abs(row / size[0] - 0.55) < 2 / size[0] + 1e-3
    assert abs(col / size[1] - 0.45) < 2 / size[1] + 1e-3


# --- reference forward passes --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 128, 128), (1, 129, 131)])
def test_deepgaze1_reference_is_a_log_density(deepgaze1_state, shape):
    batch, height, width = shape
    x, cb = images(batch, height, width), centerbias_batch(batch, height, width)
    out = ref.deepgaze1_forward(deepgaze1_state, x, cb)
    assert_log_density(out, batch, height, width)
    assert float((out - cb).std()) > 1e-3  # the readout contributes, not only the centre bias
    if batch > 1:  # images are independent of each other in a batch
        torch.testing.assert_close(ref.deepgaze1_forward(deepgaze1_state, x[1:], cb[1:]), out[1:], rtol=1e-5, atol=1e-5)


def test_deepgaze1_reference_stopping_early_changes_nothing(deepgaze1_state):
    x, cb = images(1, 128, 136, seed=2), centerbias_batch(1, 128, 136)
    early = ref.deepgaze1_forward(deepgaze1_state, x, cb)
    full = ref.deepgaze1_forward(deepgaze1_state, x, cb, full_forward=True)
    assert torch.equal(early, full)


def test_deepgaze1_tap_is_conv5_before_its_relu(deepgaze1_state):
    network = ref.load_network(ref.DEEPGAZE1["build"], deepgaze1_state, "features.features.1.")
    assert isinstance(network.features[10], torch.nn.Conv2d)
    assert isinstance(network.features[11], torch.nn.ReLU) and network.features[11].inplace
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        (tap,) = ref.tapped_outputs(network, ["features.10"], x, full_forward=True)
    assert float(tap.min()) < 0  # the hook's copy is taken before the in-place ReLU


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 65, 79)])
def test_deepgaze2e_reference_is_a_log_density(deepgaze2e_state, shape):
    batch, height, width = shape
    x, cb = images(batch, height, width, seed=1), centerbias_batch(batch, height, width)
    out = ref.deepgaze2e_forward(deepgaze2e_state, x, cb)
    assert_log_density(out, batch, height, width)
    assert float((out - cb).std()) > 1e-4


@pytest.mark.slow
def test_deepgaze2e_reference_treats_batch_images_independently(deepgaze2e_state):
    # At least 128 px: on smaller images DenseNet's block-4 maps are 1 x 1, the member's one-channel
    # saliency map is constant, and the layer norm over it (eps 1e-12) amplifies rounding noise,
    # which then depends on the batch layout (a property of the published architecture).
    x, cb = images(2, 128, 136, seed=5), centerbias_batch(2, 128, 136)
    out = ref.deepgaze2e_forward(deepgaze2e_state, x, cb)
    torch.testing.assert_close(ref.deepgaze2e_forward(deepgaze2e_state, x[1:], cb[1:]), out[1:], rtol=1e-5, atol=1e-5)


def test_deepgaze2e_mixes_members_and_backbones_with_equal_weights(deepgaze2e_state):
    """The mixture's density is the mean of the 4 backbones' densities, each the mean of 30 members."""
    x, cb = images(1, 64, 72, seed=4), centerbias_batch(1, 64, 72)
    backbones = [ref.deepgaze2e_backbone_forward(deepgaze2e_state, b, x, cb) for b in range(4)]
    for prediction in backbones:
        assert_log_density(prediction, 1, 64, 72)
    mixed = ref.deepgaze2e_forward(deepgaze2e_state, x, cb)
    expected = torch.stack(backbones).double().exp().mean(dim=0).log().float()
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-5)
    # members differ: backbone 0's mixture is not its first member
    network = ref.load_network(ref.DEEPGAZE2E_BACKBONES[0]["build"], deepgaze2e_state, "models.0.features.features.1.")
    with torch.no_grad():
        features = ref.readout_input(network, ref.DEEPGAZE2E_BACKBONES[0]["taps"], x, 2, 16)
        first = ref.deepgaze2e_member(deepgaze2e_state, 0, 0, features, cb)
    assert features.shape == (1, 2048, 2, 3)
    assert_log_density(first, 1, 64, 72)
    assert float((first - backbones[0]).abs().max()) > 1e-4
