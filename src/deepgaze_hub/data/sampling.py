"""Drawing fixations from a model's density, e.g. to compare them with observed ones."""

from __future__ import annotations

import numpy as np
import torch


def sample_fixations(
    log_density: torch.Tensor | np.ndarray, count: int, *, seed: int | None = None, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` independent fixations from an (H, W) log density.

    A pixel is drawn with its probability, then a position uniformly inside it, so the returned
    float coordinates ``(x, y)`` (x = column, y = row, pixels) truncate to the drawn pixel.
    Pass ``seed`` or a ``generator`` for reproducible draws.
    """
    log_density = torch.as_tensor(log_density, dtype=torch.float64).cpu()
    if log_density.ndim != 2:
        raise ValueError(f"log_density must be (H, W), got {tuple(log_density.shape)}")
    if count < 0:
        raise ValueError("count must be >= 0")
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
    height, width = log_density.shape
    probabilities = torch.softmax(log_density.reshape(-1), dim=0)
    if count == 0:
        return np.zeros(0), np.zeros(0)
    pixels = torch.multinomial(probabilities, count, replacement=True, generator=generator)
    jitter = torch.rand(2, count, generator=generator, dtype=torch.float64)
    xs = (pixels % width).double() + jitter[0]
    ys = torch.div(pixels, width, rounding_mode="floor").double() + jitter[1]
    return xs.numpy(), ys.numpy()
