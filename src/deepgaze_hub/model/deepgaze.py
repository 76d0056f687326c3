"""`DeepGaze`: frozen backbones, K readouts each, finalizers, centre bias; a mixture of all members.

Shapes and units used throughout:

* images: (B, 3, H, W) float, values in [0, 255] like the reference (``predict`` converts anything);
* log densities: natural logarithm (nats) per pixel, (B, H, W), ``exp(out).sum((-2, -1)) == 1``;
* centre bias: (B, H, W) or (H, W) log density (normalisation does not matter; it is redone).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from ..errors import ConfigError, ImageError
from ..io.images import DEFAULT_MAX_PIXELS, ImageInput, describe, is_out_of_memory, load_image
from ..io.scale import Scaling, resize_image, resize_log_density, working_size
from .backbone import FeatureExtractor, build_backbone
from .card import ModelCardInfo, build_model_card
from .config import STORED_WEIGHTS, DeepGazeConfig, PathwayConfig, apply_overrides
from .files import card_from_metadata, find_model_files, load_weights, read_config, write_model_files
from .finalizer import Finalizer, log_mixture
from .readout import EnsembleReadout
from .resize import resize, shrink
from .template import CenterBiasTemplate

Members = int | Sequence[int] | torch.Tensor | None


class Pathway(nn.Module):
    """A further backbone's readouts and finalizers (module ``pathways.<i>``; the first backbone's
    are the model's own ``readout`` and ``finalizer``, as in single-backbone models)."""

    def __init__(self, config: PathwayConfig, resize_mode: str) -> None:
        super().__init__()
        self.readout, self.finalizer = _readout_and_finalizer(config, resize_mode)


def _readout_and_finalizer(config: PathwayConfig, resize_mode: str) -> tuple[EnsembleReadout, Finalizer]:
    readout = EnsembleReadout(
        sum(config.backbone.channels),
        config.readout_channels,
        config.num_members,
        config.nonlinearity,
        layer_norm=config.readout_layer_norm,
    )
    finalizer = Finalizer(
        config.num_members,
        initial_sigma=config.initial_sigma,
        truncate=config.blur_truncate,
        initial_centerbias_weight=config.initial_centerbias_weight,
        saliency_map_factor=config.saliency_map_factor,
        resize_mode=resize_mode,
        learn_sigma=config.learn_sigma,
        learn_centerbias_weight=config.learn_centerbias_weight,
    )
    return readout, finalizer


def _extractor(config: PathwayConfig, backbone: nn.Module | None) -> FeatureExtractor:
    bb = config.backbone
    if backbone is None:
        extractor = build_backbone(bb)
    elif isinstance(backbone, FeatureExtractor):
        extractor = backbone
    else:
        extractor = FeatureExtractor(backbone, bb.layers, mean=bb.mean, std=bb.std, input_scale=bb.input_scale)
    if bb.channels is None:
        bb.channels = extractor.infer_channels()
    return extractor


#: (pathway, its selected members' local indices, their positions in the request), per pathway
#: with at least one selected member.
Selection = list[tuple[int, torch.Tensor, torch.Tensor]]


