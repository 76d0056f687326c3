"""Figures as PNG-ready PIL images, drawn with Pillow alone (no plotting library needed).

* `fixation_figure`: one image as in the paper's Figure 5: the image with observed fixations,
  the model's density with contours splitting its mass into quarters, fixations sampled from the
  model, and the true density when it is known.
* `scatter_figure`: a labelled scatter plot with a y = x diagonal, e.g. per-image information
  gain of a model against the gold standard (the paper's Figure 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .overlay import density_overlay

OBSERVED = (60, 220, 255)
SAMPLED = (255, 150, 40)
_BACKGROUND = "white"
_INK = (30, 30, 30)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _as_rgb(image: np.ndarray | torch.Tensor | Image.Image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.uint8)


def _dots(picture: Image.Image, xs: Sequence[float], ys: Sequence[float], colour, radius: int) -> Image.Image:
    picture = picture.copy()
    draw = ImageDraw.Draw(picture)
    for x, y in zip(xs, ys):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline=(0, 0, 0))
    return picture


def fixation_figure(
    image: np.ndarray | torch.Tensor | Image.Image,
    log_density: torch.Tensor | np.ndarray,
    observed: tuple[Sequence[float], Sequence[float]],
    sampled: tuple[Sequence[float], Sequence[float]] | None = None,
    truth_log_density: torch.Tensor | np.ndarray | None = None,
    title: str = "",
) -> Image.Image:
    """A row of captioned panels for one image (coordinates in pixels, x = column, y = row).

    Panels: "observed fixations" on the image; "model density" with probability-mass contours
    (25 / 50 / 75 %); "fixations sampled from the model" (``sampled``, as many as observed is the
    fair comparison); "true density" when ``truth_log_density`` is given.
    """
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    radius = max(2, round(min(height, width) / 90))
    dimmed = Image.fromarray((rgb * 0.6 + 40).clip(0, 255).astype(np.uint8))
    panels = [("observed fixations", _dots(dimmed, *observed, OBSERVED, radius))]
    panels.append(("model density, 25/50/75% mass", density_overlay(rgb, log_density)))
    if sampled is not None:
        panels.append(("fixations sampled from the model", _dots(dimmed, *sampled, SAMPLED, radius)))
    if truth_log_density is not None:
        panels.append(("true density, 25/50/75% mass", density_overlay(rgb, truth_log_density)))

    caption = max(14, round(width / 18))
    gap, header = 12, (caption + 14 if title else 0)
    figure = Image.new("RGB", (len(panels) * width + (len(panels) + 1) * gap, header + caption + 8 + height + gap), _BACKGROUND)
    draw = ImageDraw.Draw(figure)
    if title:
        draw.text((gap, 6), title, fill=_INK, font=_font(caption + 2))
    for i, (label, picture) in enumerate(panels):
        left = gap + i * (width + gap)
        draw.text((left, header + 2), label, fill=_INK, font=_fit_font(draw, label, width, caption))
        figure.paste(picture, (left, header + caption + 8))
    return figure


def _fit_font(draw: ImageDraw.ImageDraw, text: str, width: int, size: int) -> ImageFont.ImageFont:
    while size > 8 and draw.textlength(text, font=_font(size)) > width:
        size -= 1
    return _font(size)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [first + i * step for i in range(int(math.ceil((high - first) / step)) + 1)]
    return [round(t, 10) for t in ticks]


@dataclass(frozen=True)
class _Axes:
    """A plot box in pixels (left, top, right, bottom) showing data ranges x_range and y_range."""

    box: tuple[int, int, int, int]
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def to_pixel(self, px: float, py: float) -> tuple[float, float]:
        fx = (px - self.x_range[0]) / (self.x_range[1] - self.x_range[0])
        fy = (py - self.y_range[0]) / (self.y_range[1] - self.y_range[0])
        return self.box[0] + fx * (self.box[2] - self.box[0]), self.box[3] - fy * (self.box[3] - self.box[1])


def scatter_figure(
    x: Sequence[float],
    y: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    diagonal: bool = True,
    size: int = 640,
) -> Image.Image:
    """A square scatter plot with axes, ticks, labels and (optionally) the y = x line."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    values = np.concatenate([x, y]) if diagonal else None
    x_low, x_high = (values.min(), values.max()) if diagonal and values.size else (x.min(initial=0), x.max(initial=1))
    y_low, y_high = (x_low, x_high) if diagonal else (y.min(initial=0), y.max(initial=1))
    x_ticks, y_ticks = nice_ticks(x_low, x_high), nice_ticks(y_low, y_high)

    font, small = _font(max(12, size // 36)), _font(max(10, size // 46))
    left, right, top, bottom = size // 6, size // 24, size // 10, size // 7
    figure = Image.new("RGB", (size, size), _BACKGROUND)
    draw = ImageDraw.Draw(figure)
    axes = _Axes((left, top, size - right, size - bottom), (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]))
    _draw_ticks(draw, axes, x_ticks, y_ticks, small)
    if diagonal:
        _draw_diagonal(draw, axes)
    radius = max(3, size // 160)
    for px, py in zip(x, y):
        cx, cy = axes.to_pixel(px, py)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(40, 110, 200), outline=(10, 40, 90))
    box = axes.box
    draw.text(((box[0] + box[2] - draw.textlength(xlabel, font=font)) / 2, size - bottom // 2 - 4), xlabel, fill=_INK, font=font)
    rotated = Image.new("RGB", (int(draw.textlength(ylabel, font=font)) + 4, font.size + 8), _BACKGROUND)
    ImageDraw.Draw(rotated).text((2, 2), ylabel, fill=_INK, font=font)
    rotated = rotated.rotate(90, expand=True)
    figure.paste(rotated, (8, (box[1] + box[3] - rotated.height) // 2))
    if title:
        draw.text(((size - draw.textlength(title, font=font)) / 2, top // 3), title, fill=_INK, font=font)
    return figure


def _draw_ticks(draw: ImageDraw.ImageDraw, axes: _Axes, x_ticks: Sequence[float], y_ticks: Sequence[float], font) -> None:
    box = axes.box
    draw.rectangle(box, outline=_INK, width=2)
    for tick in x_ticks:
        px, _ = axes.to_pixel(tick, axes.y_range[0])
        draw.line((px, box[3], px, box[3] + 6), fill=_INK, width=2)
        label = f"{tick:g}"
        draw.text((px - draw.textlength(label, font=font) / 2, box[3] + 9), label, fill=_INK, font=font)
    for tick in y_ticks:
        _, py = axes.to_pixel(axes.x_range[0], tick)
        draw.line((box[0] - 6, py, box[0], py), fill=_INK, width=2)
        label = f"{tick:g}"
        draw.text((box[0] - 10 - draw.textlength(label, font=font), py - font.size / 2), label, fill=_INK, font=font)


def _draw_diagonal(draw: ImageDraw.ImageDraw, axes: _Axes, steps: int = 40) -> None:
    """The dashed y = x line across the part of the box where both ranges overlap."""
    low, high = max(axes.x_range[0], axes.y_range[0]), min(axes.x_range[1], axes.y_range[1])
    (ax, ay), (bx, by) = axes.to_pixel(low, low), axes.to_pixel(high, high)
    for i in range(0, steps, 2):
        t0, t1 = i / steps, (i + 1) / steps
        draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1), fill=(150, 150, 150), width=2)
