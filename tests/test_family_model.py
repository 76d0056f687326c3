"""The generalised model (several backbones, layer-norm readouts, stored backbone weights, the
authors' centre-bias resizing) and the converter of the published DeepGaze I / IIE weights,
checked against the literal reference forward passes of tests/reference_family.py."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

import reference_family as ref
from conftest import TINY_LAYERS, random_images, tiny_network
from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.errors import ConfigError, WeightsError
from deepgaze_hub.hub import official
from deepgaze_hub.model.config import PathwayConfig
from deepgaze_hub.model.finalizer import Finalizer, blurred_resize_matrix
from deepgaze_hub.model.readout import EnsembleReadout
from deepgaze_hub.model.resize import resize_matrix
from deepgaze_hub.model.template import CenterBiasTemplate, zoom_indices
from deepgaze_hub.training.recipe import recipe_from_dict


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def template() -> np.ndarray:
    """A rough random (1024, 1024) log density standing in for centerbias_mit1003.npy."""
    logp = np.random.default_rng(0).normal(size=(1024, 1024))
    return logp - scipy.special.logsumexp(logp)


@pytest.fixture(scope="module")
def deepgaze1(deepgaze1_state, template) -> DeepGaze:
    return official.convert_official("deepgaze1", deepgaze1_state, centerbias=template, where="deepgaze1.pth")


@pytest.fixture(scope="module")
def deepgaze2e(deepgaze2e_state, template) -> DeepGaze:
    return official.convert_official("deepgaze2e", deepgaze2e_state, centerbias=template, where="deepgaze2e.pth")


def authors_bias(template: np.ndarray, batch: int, height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(ref.authors_centerbias(template, height, width)).float().expand(batch, height, width)


# --- the authors' centre-bias resizing -------------------------------------------------------------


@pytest.mark.parametrize("n_in", [1024, 7, 10])
def test_zoom_indices_are_scipys_order_0_zoom(n_in):
    source = np.arange(n_in, dtype=np.float64)[:, None].repeat(2, axis=1)
    for n_out in [1, 2, 3, 99, 128, 131, 157, 512, 1023, 1025, 2001]:
        zoomed = scipy.ndimage.zoom(source, (n_out / n_in, 1), order=0, mode="nearest")[:, 0]
        assert zoom_indices(n_in, n_out).tolist() == zoomed.astype(int).tolist(), (n_in, n_out)


@pytest.mark.parametrize("size", [(131, 157), (128, 160), (1024, 768)])
def test_zoom_nearest_template_is_the_authors_centerbias(template, size):
    bias = CenterBiasTemplate(template.shape, "zoom_nearest")
    bias.set_template(torch.from_numpy(template))
    expected = torch.from_numpy(ref.authors_centerbias(template, *size)).float()
    torch.testing.assert_close(bias(size), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("resize", ["bilinear", "zoom_nearest"])
def test_template_at_the_last_size_is_reused_until_the_template_changes(resize):
    module = CenterBiasTemplate((32, 32), resize=resize)
    first = module((20, 30))
    first += 100.0  # a caller's in-place change does not reach the next call
    second = module((20, 30))
    torch.testing.assert_close(second, CenterBiasTemplate((32, 32), resize=resize)((20, 30)), atol=0, rtol=0)
    module.log_density.data[3, 4] += 1.0  # changed behind autograd's back: compared by value
    changed = module((20, 30))
    fresh = CenterBiasTemplate((32, 32), resize=resize)
    fresh.log_density.copy_(module.log_density)
    assert not torch.equal(changed, second)
    torch.testing.assert_close(changed, fresh((20, 30)), atol=0, rtol=0)


def test_bilinear_stays_the_default_template_resizing():
    assert DeepGazeConfig(backbone=BackboneConfig(weights=None)).centerbias_resize == "bilinear"
    with pytest.raises(ValueError):
        CenterBiasTemplate((8, 8), "cubic")


# --- layer-norm readouts ---------------------------------------------------------------------------


def test_layer_norm_readout_equals_one_loop_per_member():
    torch.manual_seed(0)
    readout = EnsembleReadout(12, [8, 16, 1, 5, 1], num_members=3, nonlinearity="softplus", layer_norm=True)
    with torch.no_grad():
        for p in readout.parameters():
            p.copy_(torch.randn(p.shape) * 0.5 + (1.0 if p.ndim == 2 and p.shape[-1] in (12, 8, 16) else 0.0))
    features = torch.randn(2, 12, 5, 7)
    members = torch.tensor([2, 0])
    out = readout(features, members)
    assert out.shape == (2, 2, 5, 7)
    for j, k in enumerate(members.tolist()):
        x = features
        for i, layer in enumerate(readout.layers):
            if i < len(readout.norms):
                norm = nn.GroupNorm(1, x.shape[1], eps=1e-12)
                norm.weight.data, norm.bias.data = readout.norms[i].weight[k], readout.norms[i].bias[k]
                x = norm(x)
            x = F.conv2d(x, layer.weight[k][..., None, None], layer.bias[k] if layer.bias is not None else None)
            if i < len(readout.layers) - 1:
                x = F.softplus(x)
        torch.testing.assert_close(out[:, j], x[:, 0], atol=1e-5, rtol=1e-5)


def test_layer_norm_parameters_are_per_member_and_trainable():
    readout = EnsembleReadout(10, [4, 1], num_members=5, nonlinearity="relu", layer_norm=True)
    names = {name: tuple(p.shape) for name, p in readout.named_parameters()}
    assert names == {
        "layers.0.weight": (5, 4, 10),
        "layers.0.bias": (5, 4),
        "layers.1.weight": (5, 1, 4),
        "norms.0.weight": (5, 10),
        "norms.0.bias": (5, 10),
    }


# --- several backbones -----------------------------------------------------------------------------


def two_backbone_model(members=(2, 3)) -> DeepGaze:
    first = BackboneConfig(name="custom", weights=None, layers=list(TINY_LAYERS))
    second = PathwayConfig(
        backbone=BackboneConfig(name="custom", weights=None, layers=["relu2", "conv3"]),
        num_members=members[1],
        readout_factor=2,
        readout_channels=[6, 1],
        readout_layer_norm=True,
    )
    config = DeepGazeConfig(backbone=first, num_members=members[0], readout_factor=4, pathways=[second])
    torch.manual_seed(0)
    model = DeepGaze(config, backbone=[tiny_network(0), tiny_network(1)])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "sigma" in name:
                p.copy_(torch.linspace(2.0, 6.0, p.numel()))
    return model.eval()


def test_two_backbones_mix_all_members_with_equal_weight():
    model = two_backbone_model()
    x = random_images(2, 40, 52)
    members = model.member_log_densities(x)
    assert members.shape == (2, 5, 40, 52)
    mixture = model(x)
    torch.testing.assert_close(mixture, members.logsumexp(dim=1) - np.log(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(mixture.exp().sum((1, 2)), torch.ones(2), atol=1e-4, rtol=0)
    # global member indices, the first backbone's first; any order
    chosen = model.member_log_densities(x, members=[4, 0, 2])
    torch.testing.assert_close(chosen, members[:, [4, 0, 2]], atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x, members=3), members[:, 3], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        model(x, members=[5])


@pytest.mark.parametrize("factors", [(2, 2), (2, 3)])
@pytest.mark.parametrize("grad", [False, True])
def test_two_backbones_mixture_on_shared_and_separate_grids(factors, grad):
    """Backbones with the same saliency_map_factor add their members on one grid; others mix at
    full resolution; with and without gradients, far tails included."""
    model = two_backbone_model()
    model.config.pathways[0].saliency_map_factor = factors[1]
    model.pathways[0].finalizer.saliency_map_factor = factors[1]
    x = random_images(2, 41, 53)
    steep = -torch.linspace(0, 600, 53).expand(2, 41, 53)  # exp underflows far from the left edge
    for centerbias in (None, steep):
        with torch.set_grad_enabled(grad):
            members = model.member_log_densities(x, centerbias)
            mixture = model(x, centerbias)
        assert torch.isfinite(mixture).all()
        torch.testing.assert_close(mixture, members.logsumexp(dim=1) - np.log(5), atol=1e-4, rtol=1e-6)


def test_two_backbones_features_and_subsets():
    model = two_backbone_model()
    x = random_images(1, 40, 52)
    features = model.extract_features(x)
    assert isinstance(features, list) and [f.shape[1] for f in features] == [24, 28]
    torch.testing.assert_close(model.log_density_from_features(features, (40, 52)), model(x))
    with pytest.raises(ConfigError, match="several backbones"):
        model.grid_log_densities(features[0], (40, 52))
    subset = model.select_members([3, 1])
    assert subset.config.num_members == 1 and subset.config.pathways[0].num_members == 1
    torch.testing.assert_close(subset.member_log_densities(x), model.member_log_densities(x, members=[1, 3]))
    only_second = model.select_members([2, 4])
    assert only_second.config.pathways == [] and only_second.config.readout_layer_norm
    torch.testing.assert_close(only_second(x), model(x, members=[2, 4]))
    stacked = DeepGaze.stack([model, model])
    assert stacked.num_members == 10
    torch.testing.assert_close(stacked(x), model(x), atol=1e-5, rtol=0)


def test_two_backbones_save_and_load(tmp_path):
    model = two_backbone_model()
    model.save_pretrained(tmp_path)
    loaded = DeepGaze.from_pretrained(tmp_path, backbone=model.backbones)
    x = random_images(1, 33, 47)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["format_version"] == 2 and saved["pathways"][0]["readout_layer_norm"] is True


def test_pathway_config_is_checked():
    with pytest.raises(ConfigError, match=r"pathways\.0\.num_members"):
        DeepGazeConfig.from_dict({"backbone": {"weights": None}, "pathways": [{"num_members": 0}]})
    with pytest.raises(ConfigError, match="readout_channels must end with 1"):
        PathwayConfig(readout_channels=[4, 2])
    with pytest.raises(ConfigError, match="at most 1000"):
        DeepGazeConfig(num_members=600, pathways=[PathwayConfig(num_members=600)])


def test_format_1_configs_still_load():
    old = DeepGazeConfig(backbone=BackboneConfig(weights=None)).to_dict()
    for key in ("pathways", "readout_layer_norm", "centerbias_resize"):
        del old[key]
    old["format_version"] = 1
    config = DeepGazeConfig.from_dict(old)
    assert config.format_version == 2 and config.pathways == [] and config.centerbias_resize == "bilinear"
    assert config == DeepGazeConfig(backbone=BackboneConfig(weights=None))


# --- DeepGaze I ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(128, 160), (131, 157)])
def test_deepgaze1_equals_the_authors_forward(deepgaze1, deepgaze1_state, template, size):
    x = random_images(2, *size, seed=3)
    expected = ref.deepgaze1_forward(deepgaze1_state, x, authors_bias(template, 2, *size))
    out = deepgaze1(x)  # the stored template, resized the authors' way
    assert (out - expected).abs().max() < 1e-5


def test_deepgaze1_conversion(deepgaze1):
    config = deepgaze1.config
    assert (config.backbone.name, config.backbone.weights, config.backbone.layers) == ("alexnet", "stored", ["features.10"])
    assert (config.downsample, config.readout_factor, config.saliency_map_factor) == (2, 4, 4)
    assert config.readout_channels == [1] and config.centerbias_resize == "zoom_nearest"
    assert not any(p.requires_grad for p in deepgaze1.backbone.parameters())
    assert sorted(deepgaze1.state_dict()) == [
        "centerbias.log_density", "finalizer.centerbias_weight", "finalizer.sigma", "readout.layers.0.weight"
    ]  # fmt: skip


def test_deepgaze1_roundtrip_stores_the_pruned_backbone(deepgaze1, tmp_path):
    deepgaze1.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    backbone_keys = {k for k in keys if k.startswith("backbones.0.")}
    assert "backbones.0.features.10.weight" in backbone_keys
    assert not any("classifier" in k for k in keys)  # nothing after the tap is stored
    assert metadata["deepgaze_hub.weights_format"] == "2"
    loaded = DeepGaze.from_pretrained(tmp_path)
    x = random_images(2, 131, 157, seed=4)
    assert torch.equal(loaded(x), deepgaze1(x))


def test_stored_backbone_is_loaded_strictly(deepgaze1, tmp_path):
    from safetensors.torch import load_file, save_file

    deepgaze1.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["backbones.0.features.10.bias"]
    tensors["backbones.0.extra"] = torch.zeros(1)
    save_file(tensors, str(path), metadata={"deepgaze_hub.weights_format": "2"})
    with pytest.raises(WeightsError, match=r"missing tensors \['backbones.0.features.10.bias'\].*unexpected.*backbones.0.extra"):
        DeepGaze.from_pretrained(tmp_path)


def test_converter_refuses_other_files(deepgaze1_state):
    with pytest.raises(WeightsError, match="other.pth: does not have the layout of deepgaze2e.pth"):
        official.convert_official("deepgaze2e", deepgaze1_state, where="other.pth")
    with pytest.raises(WeightsError, match="centre bias"):
        official.convert_official("deepgaze1", deepgaze1_state, centerbias=np.zeros(5), where="x")
    with pytest.raises(WeightsError, match="unknown published"):
        official.convert_official("deepgaze3", deepgaze1_state, where="x")


def test_converter_default_centerbias(deepgaze1_state):
    model = official.convert_official("deepgaze1", deepgaze1_state, where="x")
    assert model.config.centerbias_shape == [1024, 1024]
    out = model(random_images(1, 130, 140))
    torch.testing.assert_close(out.exp().sum(), torch.tensor(1.0), atol=1e-4, rtol=0)


# --- DeepGaze IIE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(128, 160), (131, 157)])
def test_deepgaze2e_equals_the_authors_forward(deepgaze2e, deepgaze2e_state, template, size):
    x = random_images(2, *size, seed=5)
    expected = ref.deepgaze2e_forward(deepgaze2e_state, x, authors_bias(template, 2, *size))
    out = deepgaze2e(x)
    assert (out - expected).abs().max() < 1e-4


def test_deepgaze2e_one_backbones_members(deepgaze2e, deepgaze2e_state, template):
    x = random_images(1, 130, 146, seed=6)
    bias = authors_bias(template, 1, 130, 146)
    for b in (0, 1):  # ShapeNet-C (under "module."), EfficientNet-B5
        expected = ref.deepgaze2e_backbone_forward(deepgaze2e_state, b, x, bias)
        out = deepgaze2e(x, centerbias=bias, members=range(30 * b, 30 * b + 30))
        assert (out - expected).abs().max() < 1e-4


def test_deepgaze2e_conversion(deepgaze2e):
    config = deepgaze2e.config
    pathways = config.all_pathways()
    assert [p.backbone.name for p in pathways] == ["resnet50", "efficientnet_b5_static456", "densenet201", "resnext50_32x4d"]
    assert [sum(p.backbone.channels) for p in pathways] == [2048, 2416, 2048, 2560]
    assert pathways[0].backbone.layers[0] == "layer3.0.conv2"  # ShapeNet-C without "module."
    assert all(p.num_members == 30 and p.readout_channels == [8, 16, 1, 128, 16, 1] for p in pathways)
    assert deepgaze2e.num_members == 120
    assert not any(k.startswith("backbones") for k in deepgaze2e.state_dict())


@pytest.mark.slow
def test_deepgaze2e_roundtrip(deepgaze2e, tmp_path):
    deepgaze2e.save_pretrained(tmp_path)
    loaded = DeepGaze.from_pretrained(tmp_path)
    x = random_images(2, 128, 131, seed=7)
    assert torch.equal(loaded(x), deepgaze2e(x))


def test_tap_channel_table_matches_the_networks():
    for backbone in (official.DEEPGAZE1_BACKBONE, *official.DEEPGAZE2E_BACKBONES):
        channels = official.TAP_CHANNELS[backbone.name]
        assert sum(channels) == backbone.channels
        if backbone.name in ("alexnet", "shapenet_c", "resnext50_32x4d"):  # cheap ones; the others: parity tests
            with torch.device("meta"):
                network = backbone.build()
            outputs = ref.tapped_outputs(network, list(backbone.taps), torch.zeros(1, 3, 224, 224, device="meta"), False)
            assert tuple(out.shape[1] for out in outputs) == channels


# --- the finalizer's streamed mixture and its matrices ---------------------------------------------


def _finalizer(members: int, mode: str) -> Finalizer:
    finalizer = Finalizer(
        members, initial_sigma=3.0, truncate=3.0, initial_centerbias_weight=1.0, saliency_map_factor=2, resize_mode=mode
    )
    with torch.no_grad():
        finalizer.sigma.copy_(torch.linspace(0.5, 9.0, members))
        finalizer.centerbias_weight.copy_(torch.linspace(-0.5, 1.5, members))
    return finalizer


def _exact_mixture(finalizer: Finalizer, readout, centerbias, members) -> torch.Tensor:
    """The mixture formed in log space from the stack of every member's normalised log density."""
    z, rows, cols = finalizer.grid_log_density(readout, centerbias, members)
    return (z.logsumexp(dim=1) - np.log(members.numel()))[..., rows, :][..., cols]


