"""The gold-standard model: how well one observer's fixations are predicted by the other observers'.

For a fixation of observer s on image i, the gold standard is a Gaussian KDE of the fixations of
**all other observers on image i** (normalised coordinates, bandwidth h as a fraction of width and
height, kernels integrated over pixels and truncated to the image, see `kde`), mixed with the
centre bias:

    p(pixel | i, not s) = (1 - a) * KDE_{i, not s}(pixel) + a * centrebias(pixel)

h and a maximise the mean log-likelihood of all fixations (each one predicted without its own
observer, so the fit is cross-validated by construction); a is profiled out (concave), log10(h)
is searched by grid and golden section. A fixation whose image has no other observer is scored by
the centre bias alone. Its information gain over the centre bias is the denominator of the
explained information gain (see docs/design.md).

`GoldStandardModel.log_likelihoods` gives per-fixation log-probabilities (nats);
`GoldStandardModel.log_density` gives the (H, W) map for an image, without one observer (the
density that scores that observer) or from all observers; `GoldStandardModel.log_densities` gives
several such maps of one image at once. The two agree exactly: the map read at
a fixation's pixel is exp of its log-likelihood.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.fixations import Fixations
from ..errors import DatasetError
from .centerbias import CenterBiasModel
from .inputs import selected_fixations
from .kde import (
    PairChunks,
    best_mixture_weight,
    cell_masses,
    interval_mass,
    maximize,
    normalised_log,
    standard_interval_mass,
)

#: Smallest centre-bias weight considered.
MIN_CENTERBIAS_WEIGHT = 1e-12
#: log10 of the bandwidth range searched.
LOG10_BANDWIDTH_RANGE = (-3.0, 0.0)
#: Kernels farther than this many bandwidths from a pixel (along x or y) are left out: Phi(-10) < 1e-23.
NEGLIGIBLE_DISTANCE = 10.0


@dataclass
class GoldStandardModel:
    """Fitted gold-standard parameters; evaluate them on the dataset they describe.

    Attributes:
        bandwidth: kernel std as a fraction of the image width (x) and height (y).
        centerbias_weight: weight a of the centre bias in the mixture.
        centerbias: the centre-bias model mixed in.
        cv_log_likelihood: mean log-likelihood per fixation relative to a uniform density, nats
            (leave-one-observer-out, as fitted).
    """

    bandwidth: float
    centerbias_weight: float
    centerbias: CenterBiasModel
    cv_log_likelihood: float | None = None
    #: (float64 centre-bias density, a times it) per image size, made once: `log_densities` runs once per image
    _centerbias_densities: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    #: work tensors of `log_densities`, kept from image to image
    _buffers: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def log_likelihoods(self, data, images=None, *, device: torch.device | str = "cpu") -> np.ndarray:
        """float64 (F,) log-probability (nats) of each fixation's pixel, predicted from the other observers.

        ``data``: a `FixationDataset` or a ``(Fixations, image_sizes)`` pair; with ``images``, only
        the fixations on those image indices (in dataset order).
        """
        fixations, sizes = selected_fixations(data, images)
        centerbias = torch.as_tensor(self.centerbias.fixation_log_likelihoods(fixations.x, fixations.y, sizes[fixations.image]), device=device).exp()
        observers = _OtherObservers(fixations, sizes, device)
        probability, others = observers(self.bandwidth), observers.has_others
        a = self.centerbias_weight
        return torch.where(others, ((1 - a) * probability + a * centerbias).log(), centerbias.log()).cpu().numpy()

    def log_density(self, data, index: int, observer: int | None = None) -> torch.Tensor:
        """float32 (H, W) log density of image ``index`` from all observers but ``observer``.

        ``observer=None`` uses every observer's fixations (the empirical density of the image).
        """
        return self.log_densities(data, index, [observer])[0]

    def log_densities(self, data, index: int, observers) -> torch.Tensor:
        """float32 (K, H, W): `log_density` of image ``index`` without each of the K ``observers``
        (observer ids; None keeps every observer).

        The kernels of the image's fixations are evaluated once, (H, n) along y and (W, n) along x,
        and summed per observer, ``rows[:, own] @ cols[:, own].T`` (products over the n fixations
        once in all, not once per map). Map k is then one weighted sum of the observers' sums it
        keeps and the centre bias, all K maps in one (K, observers + 1) @ (observers + 1, H * W)
        product: sums of non-negative terms (not the full estimate minus the left-out observer's
        kernels), so no precision is lost to cancellation. Equal to summing the kept kernels
        directly to ~1e-15 relative (identical float32 maps on the synthetic benchmark set).
        """
        fixations, sizes = selected_fixations(data)
        height, width = (int(v) for v in sizes[index])
        fixations = fixations[fixations.image == index]
        a = self.centerbias_weight
        centerbias = self._centerbias_densities.get((height, width))
        if centerbias is None:  # (density, a * density)
            density = self.centerbias.log_density((height, width)).double().exp()
            centerbias = self._centerbias_densities[(height, width)] = (density, a * density)
        observer = torch.as_tensor(fixations.observer)
        ids, group = torch.unique(observer, return_inverse=True)  # the image's observers, ascending
        rows = cell_masses(height, torch.as_tensor(fixations.y / height), self.bandwidth)  # (H, n)
        cols = cell_masses(width, torch.as_tensor(fixations.x / width), self.bandwidth)  # (W, n)
        count = len(ids)
        # per observer g: its kernel sum (H, W); row `count`: a times the centre bias
        parts = self._work("parts", (count + 1, height * width))
        for g in range(count):
            own = (group == g).nonzero().flatten()
            torch.mm(rows[:, own], cols[:, own].T, out=parts[g].view(height, width))
        parts[count] = centerbias[1].reshape(-1)
        inside = rows.sum(0) * cols.sum(0)  # (n,) kernel mass inside the image
        mass = torch.zeros(count, dtype=torch.float64).index_add_(0, group, inside)
        keep = torch.stack([ids != (-1 if o is None else int(o)) for o in observers]).double()  # (K, count)
        normaliser = keep @ mass  # (K,) kernel mass inside the image of the kept observers
        mixture = torch.cat([keep * ((1 - a) / normaliser.clamp_min(1e-300))[:, None], torch.ones(len(observers), 1, dtype=torch.float64)], 1)
        density = self._work("density", (len(observers), height * width))
        torch.mm(mixture, parts, out=density)  # (1 - a) * kept kernels / their mass + a * centre bias
        density = density.view(len(observers), height, width)
        if not bool((normaliser > 0).all()):  # nobody else looked: the centre bias alone
            density[normaliser <= 0] = centerbias[0]
        return normalised_log(density, overwrite=True)

    def _work(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float64 work tensor of ``shape``, reused from call to call (fresh memory is slow to touch)."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size:
            buffer = self._buffers[name] = torch.empty(size, dtype=torch.float64)
        return buffer[:size].view(shape)


def fit_gold_standard(data, centerbias: CenterBiasModel, images=None, *, device: torch.device | str = "cpu") -> GoldStandardModel:
    """Fit a `GoldStandardModel` to the fixations of ``data`` (see the module docstring).

    Args:
        data: a `FixationDataset` or a ``(Fixations, image_sizes)`` pair.
        centerbias: the centre bias to mix in (e.g. `fit_centerbias` on the same data).
        images: image indices to fit on; default all.
        device: where the computation runs.
    """
    fixations, sizes = selected_fixations(data, images)
    size = sizes[fixations.image]
    centerbias_probability = torch.as_tensor(centerbias.fixation_log_likelihoods(fixations.x, fixations.y, size), device=device).exp()
    uniform = torch.as_tensor(np.log(size[:, 0] * size[:, 1]).astype(np.float64), device=device)  # -log p_uniform

    observers = _OtherObservers(fixations, sizes, device)
    others = observers.has_others
    if not others.any():
        raise DatasetError("the gold standard needs at least two observers on some image")

    weights: dict[float, float] = {}  # the mixture weight of every bandwidth tried: the best one is not scored again

    def scored(log10_bandwidth: float) -> tuple[torch.Tensor, float]:
        probability = observers(10.0**log10_bandwidth)
        a = best_mixture_weight(probability[others], centerbias_probability[others], MIN_CENTERBIAS_WEIGHT)
        ll = torch.where(others, ((1 - a) * probability + a * centerbias_probability).log(), centerbias_probability.log())
        weights[log10_bandwidth] = a
        return ll, a

    log10_h, cv_ll = maximize(lambda value: float((scored(value)[0] + uniform).mean()), *LOG10_BANDWIDTH_RANGE)
    a = weights[log10_h] if log10_h in weights else scored(log10_h)[1]
    return GoldStandardModel(bandwidth=10.0**log10_h, centerbias_weight=a, centerbias=centerbias, cv_log_likelihood=cv_ll)


class _OtherObservers:
    """For fixations on images of known sizes: the probability of each fixation's pixel under the
    KDE of the *other* observers' fixations on its image, for any bandwidth.

    The geometry of every same-image pair of different observers (offset of the kernel centre from
    the pixel's edges) is computed once, so each bandwidth costs four Phi evaluations per pair;
    pairs farther apart than `NEGLIGIBLE_DISTANCE` bandwidths (along x or y) are skipped, their
    kernel mass on the pixel being below 1e-23.
    """

    def __init__(self, fixations: Fixations, sizes: np.ndarray, device) -> None:
        size = torch.as_tensor(sizes[fixations.image], dtype=torch.float64, device=device)
        x = torch.as_tensor(fixations.x, device=device)
        y = torch.as_tensor(fixations.y, device=device)
        self.u, self.v = x / size[:, 1], y / size[:, 0]  # kernel centres, normalised
        self.step_x, self.step_y = 1.0 / size[:, 1], 1.0 / size[:, 0]  # pixel size, normalised
        image = torch.as_tensor(fixations.image, device=device)
        observer = torch.as_tensor(fixations.observer, device=device)
        left, top = torch.floor(x) * self.step_x, torch.floor(y) * self.step_y  # pixel edges, normalised

        def geometry(j, k):
            other = observer[j] != observer[k]
            j, k = j[other], k[other]
            offset_x, offset_y = left[j] - self.u[k], top[j] - self.v[k]
            # sorted by how far the kernel centre is from the pixel, so that far pairs can be skipped
            reach = torch.maximum(torch.maximum(offset_x, -offset_x - self.step_x[j]), torch.maximum(offset_y, -offset_y - self.step_y[j]))
            reach, order = torch.sort(reach)
            j, offset_x, offset_y = j[order], offset_x[order], offset_y[order]
            # the pixel's edges relative to the kernel centre, mirrored as `standard_interval_mass` does
            return j, _mirrored(offset_x, offset_x + self.step_x[j]), _mirrored(offset_y, offset_y + self.step_y[j]), reach

        # 48 bytes a pair (index, reach, mirrored edges along x and y): at most about 1.3 GB kept
        self.pairs = PairChunks(image, geometry, max_cached=26_000_000)
        _, group = np.unique(np.stack([fixations.image, fixations.observer]), axis=1, return_inverse=True)
        self.image, self.group = image, torch.as_tensor(group.reshape(-1), device=device)
        self.has_others = self.others_sum(torch.ones_like(self.u)) > 0.5

    def others_sum(self, values: torch.Tensor) -> torch.Tensor:
        """(F,): the sum of ``values`` over each fixation's image minus its own observer's share."""
        image, group = self.image, self.group
        by_image = torch.zeros(int(image.max()) + 1, dtype=values.dtype, device=image.device).index_add_(0, image, values)
        by_group = torch.zeros(int(group.max()) + 1, dtype=values.dtype, device=image.device).index_add_(0, group, values)
        return by_image[image] - by_group[group]

    def __call__(self, bandwidth: float) -> torch.Tensor:
        """float64 (F,) pixel probabilities (0 where the image has no other observer)."""
        kde = torch.zeros_like(self.u)
        for j, along_x, along_y, reach in self.pairs:
            near = int(torch.searchsorted(reach, torch.tensor(NEGLIGIBLE_DISTANCE * bandwidth, dtype=reach.dtype, device=reach.device)))
            mass = _mirrored_mass(along_x, near, bandwidth).mul_(_mirrored_mass(along_y, near, bandwidth))
            kde.index_add_(0, j[:near], mass)
        zero, one = torch.zeros_like(self.u), torch.ones_like(self.u)
        normaliser = self.others_sum(interval_mass(zero, one, self.u, bandwidth) * interval_mass(zero, one, self.v, bandwidth))
        return torch.where(self.has_others, kde / normaliser.clamp_min(1e-300), zero)


def _mirrored(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intervals [low, high] mirrored to the left of 0 where ``low > 0``, as `standard_interval_mass`
    mirrors them: ``(-high, -low)`` there (the bounds swapped), ``(low, high)`` elsewhere. For intervals
    in bandwidths the choice is the same at any bandwidth, so it is made once."""
    right = low > 0
    return torch.where(right, -high, low), torch.where(right, -low, high)


def _mirrored_mass(mirrored: tuple[torch.Tensor, torch.Tensor], near: int, bandwidth: float) -> torch.Tensor:
    """`standard_interval_mass` of the first ``near`` `_mirrored` intervals divided by ``bandwidth``.

    The same arithmetic: negating and dividing by the bandwidth commute exactly, and with the bounds
    swapped ``Phi(-a) - Phi(-b)`` is what ``-(Phi(-b) - Phi(-a))`` computes.
    """
    low, high = (values[:near] for values in mirrored)
    return torch.special.ndtr(high / bandwidth).sub_(torch.special.ndtr(low / bandwidth)).clamp_min_(0.0)
