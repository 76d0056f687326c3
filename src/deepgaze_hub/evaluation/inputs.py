"""How metric inputs are given and checked: per-image maps and fixation arrays.

**Maps** are a (B, H, W) tensor or array, or a sequence of B (H, W) tensors or arrays of
different sizes. They stay on their device and keep their floating-point dtype (integer maps become
float64); work is done in chunks of equally sized images, so that derived maps never exist for the
whole dataset at once.

**Fixations** are three 1-d arrays of equal length F: ``x`` (column) and ``y`` (row) in float
pixels and ``n``, the index of the image each fixation belongs to. The pixel a fixation reads is
``map[int(y), int(x)]`` (truncation, as in pysaliency), so a fixation must satisfy
``0 <= x < W`` and ``0 <= y < H`` of its image: ``x == W`` is outside the image and is refused,
``x = W - 0.001`` reads the last column. Every fixation counts, duplicates included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import EvaluationError

MapsLike = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]
ArrayLike = torch.Tensor | np.ndarray | Sequence[float]

#: Pixels processed together in one chunk (about 4 images of 1024 x 768).
CHUNK_PIXELS = 1 << 22


class Maps:
    """B maps, possibly of different sizes, read in chunks of equally sized images.

    Values must be finite; with ``allow_neg_inf`` (log densities, maps only ranked) ``-inf`` is
    allowed too. Each map is checked the first time it is read.
    """

    def __init__(self, maps: MapsLike, name: str, *, allow_neg_inf: bool = False) -> None:
        self.name = name
        self.allow_neg_inf = allow_neg_inf
        if isinstance(maps, (torch.Tensor, np.ndarray)):
            tensor = _as_float_tensor(maps, name)
            if tensor.ndim != 3:
                raise EvaluationError(
                    f"{name}: expected a (B, H, W) batch or a list of (H, W) maps, got shape {tuple(tensor.shape)}"
                )
            self._batch: torch.Tensor | None = tensor
            self._items: list[torch.Tensor] = []
            self.sizes = [tuple(tensor.shape[1:])] * tensor.shape[0]
            self.device = tensor.device
        else:
            self._batch = None
            self._items = [_as_float_tensor(m, f"{name}[{i}]") for i, m in enumerate(maps)]
            for i, item in enumerate(self._items):
                if item.ndim != 2:
                    raise EvaluationError(f"{name}[{i}]: expected an (H, W) map, got shape {tuple(item.shape)}")
            self.sizes = [tuple(item.shape) for item in self._items]
            devices = {item.device for item in self._items}
            if len(devices) > 1:
                raise EvaluationError(f"{name}: all maps must be on one device, got {sorted(map(str, devices))}")
            self.device = devices.pop() if devices else torch.device("cpu")
        for i, (height, width) in enumerate(self.sizes):
            if height < 1 or width < 1:
                raise EvaluationError(f"{name}[{i}]: empty map of size {(height, width)}")
        self._checked = [False] * len(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)

    def groups(self, indices: Sequence[int] | None = None) -> dict[tuple[int, int], list[int]]:
        """Image indices by size, in order of first appearance (all images, or those given)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i in range(len(self)) if indices is None else indices:
            groups.setdefault(self.sizes[i], []).append(int(i))
        return groups

    def stack(self, indices: Sequence[int]) -> torch.Tensor:
        """The maps of ``indices`` (all of one size) as a checked (C, H, W) tensor."""
        if self._batch is not None:
            first, count = int(indices[0]), len(indices)
            if list(indices) == list(range(first, first + count)):
                chunk = self._batch[first : first + count]  # a view, no copy
            else:
                chunk = self._batch.index_select(0, torch.as_tensor(list(indices), device=self.device))
        else:
            chunk = torch.stack([self._items[i] for i in indices])
        unchecked = [k for k, i in enumerate(indices) if not self._checked[i]]
        if unchecked:
            part = chunk if len(unchecked) == len(indices) else chunk[unchecked]
            self._check(part, [indices[k] for k in unchecked])
            for k in unchecked:
                self._checked[indices[k]] = True
        return chunk

    def chunks(self, indices: Sequence[int] | None = None, pixels: int = CHUNK_PIXELS) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield ``(indices, maps (C, H, W))`` over equally sized images, about ``pixels`` at a time."""
        for (height, width), members in self.groups(indices).items():
            step = max(1, pixels // (height * width))
            for start in range(0, len(members), step):
                part = members[start : start + step]
                yield part, self.stack(part)

    def _check(self, chunk: torch.Tensor, indices: Sequence[int]) -> None:
        flat = chunk.reshape(chunk.shape[0], -1)
        top = flat.amax(dim=1)  # NaN propagates into amax
        bad = ~(top < float("inf"))
        if not self.allow_neg_inf:
            bad |= ~(flat.amin(dim=1) > float("-inf"))
        if bool(bad.any()):
            i = indices[int(bad.nonzero()[0, 0])]
            allowed = "finite values or -inf" if self.allow_neg_inf else "finite values"
            raise EvaluationError(f"{self.name}[{i}]: contains NaN or infinite values; expected {allowed}")


def _as_float_tensor(data, name: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(data)
    except (TypeError, ValueError, RuntimeError) as error:
        raise EvaluationError(f"{name}: cannot be read as a numeric array ({error})") from None
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise EvaluationError(f"{name}: expected real numbers, got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    return tensor


class ScoredFixations:
    """Checked fixation arrays and their pixel indices, grouped by image.

    Attributes: ``x``, ``y`` (F,) float64; ``n`` (F,) int64; ``pixel`` (F,) int64, the flat index
    ``int(y) * W + int(x)`` into the map of image ``n``; ``counts`` (B,) fixations per image.
    """

    def __init__(self, x: ArrayLike, y: ArrayLike, n: ArrayLike, sizes: Sequence[tuple[int, int]], device) -> None:
        self.x = _as_vector(x, "x", torch.float64, device)
        self.y = _as_vector(y, "y", torch.float64, device)
        self.n = _as_vector(n, "n", torch.int64, device)
        if not (len(self.x) == len(self.y) == len(self.n)):
            raise EvaluationError(
                f"fixations: x, y and n must have the same length, got {len(self.x)}, {len(self.y)}, {len(self.n)}"
            )
        self.num_images = len(sizes)
        if len(self.n) and (int(self.n.min()) < 0 or int(self.n.max()) >= self.num_images):
            raise EvaluationError(
                f"fixations: image indices n must lie in [0, {self.num_images}) for {self.num_images} maps, "
                f"got values from {int(self.n.min())} to {int(self.n.max())}"
            )
        size_table = torch.as_tensor(list(sizes), dtype=torch.int64, device=device).reshape(-1, 2)
        self.heights = size_table[:, 0]
        self.widths = size_table[:, 1]
        height = self.heights[self.n]
        width = self.widths[self.n]
        outside = ~((self.x >= 0) & (self.x < width) & (self.y >= 0) & (self.y < height))
        if bool(outside.any()):
            k = int(outside.nonzero()[0, 0])
            raise EvaluationError(
                f"fixation #{k} (x={float(self.x[k])}, y={float(self.y[k])}) lies outside image {int(self.n[k])} "
                f"of size {int(height[k])} x {int(width[k])} (rows x columns); fixations need 0 <= x < width and "
                "0 <= y < height in pixels (x = column, y = row). Clip or drop them, or check for 1-based coordinates."
            )
        self.pixel = self.y.long() * width + self.x.long()
        self.counts = torch.bincount(self.n, minlength=self.num_images)
        self._order = torch.argsort(self.n, stable=True)
        self._starts = torch.cumsum(self.counts, 0) - self.counts
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.n)

    def fingerprint(self) -> str:
        """A hash of the values of ``x``, ``y`` and ``n`` (recognises the same fixations given again)."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            for values in (self.x, self.y, self.n):
                digest.update(values.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def images_with_fixations(self) -> list[int]:
        return self.counts.nonzero().flatten().tolist()

    def padded(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixations of the images ``indices`` as a padded (C, Fmax) table.

        Returns ``(position, valid)``: ``position`` holds indices into the fixation arrays (0 where
        padded), ``valid`` marks the real entries.
        """
        index = torch.as_tensor(list(indices), dtype=torch.int64, device=self.n.device)
        counts = self.counts[index]
        width = int(counts.max()) if len(index) else 0
        slot = torch.arange(width, device=self.n.device)
        valid = slot[None, :] < counts[:, None]
        flat = (self._starts[index][:, None] + slot[None, :]).clamp(max=max(len(self._order) - 1, 0))
        position = torch.where(valid, self._order[flat], 0) if len(self._order) else flat
        return position, valid

    def padded_pixels(self, position: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(C, Fmax) flat pixels of a `padded` table; 0 where padded (a padding entry's own fixation
        may belong to a larger image)."""
        return torch.where(valid, self.pixel[position], 0)


def _as_vector(data: ArrayLike, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    except (TypeError, ValueError) as error:
        raise EvaluationError(f"fixations: {name} cannot be read as a numeric array ({error})") from None
    if tensor.ndim != 1:
        raise EvaluationError(f"fixations: {name} must be 1-d, got shape {tuple(tensor.shape)}")
    if dtype == torch.int64:
        if tensor.is_floating_point():
            if not bool(torch.all(tensor == tensor.round())):
                raise EvaluationError("fixations: image indices n must be whole numbers")
        elif tensor.dtype == torch.bool:
            raise EvaluationError("fixations: image indices n must be integers, got booleans")
    elif not bool(torch.isfinite(tensor.to(torch.float64)).all()):
        raise EvaluationError(f"fixations: {name} contains NaN or infinite coordinates")
    return tensor.to(device=device, dtype=dtype)


def read_at_fixations(maps: Maps, fixations: ScoredFixations) -> torch.Tensor:
    """Each fixation's map value ``map[int(y), int(x)]`` as an (F,) float64 tensor, input order."""
    values = torch.full((len(fixations),), float("nan"), dtype=torch.float64, device=maps.device)
    for indices, chunk in maps.chunks(fixations.images_with_fixations()):
        position, valid = fixations.padded(indices)
        read = chunk.reshape(len(indices), -1).gather(1, fixations.padded_pixels(position, valid)).to(torch.float64)
        values[position[valid]] = read[valid]
    return values