@pytest.mark.parametrize("mode", ["nearest", "antialias"])
@pytest.mark.parametrize("size", [(48, 64), (47, 61)])
@pytest.mark.parametrize("grad", [False, True])  # without gradients the centre bias is added by the product
def test_streamed_mixture_equals_the_log_space_mixture(mode, size, grad):
    generator = torch.Generator().manual_seed(0)
    finalizer = _finalizer(19, mode)
    readout = 3 * torch.randn(2, 19, 5, 7, generator=generator)
    centerbias = torch.randn(2, *size, generator=generator).log_softmax(-1)
    members = torch.arange(19).flip(0)
    with torch.set_grad_enabled(grad):
        out = finalizer(readout, centerbias, members, mixture=True)
    assert out.shape == (2, *size)
    exact = _exact_mixture(finalizer, readout, centerbias, members)
    torch.testing.assert_close(out, exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.exp().sum((1, 2)), torch.ones(2), atol=1e-5, rtol=0)


def test_streamed_mixture_keeps_the_far_tail_finite():
    """Pixels hundreds of nats below every member's peak (exp underflows in float32) get the log-space value."""
    finalizer = _finalizer(10, "nearest")
    height, width = 40, 50
    steep = -torch.linspace(0, 600, width).expand(1, height, width)  # 600 nats across the image
    readout = torch.randn(1, 10, 3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        finalizer.centerbias_weight.fill_(1.0)
    members = torch.arange(10)
    with torch.no_grad():
        out = finalizer(readout, steep, members, mixture=True)
        exact = _exact_mixture(finalizer, readout, steep, members)
    assert torch.isfinite(out).all() and float(out[0, 0, -1]) < -500
    torch.testing.assert_close(out, exact, atol=1e-4, rtol=1e-6)


def test_streamed_mixture_gradients_equal_the_log_space_ones():
    finalizer = _finalizer(11, "nearest")
    generator = torch.Generator().manual_seed(2)
    readout = torch.randn(2, 11, 4, 5, generator=generator, requires_grad=True)
    centerbias = torch.randn(2, 33, 41, generator=generator)
    weights = torch.rand(2, 33, 41, generator=generator)
    members = torch.arange(11)
    grads = []
    for mix in (lambda: finalizer(readout, centerbias, members, mixture=True), lambda: _exact_mixture(finalizer, readout, centerbias, members)):
        finalizer.zero_grad()
        readout.grad = None
        (mix() * weights).sum().backward()
        grads.append([readout.grad.clone(), finalizer.sigma.grad.clone(), finalizer.centerbias_weight.grad.clone()])
    for ours, exact in zip(*grads):
        torch.testing.assert_close(ours, exact, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "antialias"])
