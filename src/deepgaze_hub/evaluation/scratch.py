"""Work tensors reused from one chunk of images to the next.

A pass over freshly allocated memory costs several times a pass over memory already in use
(the first touch of every page faults), so the full-size temporaries of the metric kernels are
kept here for the length of one metric call and written with ``out=`` or in place.
"""

from __future__ import annotations

import math

import torch


class Scratch:
    """Named work buffers; `get` returns a view of at least the asked size, contents undefined."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            buffer = torch.empty(size, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer[:size].view(shape)