class DeepGaze(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="deepgaze-hub",
    license="apache-2.0",
    tags=["saliency", "eye-tracking", "fixation-prediction", "deepgaze"],
    paper_url="https://arxiv.org/abs/1610.01563",
):
    """DeepGaze II (Kümmerer, Wallis & Bethge 2016), its ensembles, and the DeepGaze family.

    Args:
        config: the architecture (`DeepGazeConfig`); the defaults are the DeepGaze II reference
            with ImageNet VGG-19 weights.
        backbone: optional network to use instead of building ``config.backbone``: any
            ``nn.Module`` (its submodules ``config.backbone.layers`` are read) or a ready
            `FeatureExtractor`. Needed for backbones that torchvision does not provide. For a model
            with several backbones (``config.pathways``), a list with one entry per backbone
            (None: build it from the config).

    A model has one or more backbones ("pathways"), each with its own ensemble of readouts and
    finalizers; the density is the mixture of all members of all backbones with equal weights.
    Each backbone runs once per image whatever the number of members. It is frozen, always in
    eval mode, and deliberately not a registered submodule: its weights are not parameters of
    this model, not in ``state_dict()`` or checkpoints, and never seen by an optimiser; ``.to()``
    and friends still move it. Backbones with ``weights="stored"`` are saved in
    ``model.safetensors`` beside the readouts (under ``backbones.<i>.``) by `save_pretrained`.
    """

    def __init__(
        self, config: DeepGazeConfig | None = None, *, backbone: nn.Module | Sequence[nn.Module | None] | None = None
    ) -> None:
        super().__init__()
        config = copy.deepcopy(config) if config is not None else DeepGazeConfig()
        pathways = config.all_pathways()
        given = list(backbone) if isinstance(backbone, (list, tuple)) else [backbone]
        if len(given) > len(pathways) or (len(given) > 1 and len(given) != len(pathways)):
            raise ValueError(f"got {len(given)} backbones for a model with {len(pathways)} backbones")
        given += [None] * (len(pathways) - len(given))
        extractors = [_extractor(pathway, module) for pathway, module in zip(pathways, given)]
        object.__setattr__(self, "_backbones", extractors)  # not registered: see class docstring
        self.config = config
        self.readout, self.finalizer = _readout_and_finalizer(pathways[0], config.resize_mode)
        self.pathways = nn.ModuleList(Pathway(pathway, config.resize_mode) for pathway in pathways[1:])
        self.centerbias = CenterBiasTemplate(config.centerbias_shape, config.centerbias_resize)

    # -- module plumbing -------------------------------------------------------------------------
    @property
    def backbone(self) -> FeatureExtractor:
        """The (first) backbone."""
        return self._backbones[0]

    @property
    def backbones(self) -> list[FeatureExtractor]:
        """Every backbone, in pathway order."""
        return list(self._backbones)

    @property
    def precision(self) -> str:
        """What the backbones run in: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``
        (autocast, see `FeatureExtractor`); readouts and finalizer always run in float32."""
        return self._backbones[0].precision

    @precision.setter
    def precision(self, value: str) -> None:
        for extractor in self._backbones:
            extractor.precision = value

    def scaling(
        self, size: Sequence[int], *, pixels_per_degree: float | None = None, full_size: bool = False
    ) -> Scaling:
        """The size (rows, cols) this model predicts an image of ``size`` (rows, cols) at.

        By default images larger than ``config.training_scale.long_side`` are shrunk to it;
        ``pixels_per_degree`` (of the image as viewed) rescales it to the training scale;
        ``full_size`` keeps every size (see `deepgaze_hub.io.scale.working_size`).
        """
        scale = self.config.training_scale
        return working_size(
            (int(size[0]), int(size[1])),
            long_side=scale.long_side if scale is not None else None,
            training_ppd=scale.pixels_per_degree if scale is not None else None,
            pixels_per_degree=pixels_per_degree,
            full_size=full_size,
        )

    @property
    def num_members(self) -> int:
        """Members of all backbones together."""
        return self.config.total_members

    @property
    def device(self) -> torch.device:
        return self.centerbias.log_density.device

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half() ... reach the backbones too
        super()._apply(fn, recurse)
        for extractor in self._backbones:
            extractor._apply(fn, recurse)
        return self

    def extra_repr(self) -> str:
        names = [pathway.backbone.name for pathway in self.config.all_pathways()]
        return f"backbones={names}, layers={list(self.backbone.layers)}, members={self.num_members}"

    def _heads(self) -> list[tuple[EnsembleReadout, Finalizer]]:
        return [(self.readout, self.finalizer), *((p.readout, p.finalizer) for p in self.pathways)]

    def stored_backbones(self) -> dict[str, nn.Module]:
        """``{prefix: network}`` of the backbones whose weights live in ``model.safetensors``."""
        return {
            f"backbones.{i}.": extractor.network
            for i, (pathway, extractor) in enumerate(zip(self.config.all_pathways(), self._backbones))
            if pathway.backbone.weights == STORED_WEIGHTS
        }

    def set_centerbias(self, log_density: torch.Tensor) -> None:
        """Install a fitted centre-bias template, (rows, cols) log density over normalised coordinates."""
        self.centerbias.set_template(log_density)

    # -- forward pass ----------------------------------------------------------------------------
    def readout_size(self, image_size: Sequence[int], pathway: int = 0) -> tuple[int, int]:
        """(rows, cols) of the readout grid of backbone ``pathway`` for an image of (H, W) pixels."""
        config = self.config.all_pathways()[pathway]
        scale = config.downsample * config.readout_factor
        return math.ceil(image_size[0] / scale), math.ceil(image_size[1] / scale)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Backbone features on the readout grid: (B, sum of tapped channels, h, w).

        ``images`` (B, 3, H, W) in [0, 255]. This is what the feature cache stores. A model with
        several backbones returns a list, one such tensor per backbone. Raises `ImageError`
        (without naming the image: callers do) when the images are too small for a backbone or it
        runs out of memory on them.
        """
        features = self._extract(images, range(len(self._backbones)))
        return features[0] if len(features) == 1 else features

    def _extract(self, images: torch.Tensor, wanted: Iterable[int]) -> list[torch.Tensor | None]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        wanted = set(wanted)
        pathways = self.config.all_pathways()
        return [self._features(i, p, images) if i in wanted else None for i, p in enumerate(pathways)]

    def _features(self, i: int, pathway: PathwayConfig, images: torch.Tensor) -> torch.Tensor:
        extractor = self._backbones[i]
        mode, name = self.config.resize_mode, pathway.backbone.name
        height, width = images.shape[-2:]
        too_small = (
            f"an image of {width}x{height} pixels (width x height) is too small for the backbone "
            f"{name} (the model shrinks it by {pathway.downsample:g} first)"
        )
        if min(height, width) < pathway.downsample * max(2, pathway.saliency_map_factor):
            raise ImageError(too_small)
        small = shrink(images, pathway.downsample, mode)
        try:
            maps = extractor(small)
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                count = f"{len(images)} images" if len(images) > 1 else "an image"
                raise ImageError(
                    f"out of memory running the backbone {name} on {count} of "
                    f"{width}x{height} pixels (width x height) on {images.device}; use a smaller image: "
                    "downscale it, or refuse large ones with max_pixels (--max-pixels)"
                    + (", or predict fewer at once (batch_size)" if len(images) > 1 else "")
                ) from error
            message = str(error).lower()  # torch's words for a feature map shrunk to nothing
            if "too small" in message or "can't be greater than actual input size" in message:
                raise ImageError(f"{too_small}: {error}") from error
            raise
        scale = pathway.downsample * pathway.readout_factor
        grid = math.ceil(height / scale), math.ceil(width / scale)
        return torch.cat([resize(m, grid, mode) for m in maps], dim=1)

    def forward(
        self,
        images: torch.Tensor,
        centerbias: torch.Tensor | None = None,
        members: Members = None,
    ) -> torch.Tensor:
        """Log density (B, H, W) in nats for images (B, 3, H, W) with values in [0, 255].

        Args:
            centerbias: (B, H, W) or (H, W) log density; default: the stored template.
            members: which members form the mixture: ``None`` all, an int one member alone,
                a sequence a sub-mixture (indices count the first backbone's members first).
                Only the backbones of selected members run.
        """
        selection = self._selection(members, images.device)
        features = self._extract(images, [p for p, _, _ in selection])
        return self._log_density(features, images.shape[-2:], centerbias, selection, mixture=True)

    def member_log_densities(
        self, images: torch.Tensor, centerbias: torch.Tensor | None = None, members: Members = None
    ) -> torch.Tensor:
        """Every selected member's own log density, (B, K', H, W), from one pass of each backbone."""
        selection = self._selection(members, images.device)
        features = self._extract(images, [p for p, _, _ in selection])
        return self._log_density(features, images.shape[-2:], centerbias, selection, mixture=False)

    def log_density_from_features(
        self,
        features: torch.Tensor | Sequence[torch.Tensor],
        image_size: Sequence[int],
        centerbias: torch.Tensor | None = None,
        members: Members = None,
        mixture: bool = True,
    ) -> torch.Tensor:
        """Readout + finalizer on precomputed `extract_features` output (B, C, h, w) (a list of
        them, one per backbone, for a model with several).

        Returns (B, H, W) (``mixture=True``) or (B, K', H, W) log densities for (H, W) = image_size.
        """
        features = [features] if isinstance(features, torch.Tensor) else list(features)
        if len(features) != len(self._backbones):
            raise ValueError(f"got features of {len(features)} backbones for a model with {len(self._backbones)}")
        selection = self._selection(members, features[0].device)
        return self._log_density(features, image_size, centerbias, selection, mixture)

    def _log_density(
        self, features: list, image_size: Sequence[int], centerbias, selection: Selection, mixture: bool
    ) -> torch.Tensor:
        height, width = int(image_size[0]), int(image_size[1])
        first = next(f for f in features if f is not None)
        bias = self._centerbias_for(centerbias, first.shape[0], (height, width), first.device)
        heads = self._heads()
        if mixture:
            return log_mixture([(heads[p][1], heads[p][0](features[p], local), local) for p, local, _ in selection], bias)
        parts = []
        for p, local, _ in selection:
            readout, finalizer = heads[p]
            z, _, _ = finalizer.grid_log_density(readout(features[p], local), bias, local)
            parts.append(finalizer.expand(z, (height, width)))
        if len(parts) == 1:  # one backbone: its members in the order asked for
            return parts[0]
        order = torch.cat([positions for _, _, positions in selection])
        return torch.cat(parts, dim=1)[:, torch.argsort(order)]

    def _single_backbone(self, what: str) -> None:
        if len(self._backbones) > 1:
            raise ConfigError(
                f"{what} supports models with one backbone; this model has {len(self._backbones)}. "
                "Models with several backbones support forward, member_log_densities, "
                "log_density_from_features and predict; select_members with members of one backbone "
                "gives a one-backbone model, on which it works"
            )

    def grid_log_densities(
        self,
        features: torch.Tensor,
        image_size: Sequence[int],
        centerbias: torch.Tensor | None = None,
        members: Members = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every selected member's normalised log density on the finalizer grid, and its layout.

        Returns ``(z, rows, cols)``: z (B, K', G_h, G_w) and index maps rows (H,), cols (W,) such
        that member k's log density at pixel (y, x) of the (H, W) = image_size image is
        ``z[:, k, rows[y], cols[x]]``. With the reference's nearest resizing the grid is
        (H / saliency_map_factor, W / saliency_map_factor) and each grid cell stands for
        ``bincount(rows) x bincount(cols)`` pixels; with antialiased resizing it is the image.
        Single-backbone models only (`ConfigError` otherwise): what training uses.
        """
        self._single_backbone("grid_log_densities (training)")
        height, width = int(image_size[0]), int(image_size[1])
        index = self._member_index(members, features.device)
        bias = self._centerbias_for(centerbias, features.shape[0], (height, width), features.device)
        return self.finalizer.grid_log_density(self.readout(features, index), bias, index)

    def log_density_at(
        self,
        features: torch.Tensor,
        image_size: Sequence[int],
        batch_index: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        centerbias: torch.Tensor | None = None,
        members: Members = None,
    ) -> torch.Tensor:
        """Each selected member's log density (nats) at fixations, (F, K'), without full-size maps.

        ``features`` (B, C, h, w) from `extract_features`; fixation f lies in image
        ``batch_index[f]`` at pixel ``(int(y[f]), int(x[f]))`` (x = column, y = row). Equal to
        indexing `member_log_densities` there, at a fraction of the memory: what training uses.
        Single-backbone models only (`ConfigError` otherwise).
        """
        z, rows, cols = self.grid_log_densities(features, image_size, centerbias, members)
        return z[batch_index.long(), :, rows[y.long().clamp(0, len(rows) - 1)], cols[x.long().clamp(0, len(cols) - 1)]]

    def _selection(self, members: Members, device: torch.device) -> Selection:
        index = self._member_index(members, torch.device("cpu"))
        positions = torch.arange(index.numel())
        selection, start = [], 0
        for p, pathway in enumerate(self.config.all_pathways()):
            inside = (index >= start) & (index < start + pathway.num_members)
            if bool(inside.any()):
                selection.append((p, (index[inside] - start).to(device), positions[inside].to(device)))
            start += pathway.num_members
        return selection

    def _member_index(self, members: Members, device: torch.device) -> torch.Tensor:
        if members is None:
            index = torch.arange(self.num_members)
        else:
            index = torch.as_tensor(members, dtype=torch.long).reshape(-1).cpu()
            if index.numel() == 0 or index.min() < 0 or index.max() >= self.num_members:
                raise ValueError(f"members must be in [0, {self.num_members}), got {index.tolist()}")
        return index.to(device)

    def _centerbias_for(self, centerbias, batch: int, size: tuple[int, int], device) -> torch.Tensor:
        if centerbias is None:
            return self.centerbias(size).to(device).expand(batch, *size)
        bias = torch.as_tensor(centerbias, dtype=torch.float32, device=device)
        if bias.ndim == 2:
            bias = bias.expand(batch, *bias.shape)
        if tuple(bias.shape) != (batch, *size):
            raise ValueError(f"centerbias must be (B, H, W) = {(batch, *size)} or (H, W), got {tuple(bias.shape)}")
        if not torch.isfinite(bias).all():
            raise ValueError("centerbias has NaN or infinite values; it must be a finite log density")
        return bias

    # -- convenience -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        centerbias: Any = None,
        members: Members = None,
        batch_size: int = 8,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        pixels_per_degree: float | None = None,
        full_size: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Log densities (nats) for images of any kind and size, each at its own size, on the CPU.

        ``images``: one image (path, bytes, PIL image, numpy array (H, W[, C]), tensor ([C,] H, W))
        or a list of them; a 4-d tensor or array is a batch. Integer pixels are read at their
        type's full range, float pixels must be in [0, 1] (see `deepgaze_hub.io.images`).
        Returns an (H, W) tensor for one image, (B, H, W) for a batch, a list for a list.
        ``centerbias``: None (template), or one (H, W) log density per image, in the same shape.
        Same-size images are processed ``batch_size`` at a time.
        ``max_pixels``: images with more pixels (H x W) are refused before they are decoded
        (default `deepgaze_hub.io.images.DEFAULT_MAX_PIXELS`, 40 million; None: no limit).

        Scale (`scaling`): an image larger than the model's working size
        (``config.training_scale``, 1024 pixels on the long side for DeepGaze II) is predicted
        shrunk to it and its log density resampled to the image's size (bilinear in log space,
        renormalised); smaller images are predicted as they are. ``pixels_per_degree`` (of the
        images as viewed, see `deepgaze_hub.io.scale.pixels_per_degree`) rescales them so the
        model sees its training scale; ``full_size=True`` predicts every image at its own size.
        Reduced precision: set ``model.precision``.

        Raises `ImageError` naming the image (its path, or its position and type) when one cannot
        be read, is too large or too small for the backbone, or runs out of memory.
        """
        was_training = self.training
        self.eval()
        scale = {"pixels_per_degree": pixels_per_degree, "full_size": full_size}
        try:
            if isinstance(images, (list, tuple)):
                return self._predict_list(list(images), centerbias, members, batch_size, max_pixels, scale)
            if getattr(images, "ndim", None) == 4:  # a batch: tensor (B, C, H, W) or array (B, H, W, C)
                biases = None if centerbias is None else list(centerbias)
                return torch.stack(self._predict_list(list(images), biases, members, batch_size, max_pixels, scale))
            biases = None if centerbias is None else [centerbias]
            return self._predict_list([images], biases, members, batch_size, max_pixels, scale)[0]
        finally:
            self.train(was_training)

    def _predict_list(
        self,
        images: list,
        centerbias: list | None,
        members: Members,
        batch_size: int,
        max_pixels: int | None,
        scale: dict[str, Any],
    ) -> list[torch.Tensor]:
        if centerbias is not None and len(centerbias) != len(images):
            raise ValueError(f"got {len(centerbias)} centre biases for {len(images)} images")
        tensors = [load_image(image, describe(image, i), max_pixels=max_pixels) for i, image in enumerate(images)]
        scalings = [self.scaling(tensor.shape[-2:], **scale) for tensor in tensors]
        tensors = [resize_image(tensor, scaling.working) for tensor, scaling in zip(tensors, scalings)]
        if centerbias is not None:
            centerbias = [_scaled_centerbias(bias, scaling) for bias, scaling in zip(centerbias, scalings)]
        results: list[torch.Tensor | None] = [None] * len(tensors)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, tensor in enumerate(tensors):
            by_size.setdefault(tuple(tensor.shape[-2:]), []).append(i)
        for size, indices in by_size.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = torch.stack([tensors[i] for i in chunk]).to(self.device)
                bias = None if centerbias is None else torch.stack([torch.as_tensor(centerbias[i], dtype=torch.float32) for i in chunk])
                names = ", ".join(describe(images[i], i) for i in chunk)
                try:
                    out = self(batch, centerbias=bias, members=members)
                except ImageError as error:
                    raise ImageError(f"{names}: {error}") from error
                except (RuntimeError, MemoryError) as error:
                    if not is_out_of_memory(error):
                        raise
                    raise ImageError(
                        f"{names}: out of memory predicting {size[1]}x{size[0]} pixels "
                        f"(width x height) on {self.device}; use a smaller image: downscale it, or refuse "
                        "large ones with max_pixels (--max-pixels)"
                    ) from error
                for i, log_density in zip(chunk, out):
                    results[i] = resize_log_density(log_density.float().cpu(), scalings[i].original)
        return results  # type: ignore[return-value]

    # -- ensembles ---------------------------------------------------------------------------------
    # Every trainable tensor has the member as its first axis (readout weights (K, out, in), sigma
    # (K,), centre-bias weight (K,)), so combining models is stacking along it. The results share
    # this model's backbone object (no second copy is built).
    def select_members(self, members: Sequence[int]) -> DeepGaze:
        """A model made of the chosen members only, in this order (one fold's member, a sub-ensemble).

        In a model with several backbones the members stay grouped by backbone (in the order
        given within each) and backbones without a chosen member are left out. Its
        ``card_info`` keeps this model's provenance but not its evaluation table, which was
        measured on the full ensemble.
        """
        index = torch.as_tensor(list(members), dtype=torch.long)
        if index.numel() == 0 or index.min() < 0 or index.max() >= self.num_members:
            raise ValueError(f"members must be in [0, {self.num_members}), got {list(members)}")
        selection = self._selection(index, torch.device("cpu"))
        pathways = self.config.all_pathways()
        kept = [dataclasses.replace(pathways[p], num_members=local.numel()) for p, local, _ in selection]
        subset = type(self)(self.config.with_pathways(kept), backbone=[self._backbones[p] for p, _, _ in selection])
        heads = self._heads()
        with torch.no_grad():
            for (p, local, _), pair in zip(selection, subset._heads()):
                for target, source in zip(pair, heads[p]):
                    parameters = dict(source.named_parameters())
                    for name, parameter in target.named_parameters():
                        parameter.copy_(parameters[name].detach()[local.to(parameter.device)])
            subset.centerbias.log_density.copy_(self.centerbias.log_density)
        if self.card_info is not None:
            title = self.card_info.title or self.card_info.name or "DeepGaze"
            subset.card_info = dataclasses.replace(
                self.card_info, title=f"{title}, members {list(members)}", evaluation=[]
            )
        return subset.to(self.device).train(self.training)

    @classmethod
    def stack(cls, models: Sequence[DeepGaze]) -> DeepGaze:
        """One ensemble whose members are all members of ``models``, in order (per backbone, for
        models with several backbones).

        The models must share architecture and centre-bias template; the result uses the first
        model's backbone objects and has no ``card_info``.
        """
        if not models:
            raise ValueError("DeepGaze.stack needs at least one model")
        first = models[0]
        reference = first.config.with_member_counts(1)
        for other in models[1:]:
            if other.config.with_member_counts(1) != reference:
                raise ValueError("models differ in architecture; only members of one architecture can be stacked")
            if not torch.equal(other.centerbias.log_density, first.centerbias.log_density):
                raise ValueError("models have different centre-bias templates; install one template in all first")
        counts = [sum(m.config.all_pathways()[i].num_members for m in models) for i in range(len(first.backbones))]
        ensemble = cls(first.config.with_member_counts(*counts), backbone=first.backbones)
        with torch.no_grad():
            for i, pair in enumerate(ensemble._heads()):
                for j, target in enumerate(pair):
                    sources = [dict(m._heads()[i][j].named_parameters()) for m in models]
                    for name, parameter in target.named_parameters():
                        parameter.copy_(torch.cat([source[name].detach() for source in sources]))
            ensemble.centerbias.log_density.copy_(first.centerbias.log_density)
        return ensemble.to(first.device).train(first.training)

    def repeat_member(self, count: int) -> DeepGaze:
        """An ensemble of ``count`` copies of this single-member model (the start of k-fold fine-tuning)."""
        if self.num_members != 1:
            raise ValueError("repeat_member takes a single-member model")
        return type(self).stack([self] * count)

    # -- persistence (huggingface_hub mixin) -----------------------------------------------------
    #: What the model card says beyond the architecture (provenance, datasets, evaluation): a
    #: `deepgaze_hub.model.card.ModelCardInfo` or None. Saved inside model.safetensors and restored
    #: by `from_pretrained`; README.md is generated from it and the config on every save.
    card_info: ModelCardInfo | None = None

    def _save_pretrained(self, save_directory: Path) -> None:
        save_directory = Path(save_directory)
        (save_directory / "README.md").unlink(missing_ok=True)  # the mixin then writes a fresh card
        card = self.card_info.to_dict() if self.card_info is not None else None
        state = self.state_dict()
        for prefix, network in self.stored_backbones().items():
            state.update({prefix + key: value for key, value in network.state_dict().items()})
        write_model_files(save_directory, self.config, state, card)

    def generate_model_card(self, *args: Any, **card_fields: Any) -> ModelCard:
        """The README.md of this model; ``card_fields`` override fields of ``self.card_info``.

        ``save_pretrained(dir, model_card_kwargs={...})`` and ``push_to_hub`` pass their
        ``model_card_kwargs`` here, e.g. ``{"repo_id": "user/model"}``.
        """
        try:
            info = dataclasses.replace(self.card_info or ModelCardInfo(), **card_fields)
        except TypeError:
            known = sorted(ModelCardInfo.__dataclass_fields__)
            raise ValueError(f"unknown model card fields {sorted(card_fields)}; known: {known}") from None
        data = self._hub_mixin_info.model_card_data
        return build_model_card(self.config, info, library_name=data.library_name, tags=data.tags or [])

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Save this model and upload it to the Hugging Face Hub repo ``repo_id`` in one commit.

        The repo is created if needed (a token with write access is required: ``hf auth login``
        or ``HF_TOKEN``). Returns the commit info (``.oid`` is the commit hash to pin). The model
        card names ``repo_id`` in its loading instructions. Other keyword arguments are those of
        `huggingface_hub.ModelHubMixin.push_to_hub` (``private``, ``token``, ``branch``,
        ``commit_message`` ...).
        """
        card_fields = {"repo_id": repo_id, **(model_card_kwargs or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card_fields, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
        backbone: nn.Module | None = None,
        config: DeepGazeConfig | None = None,
        members: Sequence[int] | None = None,
        **config_overrides: Any,
    ) -> DeepGaze:
        """Load a model saved with `save_pretrained`: a local directory or a Hugging Face repo id.

        (huggingface_hub's convention: an existing directory, else a repo id. `deepgaze_hub.load`
        takes registry names too and says which kind a name is.) Only ``model.safetensors`` is
        ever read (never a pickle), and loading is strict: missing, unexpected, misshapen or
        non-finite tensors raise `WeightsError` listing them; a bad ``config.json`` raises
        `ConfigError` naming the field. Both files come from one commit of a repo.

        Args:
            revision: branch, tag or commit of a repo; pin a full commit hash for reproducibility.
            cache_dir, force_download, local_files_only, token: as in `huggingface_hub.snapshot_download`.
            map_location: device of the returned model (default ``"cpu"``).
            backbone: a module, for models whose backbone torchvision cannot build.
            config: use this config instead of the file's.
            members: keep only these ensemble members, e.g. ``[3]``.
            config_overrides: `DeepGazeConfig` fields changed from the file's, e.g.
                ``resize_mode="antialias"`` or ``backbone={"weights": "/path/vgg19.safetensors"}``
                (they must keep the tensors' shapes).
        """
        files = find_model_files(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        if config is None:
            config = read_config(files.config, where=files.where)
        if config_overrides:
            config = apply_overrides(config, config_overrides, where=files.where)
        return cls.from_files(
            config, files.weights, where=files.where, backbone=backbone, members=members, map_location=map_location
        )

    @classmethod
    def from_files(
        cls,
        config: DeepGazeConfig,
        weights_path: str | Path,
        *,
        where: str,
        backbone: nn.Module | None = None,
        members: Sequence[int] | None = None,
        map_location: str | torch.device = "cpu",
        card_info: ModelCardInfo | None = None,
    ) -> DeepGaze:
        """Build ``cls(config)``, load ``weights_path`` strictly, keep only ``members``; in eval mode.

        ``where`` names the files' origin in error messages. ``card_info`` is used when the weights
        file carries no model card information.
        """
        model = cls(config, backbone=backbone)
        metadata = load_weights(model, weights_path, where=where, extra=model.stored_backbones())
        stored = card_from_metadata(metadata)
        model.card_info = (ModelCardInfo.from_stored(stored) if stored is not None else None) or card_info
        if members is not None:
            model = model.select_members(members)
        return model.to(map_location).eval()


def _scaled_centerbias(bias: Any, scaling: Scaling) -> torch.Tensor:
    """A (H, W) centre-bias log density given at the image's own size, resampled to its working size."""
    bias = torch.as_tensor(bias, dtype=torch.float32)
    if tuple(bias.shape) != scaling.original:
        raise ValueError(f"centerbias must be (H, W) = {scaling.original}, the image's size, got {tuple(bias.shape)}")
    return resize_log_density(bias, scaling.working)