@pytest.mark.parametrize(("n_in", "n_out"), [(24, 384), (5, 3), (7, 30), (10, 4), (1, 5), (5, 1), (13, 13)])
def test_blurred_resize_matrix_is_resize_then_replicate_padded_blur(mode, n_in, n_out):
    sigma = torch.tensor([0.7, 2.5, 9.0])
    matrix = blurred_resize_matrix(n_in, n_out, sigma, 3.0, mode)
    assert matrix.shape == (3, n_out, n_in)
    resized = resize_matrix(n_in, n_out, mode)  # (n_out, n_in)
    for k, s in enumerate(sigma.tolist()):
        radius = int(np.ceil(3.0 * s))
        taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / s) ** 2)
        taps = taps / taps.sum()
        padded = torch.cat([resized[:1].expand(radius, -1), resized, resized[-1:].expand(radius, -1)])
        expected = torch.stack([taps @ padded[i : i + 2 * radius + 1] for i in range(n_out)])
        torch.testing.assert_close(matrix[k], expected, atol=1e-6, rtol=0)


def test_blur_matrices_are_reused_only_for_the_same_sizes_and_sigmas():
    finalizer = _finalizer(4, "nearest")
    members = torch.arange(4)
    grid = finalizer.grid(torch.zeros(1, 40, 52))
    with torch.no_grad():
        first = finalizer.blur_matrices((5, 7), grid, members)
        assert finalizer.blur_matrices((5, 7), grid, members) is first  # built once for one size
        finalizer.sigma.data[2] = 4.25  # changed behind autograd's back: compared by value
        changed = finalizer.blur_matrices((5, 7), grid, members)
        other_size = finalizer.blur_matrices((6, 7), finalizer.grid(torch.zeros(1, 48, 52)), members)
        subset = finalizer.blur_matrices((5, 7), grid, members[:2])
    for got, sigma, size in ((changed, finalizer.sigma, (5, 7)), (other_size, finalizer.sigma, (6, 7)), (subset, finalizer.sigma[:2], (5, 7))):
        grid_size = (24 if size[0] == 6 else 20, 26)
        for matrix, n_in, n_out in zip(got, size, grid_size):
            torch.testing.assert_close(matrix, blurred_resize_matrix(n_in, n_out, sigma.detach(), 3.0, "nearest"), atol=0, rtol=0)
    # with gradients the matrices are built afresh, in the graph
    rows, _ = finalizer.blur_matrices((5, 7), grid, members)
    assert rows.requires_grad and rows is not changed[0]


