"""The frozen feature network: any torchvision classifier by name, or any module the user brings.

`FeatureExtractor` reads the outputs of named submodules ("taps") and stops the network as soon
as the last tap has been produced, so nothing after it runs. Tapped outputs are copied at the
moment they are produced: torchvision's ReLUs work in place and would otherwise overwrite a
tapped convolution output (conv5_1 and relu5_1 of VGG-19 would come out identical).

The network is frozen: its parameters never require gradients, it stays in eval mode whatever
``train()`` is called with, and it is kept out of the model's ``state_dict`` (the weights come
from torchvision or from the user; backbones with ``weights="stored"`` are saved beside it in
``model.safetensors`` by `DeepGaze.save_pretrained`, never in training checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import ConfigError, WeightsError
from .backbone_weights import is_hub_weights, load_hub_backbone_state
from .config import EFFICIENTNET_B5_STATIC, STORED_WEIGHTS, BackboneConfig
from .efficientnet import efficientnet_b5

#: Backbones built by deepgaze-hub itself (not torchvision models), by ``BackboneConfig.name``.
OWN_BACKBONES: dict[str, Callable[[], nn.Module]] = {EFFICIENTNET_B5_STATIC: efficientnet_b5}

#: Precisions the backbone can run in (`FeatureExtractor.precision`).
PRECISIONS = ("float32", "bfloat16", "float16")

#: Side length of the dry-run input used to discover which modules the taps need.
_PROBE_SIZE = 224


class _AllTapsCaptured(Exception):
    """Raised inside a forward hook to stop the network once every tap has been read."""


class FeatureExtractor(nn.Module):
    """Wrap a network and return the outputs of its submodules ``layers``.

    Args:
        network: any ``nn.Module`` taking a normalised (B, 3, H, W) image batch.
        layers: dotted names of submodules (as in ``network.named_modules()``) to read, in order.
        mean, std: per-channel normalisation applied after dividing the input by ``input_scale``.
        input_scale: the input is divided by this first (255 for 0-255 inputs).

    ``forward(images)`` takes (B, 3, H, W) floats in ``[0, input_scale]`` and returns a list of
    (B, C_i, H_i, W_i) float32 tensors, one per layer. It always runs without gradients and in
    eval mode. A module that runs several times is read on its first call.

    Speed: the network runs channels-last by default (its weights are converted in place; the
    input per call): 0.53-0.78x the time of the default layout for VGG-19 on CPU, outputs equal
    within float32 rounding (~1e-6). ``channels_last = False`` (or ``DEEPGAZE_HUB_CHANNELS_LAST=0``
    in the environment) runs the default layout. The features of an image do not depend on the
    batch it is computed in except through float rounding, in either layout; images of one batch
    split in halves (as data-parallel processes split it) gave bit-identical features on CPU.
    ``precision`` (one of `PRECISIONS`, default ``"float32"``) runs the network under
    autocast in bfloat16 (GPUs; CPUs with AMX or AVX512-BF16, elsewhere it is slower) or float16
    (GPUs); the tapped outputs are float32 either way. Reduced precision changes predictions
    slightly (benchmarks/bench_model.py prints the information gain it costs).
    """

    def __init__(
        self,
        network: nn.Module,
        layers: Sequence[str],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        input_scale: float = 255.0,
    ) -> None:
        super().__init__()
        modules = dict(network.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            sample = [name for name in modules if name][:12]
            raise ConfigError(
                f"backbone has no submodules named {missing}; names look like {sample} "
                "(see network.named_modules())"
            )
        self.network = network
        self.layers = tuple(layers)
        self.input_scale = float(input_scale)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        network.requires_grad_(False)
        self.eval()
        self._precision = "float32"
        self._channels_last = False
        self.channels_last = os.environ.get("DEEPGAZE_HUB_CHANNELS_LAST", "1").strip() not in ("", "0")

    @property
    def channels_last(self) -> bool:
        """Whether the network runs in channels-last memory format (see the class docstring)."""
        return self._channels_last

    @channels_last.setter
    def channels_last(self, value: bool) -> None:
        layout = torch.channels_last if value else torch.contiguous_format
        self.network.to(memory_format=layout)
        self._channels_last = bool(value)

    @property
    def precision(self) -> str:
        """``"float32"``, ``"bfloat16"`` or ``"float16"``: the dtype the network runs in (autocast)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ConfigError(f"backbone precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
        self._precision = value

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Frozen: always eval mode (batch-norm statistics and dropout never change), whatever `mode`.
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images / self.input_scale - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        wanted = list(dict.fromkeys(self.layers))
        captured: dict[str, torch.Tensor] = {}
        modules = dict(self.network.named_modules())

        def make_hook(name: str):
            def hook(module: nn.Module, args: object, output: object) -> None:
                if name in captured:
                    return
                if not isinstance(output, torch.Tensor):
                    raise ConfigError(
                        f"tapped module {name!r} returned {type(output).__name__}, not a tensor; "
                        "tap a module that outputs a feature map (backbone.layers)"
                    )
                # a float32 copy in the default layout: later in-place ops must not change it
                captured[name] = output.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
                if len(captured) == len(wanted):
                    raise _AllTapsCaptured

            return hook

        handles = [modules[name].register_forward_hook(make_hook(name)) for name in wanted]
        try:
            x = self.normalize(images)
            if self._channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            dtype = getattr(torch, self._precision)
            reduced = torch.autocast(x.device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
            with torch.no_grad(), reduced:
                self.network(x)
        except _AllTapsCaptured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        not_run = [name for name in wanted if name not in captured]
        if not_run:
            raise ConfigError(
                f"the backbone finished without running the tapped modules {not_run}; "
                "tap modules of its forward pass (backbone.layers)"
            )
        return [captured[name] for name in self.layers]

    def infer_channels(self) -> list[int]:
        """Channels of each tapped output, from a dry run on a blank image."""
        parameter = next(self.network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        blank = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE, device=device)
        return [int(out.shape[1]) for out in self(blank)]


def build_backbone(config: BackboneConfig) -> FeatureExtractor:
    """Build the backbone named by ``config``, pruned to the modules the taps need.

    ``config.name`` is a torchvision classification model or one of `OWN_BACKBONES`. Weights come
    from torchvision's weights API (downloaded once into torch's hub cache, the cached file checked
    against its hash and read with ``weights_only=True``), from a local ``.safetensors`` file, or,
    with ``weights=None``, from a random initialisation seeded by ``config.init_seed`` (the same
    seed gives the same backbone for a given torch version). With ``weights="stored"`` the network
    is initialised like ``None`` and its weights are loaded afterwards from the model's own file
    (`DeepGaze.from_pretrained`).
    """
    builder = backbone_builder(config.name)
    needed = _modules_needed(config, builder)
    loads_now = config.weights is not None and config.weights != STORED_WEIGHTS
    network = None
    if loads_now:  # every tensor is overwritten below: no random initialisation (VGG-19's is ~2 s)
        with torch.device("meta"):
            empty = builder()
        pruned = _prune(empty, needed)
        if not any(module._non_persistent_buffers_set for module in empty.modules()):  # all in a state dict
            network = empty.to_empty(device="cpu")
    if network is None:
        network, pruned = _seeded(builder, config.init_seed, needed)
    if loads_now:
        state = _load_backbone_state(config)
        state = {key: value for key, value in state.items() if not key.startswith(pruned)}
        result = network.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise WeightsError(
                f"backbone weights {config.weights!r} do not fit {config.name}: "
                f"missing {list(result.missing_keys)[:10]}, unexpected {list(result.unexpected_keys)[:10]}"
            )
    return FeatureExtractor(
        network, config.layers, mean=config.mean, std=config.std, input_scale=config.input_scale
    )


def _seeded(builder: Callable[[], nn.Module], seed: int, needed: set[str]) -> tuple[nn.Module, tuple[str, ...]]:
    """The network randomly initialised from ``seed`` (torch's global generator is left as it was), pruned."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = builder()
    return network, _prune(network, needed)


def backbone_builder(name: str) -> Callable[[], nn.Module]:
    """A function building the randomly initialised network ``name`` (torchvision or `OWN_BACKBONES`)."""
    import torchvision

    if name == "custom":
        raise ConfigError(
            "this model uses a custom backbone module: pass it as DeepGaze(config, backbone=module) "
            "or from_pretrained(..., backbone=module)"
        )
    if name in OWN_BACKBONES:
        return OWN_BACKBONES[name]
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"unknown backbone {name!r}: neither a torchvision classification model "
            f"(torchvision.models.list_models(module=torchvision.models)) nor one of {sorted(OWN_BACKBONES)}"
        )
    return lambda: torchvision.models.get_model(name, weights=None)


def _modules_needed(config: BackboneConfig, builder: Callable[[], nn.Module]) -> set[str]:
    """Names of the modules that run before the last tap, found with a dry run on the meta device."""
    with torch.device("meta"):
        probe = builder()
    extractor = FeatureExtractor(probe, config.layers, mean=config.mean, std=config.std).to("meta")
    executed: set[str] = set()
    handles = [
        module.register_forward_pre_hook(lambda module, args, name=name: executed.add(name))
        for name, module in probe.named_modules()
    ]
    try:
        extractor(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return executed


def _prune(network: nn.Module, needed: set[str]) -> tuple[str, ...]:
    """Replace every subtree that never runs with ``nn.Identity``; return the pruned key prefixes."""
    pruned: list[str] = []
    for name, _ in list(network.named_modules()):
        if not name or name in needed or any(name.startswith(prefix) for prefix in pruned):
            continue
        if any(other.startswith(name + ".") for other in needed):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, child, nn.Identity())
        pruned.append(name + ".")
    return tuple(pruned)


def _load_backbone_state(config: BackboneConfig) -> dict[str, torch.Tensor]:
    weights = str(config.weights)
    if is_hub_weights(weights):  # hf-hub:owner/name@commit?sha256=... (see backbone_weights.py)
        return load_hub_backbone_state(weights, config.name)
    if weights.endswith(".safetensors") or os.path.sep in weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"backbone weights file {path} does not exist")
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for damaged files
            raise WeightsError(f"backbone weights file {path} is not a readable safetensors file ({error})") from None

    import torchvision

    if config.name in OWN_BACKBONES:
        raise ConfigError(
            f"{config.name} has no torchvision weights {weights!r}: give a .safetensors path, "
            f"{STORED_WEIGHTS!r} (weights saved with the model) or null"
        )
    enum = torchvision.models.get_model_weights(config.name)
    try:
        entry = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
    except KeyError:
        raise ConfigError(
            f"{config.name} has no weights {weights!r}; available: {[member.name for member in enum]}"
        ) from None
    try:
        state = entry.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except Exception as error:  # network, hash or file errors: say where the file must go
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name
        raise WeightsError(
            f"could not load {config.name} weights {entry} from {entry.url} ({error}). "
            f"Download that file to {cached} (torch's hub cache, set by $TORCH_HOME) or use "
            "weights=None for a random backbone."
        ) from error
    if config.name.startswith("densenet"):
        state = _rename_legacy_densenet_keys(state)
    return state


def _rename_legacy_densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's DenseNet files use old key names ("norm.1"); the modules are now "norm1"."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
    )
    renamed = {}
    for key, value in state.items():
        match = pattern.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed
