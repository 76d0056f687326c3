"""Heatmap overlays: the density over the image with contours splitting its mass into quarters.

As in the paper's figures, the contour at level q encloses the most probable pixels that together
hold a fraction q of the probability mass (q = 0.25, 0.5, 0.75 by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .colormap import apply_colormap

MASS_LEVELS = (0.25, 0.5, 0.75)


def _density(log_density: torch.Tensor | np.ndarray) -> np.ndarray:
    values = np.asarray(torch.as_tensor(log_density).detach().cpu(), dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"log_density must be (H, W), got {values.shape}")
    density = np.exp(values - values.max())
    return density / density.sum()


def mass_thresholds(log_density: torch.Tensor | np.ndarray, levels: Sequence[float] = MASS_LEVELS) -> np.ndarray:
    """Density thresholds t_q such that the pixels with density >= t_q hold mass q, for each level."""
    return _thresholds(_density(log_density), levels)


def _thresholds(density: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    ordered = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(ordered)
    positions = np.searchsorted(cumulative, np.asarray(levels) * cumulative[-1])
    return ordered[np.minimum(positions, ordered.size - 1)]


def mass_contours(log_density: torch.Tensor | np.ndarray, levels: Sequence[float] = MASS_LEVELS, width: int = 1) -> np.ndarray:
    """Boolean (H, W) mask of the contour lines at the given mass levels, ``width`` pixels wide."""
    return _contours(_density(log_density), levels, width)


def _contours(density: np.ndarray, levels: Sequence[float], width: int) -> np.ndarray:
    lines = np.zeros(density.shape, dtype=bool)
    for threshold in _thresholds(density, levels):
        inside = density >= threshold
        padded = np.pad(inside, 1, mode="edge")
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        lines |= inside & ~interior
    for _ in range(width - 1):
        grown = np.pad(lines, 1)
        lines = lines | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    return lines


def density_overlay(
    image: np.ndarray | Image.Image | torch.Tensor,
    log_density: torch.Tensor | np.ndarray,
    *,
    show_density: bool = True,
    show_contours: bool = True,
    levels: Sequence[float] = MASS_LEVELS,
    fixations: tuple[np.ndarray, np.ndarray] | None = None,
) -> Image.Image:
    """An RGB picture: the image dimmed, the density as colour over it, contours, fixations.

    ``image``: (H, W, 3) uint8 array, PIL image or a (3, H, W) 0-255 tensor of the same size as
    ``log_density`` (H, W). ``fixations``: optional (xs, ys) pixel coordinates drawn as dots.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]  # grayscale: broadcast to the three channels below
    density = _density(log_density)
    if image.shape[:2] != density.shape:
        raise ValueError(f"image is {image.shape[:2]} but the density is {density.shape}")
    # float32 (a 40 Mpx overlay stays within ~2 GB), in place where it can: few full-size temporaries
    out = np.empty((*density.shape, 3), dtype=np.float32)
    np.multiply(image, np.float32(0.55), out=out, dtype=np.float32)  # the image dimmed
    out += np.float32(30.0)
    if show_density:  # out * (1 - alpha) + colour * alpha
        relative = density / density.max()
        relative = np.sqrt(relative, out=relative).astype(np.float32)
        alpha = (0.25 + 0.6 * relative)[..., None]
        out *= 1 - alpha
        out += np.multiply(apply_colormap(relative), alpha, dtype=np.float32)
    if show_contours:
        thickness = max(1, round(min(density.shape) / 250))
        out[_contours(density, levels, thickness)] = (255.0, 255.0, 255.0)  # the density computed once
    if fixations is not None:
        radius = max(1, round(min(density.shape) / 150))
        for x, y in zip(*fixations):
            r0, c0 = int(y), int(x)
            out[max(0, r0 - radius) : r0 + radius + 1, max(0, c0 - radius) : c0 + radius + 1] = (60.0, 220.0, 255.0)
    return Image.fromarray(np.rint(np.clip(out, 0, 255, out=out), out=out).astype(np.uint8))
