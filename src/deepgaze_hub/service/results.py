"""One prediction's outputs (log density, overlay, sampled fixations) and the store of recent ones.

The store keeps the most recent predictions within a byte budget, so that a client (the web
page) can redraw the overlay with other toggles or download the log density later without
sending the image again and without rerunning the model.
"""

from __future__ import annotations

import collections
import io
import secrets
from dataclasses import dataclass

import numpy as np
import torch

from ..data.sampling import sample_fixations
from ..io.scale import Scaling, resize_log_density
from ..visualization import density_overlay, save_png


@dataclass(frozen=True)
class Prediction:
    """An uploaded image and the model's answer, both at the size the model worked at.

    ``image``: (h, w, 3) uint8 as the model saw it (EXIF orientation applied, 16-bit scaled to
    8 bits, resized to the working size); ``log_density``: (h, w) float32, natural log,
    ``exp(log_density).sum() == 1``; ``scaling``: the upload's own size (H, W) and the working
    size (h, w). Downloads (`log_density_npy`) and sampled fixations are at the upload's size;
    overlays at the working size. Memory per result is bounded by the working size.
    """

    id: str
    image: np.ndarray
    log_density: np.ndarray
    image_format: str
    scaling: Scaling

    @classmethod
    def create(cls, pixels: torch.Tensor, log_density: torch.Tensor, image_format: str, scaling: Scaling) -> Prediction:
        """From (3, h, w) 0-255 pixels and an (h, w) log density at the working size; a fresh random id."""
        image = pixels.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
        return cls(secrets.token_urlsafe(12), image, log_density.float().numpy(), image_format, scaling)

    @property
    def nbytes(self) -> int:
        return self.image.nbytes + self.log_density.nbytes

    def fixations(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` fixations (xs, ys) in pixels of the working size (x = column, y = row), the
        same for the same seed (what overlays draw)."""
        return sample_fixations(self.log_density, count, seed=seed)

    def to_original(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Working-size pixel coordinates (x = column, y = row) in the upload's own pixels."""
        (rows, cols), (work_rows, work_cols) = self.scaling.original, self.scaling.working
        return xs * (cols / work_cols), ys * (rows / work_rows)

    def log_density_npy(self) -> bytes:
        """The log density at the upload's own size (H, W), as the bytes of a float32 ``.npy`` file."""
        buffer = io.BytesIO()
        np.save(buffer, at_original_size(torch.from_numpy(self.log_density), self.scaling))
        return buffer.getvalue()

    def overlay_png(
        self,
        *,
        show_density: bool = True,
        show_contours: bool = True,
        fixations: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> bytes:
        """The heatmap overlay with probability-mass contours (and fixation dots), as PNG bytes."""
        picture = density_overlay(
            self.image, self.log_density, show_density=show_density, show_contours=show_contours, fixations=fixations
        )
        buffer = io.BytesIO()
        save_png(picture, buffer)
        return buffer.getvalue()


def at_original_size(log_density: torch.Tensor, scaling: Scaling) -> np.ndarray:
    """An (h, w) log density (nats) at the working size, resampled to the upload's own size
    (H, W) = ``scaling.original`` as a float32 array (bilinear in log space, renormalised; the
    same array when no resizing is needed), as `DeepGaze.predict` returns it."""
    full = resize_log_density(log_density.float(), scaling.original)
    return full.numpy().astype(np.float32, copy=False)


class ResultStore:
    """The most recent predictions whose sizes add up to at most ``max_bytes`` (oldest evicted).

    Not thread-safe: use it from the event loop only.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, prediction: Prediction) -> bool:
        """Keep ``prediction``, evicting the oldest ones; False if it alone exceeds the budget."""
        if prediction.nbytes > self.max_bytes:
            return False
        self._items[prediction.id] = prediction
        self._bytes += prediction.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return True

    def get(self, prediction_id: str) -> Prediction | None:
        prediction = self._items.get(prediction_id)
        if prediction is not None:
            self._items.move_to_end(prediction_id)
        return prediction
