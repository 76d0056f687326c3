"""`CenterBiasTemplate`: the model's centre bias, a log-density template over normalised image coordinates.

The template is a (rows, cols) grid covering the image from edge to edge whatever its size or
aspect ratio (x / width, y / height), like a centre bias fitted on normalised fixation coordinates.
For an image of size (H, W) it is resized and renormalised, so one stored template serves every
image size: no hand rescaling of a 1024 x 1024 file. Two ways of resizing (``resize``):

* ``"bilinear"`` (default): antialiased bilinear (`torch.nn.functional.interpolate`);
* ``"zoom_nearest"``: what the DeepGaze family's authors do, ``scipy.ndimage.zoom(template,
  (H / rows, W / cols), order=0)``: output row ``o`` reads template row
  ``floor(o * (rows - 1) / (H - 1) + 0.5)`` (row 0 when H == 1), and likewise for columns.

Before any data has been seen, the template is `default_centerbias_template`: a generic prior, not a
fitted one. Fit your own from fixations (`deepgaze_hub.baselines.fit_centerbias`) and install it
with `DeepGaze.set_centerbias`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Std of the default centre bias, as a fraction of the image width (x) and height (y).
DEFAULT_CENTERBIAS_SIGMA = 0.25
#: Weight of the uniform density mixed into the default centre bias.
DEFAULT_CENTERBIAS_UNIFORM = 0.05


def default_centerbias_template(shape: Sequence[int]) -> torch.Tensor:
    """The generic prior used before a centre bias is fitted, as a (rows, cols) log density.

    An isotropic Gaussian in normalised coordinates centred on the image (std 0.25 of the width and
    of the height) mixed with a uniform density of weight 0.05, evaluated at the cell centres.
    """
    rows, cols = shape
    y = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows - 0.5
    x = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols - 0.5
    gauss = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * DEFAULT_CENTERBIAS_SIGMA**2))
    density = (1 - DEFAULT_CENTERBIAS_UNIFORM) * gauss / gauss.sum() + DEFAULT_CENTERBIAS_UNIFORM / (rows * cols)
    return density.log().float()


def normalize_log_density(log_density: torch.Tensor) -> torch.Tensor:
    """Shift (..., H, W) log densities so that ``exp`` sums to 1 over the last two axes."""
    return log_density - log_density.logsumexp(dim=(-2, -1), keepdim=True)


class CenterBiasTemplate(nn.Module):
    """Holds the template (buffer ``log_density``, (rows, cols)) and evaluates it at any size.

    ``resize``: ``"bilinear"`` or ``"zoom_nearest"`` (see the module docstring).
    """

    def __init__(self, shape: Sequence[int], resize: str = "bilinear") -> None:
        super().__init__()
        if resize not in _RESIZERS:
            raise ValueError(f"centre-bias resize must be one of {sorted(_RESIZERS)}, got {resize!r}")
        self.resize = resize
        self.register_buffer("log_density", default_centerbias_template(shape))
        # the last size evaluated: (size, the template it came from, the result)
        self._last: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None

    def set_template(self, log_density: torch.Tensor) -> None:
        """Install a (rows, cols) log-density template; it is resized to this module's shape."""
        template = torch.as_tensor(log_density, dtype=torch.float32)
        if template.ndim != 2 or min(template.shape) < 2:
            raise ValueError(f"a centre-bias template must be a 2-d (rows, cols) array, got {tuple(template.shape)}")
        if not torch.isfinite(template).all():
            raise ValueError("the centre-bias template has NaN or infinite values; mix in a uniform term")
        if template.shape != self.log_density.shape:
            template = _RESIZERS[self.resize](template, tuple(self.log_density.shape))
        self.log_density.copy_(normalize_log_density(template).to(self.log_density.device))

    def forward(self, size: Sequence[int]) -> torch.Tensor:
        """The centre-bias log density for an image of ``size`` = (H, W), shape (H, W), sums to 1.

        The result for the last size is kept while the template is unchanged (compared by value):
        images of one size in a row resize it once. Each call returns a new tensor.
        """
        size = (int(size[0]), int(size[1]))
        last = self._last
        if last is not None and last[0] == size and last[1].device == self.log_density.device and torch.equal(last[1], self.log_density):
            return last[2].clone()
        result = normalize_log_density(_RESIZERS[self.resize](self.log_density, size))
        self._last = (size, self.log_density.clone(), result)
        return result.clone()


def _resize_bilinear(template: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = F.interpolate(template[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0]


def zoom_indices(n_in: int, n_out: int, device: torch.device | None = None) -> torch.Tensor:
    """(n_out,) source index of each output position of ``scipy.ndimage.zoom(..., order=0)``
    (``grid_mode=False``) along an axis of n_in cells: ``floor(o * (n_in - 1) / (n_out - 1) + 0.5)``."""
    if n_out == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    step = (n_in - 1) / (n_out - 1)  # float64, as scipy computes it
    index = torch.floor(torch.arange(n_out, dtype=torch.float64, device=device) * step + 0.5)
    return index.long().clamp_max(n_in - 1)


def _resize_zoom_nearest(template: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    rows = zoom_indices(template.shape[0], size[0], template.device)
    cols = zoom_indices(template.shape[1], size[1], template.device)
    return template[rows][:, cols]


_RESIZERS = {"bilinear": _resize_bilinear, "zoom_nearest": _resize_zoom_nearest}