def test_expand_picks_the_grid_pixels_of_the_index_maps():
    finalizer = _finalizer(2, "nearest")
    centerbias = torch.zeros(1, 37, 53)
    grid = finalizer.grid(centerbias)
    z = torch.randn(1, 2, *grid.bias.shape[-2:])
    torch.testing.assert_close(finalizer.expand(z, (37, 53)), z[..., grid.rows, :][..., grid.cols], atol=0, rtol=0)
    torch.testing.assert_close(finalizer.expand(z[:, 0], (37, 53)), z[:, 0][..., grid.rows, :][..., grid.cols], atol=0, rtol=0)


# --- choosing members of a model with several backbones --------------------------------------------


def three_backbone_model() -> DeepGaze:
    """Backbones with 2, 3 and 2 members (global members 0-1, 2-4, 5-6)."""
    def pathway(members: int, seed_layers: list[str]) -> PathwayConfig:
        backbone = BackboneConfig(name="custom", weights=None, layers=seed_layers)
        return PathwayConfig(backbone=backbone, num_members=members, readout_factor=2, readout_channels=[4, 1])

    first = BackboneConfig(name="custom", weights=None, layers=list(TINY_LAYERS))
    config = DeepGazeConfig(
        backbone=first, num_members=2, readout_factor=4, pathways=[pathway(3, ["relu2"]), pathway(2, ["relu2", "conv3"])]
    )
    torch.manual_seed(0)
    return DeepGaze(config, backbone=[tiny_network(0), tiny_network(1), tiny_network(2)]).eval()


