"""Synthetic fixation data whose true density p(x, y | image) is known exactly.

Each scene is a textured background (1/f noise plus a faint grating on a random base colour) with
2-7 objects (ellipses, rectangles, diamonds) of random size, colour and contrast, painted over one
another. The true density is built from the scene's content, then multiplied by a centre bias:

    attention(x)  = blur( sum over objects o of  salience_o * visible_o(x) * exp(-r_o(x)^2 / (2 (0.6 R_o)^2)) / mass_o )
                    + background_weight * (1 + local texture contrast) / its mass
    p(x | image)  = (1 - uniform) * normalise(attention(x) * centre(x)) + uniform / (H W)

where ``salience_o`` grows with the object's contrast against the background (squared, so
high-contrast objects dominate) and with the square root of its visible area (small objects pull
less in total but more per pixel), ``visible_o`` is its unoccluded soft mask, ``r_o`` the distance
from its centre, ``R_o`` its radius; the object term is blurred by ``gaze_blur`` (gaze scatter),
and ``centre`` is a Gaussian with std ``centerbias_sigma`` of
the image width (x) and height (y). Every observer draws independent fixations from ``p``
(`deepgaze_hub.data.sampling.sample_fixations`), so the stored truth is the exact density of every
fixation: the best any model can do.

Observers make 6-12 fixations each by default, as ordered scanpaths with onsets and durations in
seconds (durations ~ Gamma(4, 0.065 s), 30 ms saccades). Everything is determined by ``seed`` and
the image index: image ``i`` is the same whatever ``num_images`` is.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DatasetError
from .dataset import FixationDataset
from .fixations import Fixations
from .sampling import sample_fixations
from .stimuli import encode_png

#: Bump when a change to this module changes the generated data (it is part of cache keys).
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the generator (all sizes in pixels, (H, W) order)."""

    num_images: int = 40
    size: tuple[int, int] = (192, 256)
    num_observers: int = 8
    fixations_per_observer: tuple[int, int] = (6, 12)  # inclusive range, drawn per observer and image
    centerbias_sigma: float = 0.22
    uniform_weight: float = 0.01
    background_weight: float = 0.15
    gaze_blur: float = 0.015  # std of the blur of object attention, as a fraction of min(H, W)
    seed: int = 0

    def validate(self) -> None:
        height, width = self.size
        low, high = self.fixations_per_observer
        if self.num_images < 1 or self.num_observers < 1:
            raise DatasetError("synthetic data needs at least one image and one observer")
        if height < 16 or width < 16:
            raise DatasetError(f"synthetic images must be at least 16 x 16 px, got size {self.size}")
        if not 1 <= low <= high:
            raise DatasetError(f"fixations_per_observer must be (low, high) with 1 <= low <= high, got {self.fixations_per_observer}")
        if not 0 < self.uniform_weight < 1 or self.centerbias_sigma <= 0 or self.background_weight < 0 or self.gaze_blur < 0:
            raise DatasetError("uniform_weight must be in (0, 1), centerbias_sigma > 0, background_weight and gaze_blur >= 0")


@dataclass
class SyntheticScene:
    """One generated image and its exact fixation density."""

    image: np.ndarray  # uint8 (H, W, 3)
    log_density: np.ndarray  # float64 (H, W), natural log, sums to 1


def make_scene(config: SyntheticConfig, index: int) -> SyntheticScene:
    """Scene ``index`` of the dataset defined by ``config`` (deterministic)."""
    rng = np.random.default_rng([config.seed, index, 0])
    height, width = config.size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5

    background, texture_contrast = _background(rng, height, width, xx, yy)
    image = background.copy()
    painted = []  # (soft mask, salience, centre distance weight)
    for _ in range(int(rng.integers(2, 8))):
        mask, weight, colour, contrast = _object(rng, height, width, xx, yy)
        local = (background * mask[..., None]).sum((0, 1)) / max(mask.sum(), 1e-9)
        salience = (contrast * np.linalg.norm(colour - local) / np.sqrt(3.0)) ** 2
        image = image * (1 - contrast * mask[..., None]) + contrast * mask[..., None] * colour
        painted = [(m * (1 - mask), s, w) for m, s, w in painted]  # the new object occludes older ones
        painted.append((mask, salience, weight))

    attention = np.zeros((height, width))
    for mask, salience, weight in painted:
        blob = mask * weight
        if blob.sum() > 1e-9:  # total pull grows with the square root of the visible area
            attention += salience * np.sqrt(mask.sum() / (height * width)) * blob / blob.sum()
    attention = _blur(attention, config.gaze_blur * min(height, width))
    ground = 1.0 + texture_contrast
    total = attention.sum()
    attention += config.background_weight * max(total, 1e-3) * ground / ground.sum()

    sigma = config.centerbias_sigma
    centre = np.exp(-(((xx / width - 0.5) ** 2) + ((yy / height - 0.5) ** 2)) / (2 * sigma**2))
    density = attention * centre
    density = (1 - config.uniform_weight) * density / density.sum() + config.uniform_weight / (height * width)
    log_density = np.log(density)
    log_density -= np.log(np.exp(log_density).sum())
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return SyntheticScene(image=pixels, log_density=log_density)


