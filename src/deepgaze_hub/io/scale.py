"""The image scale a model works at: viewing geometry, working size, resizing images and densities.

DeepGaze models were trained on images shown at about 35 pixels per degree of visual angle
(MIT1003: 1024 pixels on the long side). A photo from a phone (4000x3000) is far larger than that:
predicting it at full size is slow and asks the model about a scale it never saw. So prediction
works at the model's *working size* and gives the density back at the input's own size:

* `working_size` picks the (rows, cols) the model sees: images larger than the training long side
  are shrunk to it (smaller ones are kept as they are, so MIT-sized inputs are untouched); with a
  viewing geometry (``pixels_per_degree``) the image is rescaled, up or down, so that one degree
  of visual angle spans the training pixels per degree;
* `resize_image` resizes (..., 3, H, W) pixels (antialiased bilinear when shrinking);
* `resize_log_density` brings an (..., h, w) log density (nats) to another size: bilinear
  resampling of the log density, then renormalised with logsumexp so ``exp`` sums to 1 again.

Sizes are (rows, cols) = (H, W) throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ImageError


def pixels_per_degree(screen_width_px: float, screen_width_cm: float, distance_cm: float) -> float:
    """Pixels per degree of visual angle at the centre of a screen.

    ``ppd = (screen_width_px / screen_width_cm) * 2 * distance_cm * tan(0.5 deg)``: the number of
    pixels spanned by the central degree (from -0.5 to +0.5 degrees) seen from ``distance_cm``.
    (The variant ``distance * tan(1 deg)`` differs by less than 0.003 %.) E.g. a screen 1920 px and
    53 cm wide seen from 60 cm: 38.0 pixels per degree.
    """
    for name, value in (("screen_width_px", screen_width_px), ("screen_width_cm", screen_width_cm),
                        ("distance_cm", distance_cm)):  # fmt: skip
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return screen_width_px / screen_width_cm * 2.0 * distance_cm * math.tan(math.radians(0.5))


@dataclass(frozen=True)
class Scaling:
    """How an image was scaled for the model: its own size, the size the model saw, and why.

    ``original`` and ``working`` are (rows, cols); ``factor`` = working / original (one factor for
    both sides, up to rounding); ``reason``: "as is", "shrunk to the model's working size",
    "rescaled to the model's training scale" or "full size (asked)".
    """

    original: tuple[int, int]
    working: tuple[int, int]
    factor: float
    reason: str

    @property
    def resized(self) -> bool:
        return self.original != self.working

    def describe(self) -> str:
        """One line for people: ``4000x3000 -> 1024x768 (shrunk to the model's working size)``."""
        (h, w), (wh, ww) = self.original, self.working
        if not self.resized:
            return f"{w}x{h}, predicted at its own size ({self.reason})"
        return f"{w}x{h} predicted at {ww}x{wh}, factor {self.factor:.3g} ({self.reason}); density returned at {w}x{h}"

    def to_dict(self) -> dict:
        """JSON data: original and working sizes as [width, height], the factor and the reason."""
        return {
            "original_size": [self.original[1], self.original[0]],
            "working_size": [self.working[1], self.working[0]],
            "factor": self.factor,
            "reason": self.reason,
        }


def working_size(
    size: tuple[int, int],
    *,
    long_side: int | None,
    training_ppd: float | None = None,
    pixels_per_degree: float | None = None,
    full_size: bool = False,
) -> Scaling:
    """The size at which a model trained at (``long_side``, ``training_ppd``) should see an image.

    ``size`` (rows, cols). ``full_size``: predict as is. ``pixels_per_degree`` (of the image as the
    observer sees it): rescale by ``training_ppd / pixels_per_degree`` so the model sees its
    training scale (refused when the model does not record ``training_ppd``). Otherwise images
    with a long side above ``long_side`` are shrunk to it; smaller ones, and any image when
    ``long_side`` is None (a model that does not know its scale), are kept as they are.
    """
    rows, cols = int(size[0]), int(size[1])
    if full_size:
        return Scaling((rows, cols), (rows, cols), 1.0, "full size (asked)")
    if pixels_per_degree is not None:
        if not (math.isfinite(pixels_per_degree) and pixels_per_degree > 0):
            raise ValueError(f"pixels_per_degree must be a positive number, got {pixels_per_degree!r}")
        if training_ppd is None:
            raise ImageError(
                "this model does not record the pixels per degree it was trained at, so it cannot be "
                "rescaled to a viewing geometry; predict without pixels_per_degree"
            )
        factor = training_ppd / pixels_per_degree
        reason = f"rescaled from {pixels_per_degree:.3g} to the model's training scale of {training_ppd:g} pixels per degree"
    elif long_side is not None and max(rows, cols) > long_side:
        factor = long_side / max(rows, cols)
        reason = f"shrunk to the model's working size, {long_side} pixels on the long side"
    else:
        return Scaling((rows, cols), (rows, cols), 1.0, "as is")
    working = (max(1, round(rows * factor)), max(1, round(cols * factor)))
    if working == (rows, cols):
        return Scaling((rows, cols), (rows, cols), 1.0, "as is")
    return Scaling((rows, cols), working, factor, reason)


def resize_image(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixels (..., 3, H, W) resized to ``size`` (rows, cols), same dtype and value range.

    Bilinear, antialiased when shrinking (input preprocessing, not the model's own resizing).
    The same size returns ``pixels`` itself.
    """
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    lead = pixels.shape[:-3]
    flat = pixels.reshape(-1, *pixels.shape[-3:]).float()
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0.0, 255.0).to(pixels.dtype).reshape(*lead, *out.shape[-3:])


def resize_log_density(log_density: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A log density (..., h, w), in nats, resampled to ``size`` (rows, cols) and renormalised.

    Bilinear on the log density (not on the density: a smooth, positive result), then minus its
    logsumexp over the last two axes, so ``exp(out).sum((-2, -1)) == 1``. The same size returns
    ``log_density`` itself.
    """
    if tuple(log_density.shape[-2:]) == tuple(size):
        return log_density
    lead = log_density.shape[:-2]
    flat = log_density.reshape(-1, 1, *log_density.shape[-2:]).float()
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    out = out - out.logsumexp(dim=(-2, -1), keepdim=True)
    return out.reshape(*lead, *out.shape[-2:])