def test_select_members_regroups_by_backbone_and_drops_unused_backbones():
    model = three_backbone_model()
    calls = [0, 0, 0]
    for i, extractor in enumerate(model.backbones):
        extractor.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    x = random_images(2, 40, 52)
    every = model.member_log_densities(x)
    calls[:] = [0, 0, 0]
    subset = model.select_members([6, 1, 5, 0])  # backbone 0: members 1, 0; backbone 1: none; backbone 2: 6, 5
    assert [p.num_members for p in subset.config.all_pathways()] == [1 + 1, 2]
    assert [p.backbone.layers for p in subset.config.all_pathways()] == [list(TINY_LAYERS), ["relu2", "conv3"]]
    assert subset.backbones[0] is model.backbones[0] and subset.backbones[1] is model.backbones[2]
    torch.testing.assert_close(subset.member_log_densities(x), every[:, [1, 0, 6, 5]], atol=1e-5, rtol=0)
    torch.testing.assert_close(subset(x), every[:, [0, 1, 5, 6]].logsumexp(1) - np.log(4), atol=1e-5, rtol=0)
    assert calls == [2, 0, 2]  # the backbone without a chosen member never ran
    only_middle = model.select_members([3])
    assert only_middle.config.pathways == [] and only_middle.backbone is model.backbones[1]
    torch.testing.assert_close(only_middle(x), every[:, 3], atol=1e-5, rtol=0)
    calls[:] = [0, 0, 0]
    model(x, members=[4, 2])
    assert calls == [0, 1, 0]


def test_training_says_what_is_supported_for_several_backbones():
    model = three_backbone_model()
    features = model.extract_features(random_images(1, 40, 52))
    with pytest.raises(ConfigError, match="one backbone; this model has 3.*select_members"):
        model.log_density_at(features[0], (40, 52), torch.tensor([0]), torch.tensor([3.0]), torch.tensor([4.0]))
    second_only = model.select_members([2, 4])
    z, _, _ = second_only.grid_log_densities(features[1], (40, 52))
    assert z.shape[1] == 2
    raw = {"name": "r", "data": {"d": "d.h5"}, "stages": [{"name": "s", "train": "d", "val": "d"}],
           "model": {"backbone": {"weights": None}, "pathways": [{"num_members": 2}]}}
    with pytest.raises(ConfigError, match="recipe r: model: pathways: training supports models with one backbone"):
        recipe_from_dict(raw)