def make_synthetic_dataset(
    path: str | os.PathLike,
    num_images: int = 40,
    *,
    size: tuple[int, int] = (192, 256),
    num_observers: int = 8,
    fixations_per_observer: tuple[int, int] = (6, 12),
    seed: int = 0,
    name: str | None = None,
    progress: bool = False,
    **options,
) -> FixationDataset:
    """Generate a synthetic dataset with stored true log densities and write it atomically.

    ``size`` is (H, W) in pixels; ``options`` are further `SyntheticConfig` fields
    (``centerbias_sigma``, ``uniform_weight``, ``background_weight``).
    """
    config = SyntheticConfig(
        num_images=num_images, size=tuple(size), num_observers=num_observers,
        fixations_per_observer=tuple(fixations_per_observer), seed=seed, **options,
    )
    config.validate()
    images, truths, parts = [], [], []
    scanpath_count = 0
    for index in range(config.num_images):
        scene = make_scene(config, index)
        images.append(encode_png(scene.image, f"synthetic image {index}"))
        truths.append(scene.log_density.astype(np.float32))
        fixations = _observe(config, index, scene.log_density, scanpath_count)
        scanpath_count += config.num_observers
        parts.append(fixations)
    height, width = config.size
    settings = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    return FixationDataset.create(
        path,
        images=images,
        fixations=Fixations.concatenate(parts),
        image_names=[f"synthetic_{index:05d}.png" for index in range(config.num_images)],
        true_log_densities=truths,
        metadata={
            "name": name or f"synthetic-{config.num_images}x{height}x{width}-seed{config.seed}",
            "description": "Synthetic scenes with known true fixation densities (deepgaze_hub.data.synthetic).",
            "source": f"deepgaze_hub.data.synthetic v{GENERATOR_VERSION}",
            "time_unit": "s",
            "synthetic": settings,
        },
        progress=progress,
    )


def _observe(config: SyntheticConfig, index: int, log_density: np.ndarray, first_scanpath: int) -> Fixations:
    rng = np.random.default_rng([config.seed, index, 1])
    low, high = config.fixations_per_observer
    parts = []
    for observer in range(config.num_observers):
        count = int(rng.integers(low, high + 1))
        xs, ys = sample_fixations(log_density, count, seed=int(rng.integers(2**62)))
        durations = rng.gamma(4.0, 0.065, size=count)
        onsets = np.concatenate([[0.0], np.cumsum(durations[:-1] + 0.03)])
        parts.append(
            Fixations.build(
                image=np.full(count, index), x=xs, y=ys, observer=np.full(count, observer),
                t=onsets, duration=durations, scanpath=np.full(count, first_scanpath + observer),
                order=np.arange(count),
            )
        )
    return Fixations.concatenate(parts)


def _blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (std ``sigma`` px) that keeps the mass inside the image."""
    if sigma <= 0:
        return values
    out = values
    for axis, length in ((0, values.shape[0]), (1, values.shape[1])):
        position = np.arange(length, dtype=np.float64)
        kernel = np.exp(-((position[:, None] - position[None, :]) ** 2) / (2 * sigma**2))
        kernel /= kernel.sum(axis=0, keepdims=True)  # each source pixel spreads mass 1
        out = kernel @ out if axis == 0 else out @ kernel.T
    return out


def _background(rng: np.random.Generator, height: int, width: int, xx: np.ndarray, yy: np.ndarray):
    """Base colour + 1/f noise + grating, (H, W, 3) in [0, 1], and its local contrast (H, W) in [0, 1]."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius ** rng.uniform(1.2, 2.2)
    spectrum[0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    noise /= noise.std() + 1e-12
    angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(3, 20), rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * frequency * (xx / width * np.cos(angle) + yy / height * np.sin(angle)) + phase)
    base = rng.uniform(0.25, 0.75, size=3)
    tint = rng.uniform(0.6, 1.0, size=3)
    luminance = rng.uniform(0.03, 0.12) * noise + rng.uniform(0.0, 0.06) * grating
    background = np.clip(base + luminance[..., None] * tint, 0.0, 1.0)
    gy, gx = np.gradient(luminance)
    contrast = np.sqrt(gx**2 + gy**2)
    return background, contrast / (contrast.max() + 1e-12)


def _object(rng: np.random.Generator, height: int, width: int, xx: np.ndarray, yy: np.ndarray):
    """A soft mask (H, W) in [0, 1], its centre weighting, colour (3,) and contrast (alpha)."""
    scale = min(height, width)
    radius = scale * np.exp(rng.uniform(np.log(0.03), np.log(0.18)))
    aspect = rng.uniform(0.5, 1.0)
    rx, ry = (radius, radius * aspect) if rng.random() < 0.5 else (radius * aspect, radius)
    cx, cy = rng.uniform(0.08, 0.92) * width, rng.uniform(0.08, 0.92) * height
    theta = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    shape = rng.integers(3)
    if shape == 0:  # ellipse
        distance = (np.sqrt((u / rx) ** 2 + (v / ry) ** 2) - 1.0) * min(rx, ry)
    elif shape == 1:  # rectangle
        distance = np.maximum(np.abs(u) - rx, np.abs(v) - ry)
    else:  # diamond
        distance = (np.abs(u) / rx + np.abs(v) / ry - 1.0) * min(rx, ry) / np.sqrt(2)
    mask = np.clip(0.5 - distance, 0.0, 1.0)  # one pixel of anti-aliasing
    weight = np.exp(-(u**2 + v**2) / (2 * (0.6 * max(rx, ry)) ** 2))
    colour = rng.uniform(0.0, 1.0, size=3)
    contrast = rng.uniform(0.15, 1.0)
    return mask, weight, colour, contrast
