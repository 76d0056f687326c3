"""The fixation record: one row per fixation, stored as parallel numpy arrays.

Coordinates are float pixels of the image as displayed (EXIF orientation applied), **x = column,
y = row**, origin at the top-left corner of the top-left pixel, so the pixel a fixation falls in
is ``(int(y), int(x))`` and a fixation is *inside* its image when ``0 <= x < W`` and
``0 <= y < H``. Times ``t`` (onset) and ``duration`` are kept in the unit of the source (the
dataset's ``time_unit``), NaN where the source has none.

Scanpath order is optional: ``scanpath`` numbers the viewing sequences (one observer looking at
one image once) and ``order`` is the 0-based position of the fixation within its sequence; both are
-1 for fixations that do not come from a recorded sequence.

Fixations outside their image are handled by an explicit *outside policy* at import time
(`apply_outside_policy`): ``"drop"`` removes them, ``"clip"`` moves them onto the nearest border
pixel, ``"error"`` refuses the input. The number affected is returned so that importers can record
it; a stored dataset never contains a fixation outside its image (`validate_fixations`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError

#: The fields of a `Fixations` record, in storage order.
FIELDS = ("image", "x", "y", "observer", "t", "duration", "scanpath", "order")
INT_FIELDS = ("image", "observer", "scanpath", "order")
FLOAT_FIELDS = ("x", "y", "t", "duration")
#: What to do with fixations outside their image; see the module docstring.
OUTSIDE_POLICIES = ("drop", "clip", "error")


@dataclass(frozen=True, eq=False)
class Fixations:
    """Fixations as parallel arrays of equal length F (build one with `Fixations.build`).

    Attributes:
        image: int64 (F,), index of the image in its dataset.
        x, y: float64 (F,), column and row in pixels (see module docstring).
        observer: int64 (F,), observer id (>= 0); `FixationDataset.observer_names` may name them.
        t, duration: float64 (F,), onset and duration in the dataset's time unit; NaN = unknown.
        scanpath: int64 (F,), id of the viewing sequence, -1 = not part of one.
        order: int64 (F,), 0-based position within the sequence, -1 = not part of one.
        extra: further per-fixation float64 (F,) arrays carried through from the source (e.g. a
            pysaliency attribute), so that importing and exporting again loses nothing.
    """

    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    observer: np.ndarray
    t: np.ndarray
    duration: np.ndarray
    scanpath: np.ndarray
    order: np.ndarray
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        length = None
        for name in FIELDS:
            dtype = np.int64 if name in INT_FIELDS else np.float64
            value = np.ascontiguousarray(np.asarray(getattr(self, name)).astype(dtype, copy=False))
            if value.ndim != 1:
                raise DatasetError(f"fixations: field {name!r} must be 1-d, got shape {value.shape}")
            if length is None:
                length = len(value)
            elif len(value) != length:
                raise DatasetError(f"fixations: field {name!r} has {len(value)} entries, 'image' has {length}")
            object.__setattr__(self, name, value)
        extra = {}
        for name, value in dict(self.extra).items():
            if name in FIELDS:
                raise DatasetError(f"fixations: extra field {name!r} clashes with a standard field")
            value = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
            if value.shape != (length,):
                raise DatasetError(f"fixations: extra field {name!r} has shape {value.shape}, expected ({length},)")
            extra[str(name)] = value
        object.__setattr__(self, "extra", extra)

    @classmethod
    def build(
        cls,
        image: Sequence[int] | np.ndarray,
        x: Sequence[float] | np.ndarray,
        y: Sequence[float] | np.ndarray,
        observer: Sequence[int] | np.ndarray | None = None,
        t: Sequence[float] | np.ndarray | None = None,
        duration: Sequence[float] | np.ndarray | None = None,
        scanpath: Sequence[int] | np.ndarray | None = None,
        order: Sequence[int] | np.ndarray | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> Fixations:
        """Fixations from whatever fields are known: observer 0, NaN times, -1 scanpath by default."""
        count = len(np.asarray(image))
        return cls(
            image=np.asarray(image),
            x=np.asarray(x),
            y=np.asarray(y),
            observer=np.zeros(count, np.int64) if observer is None else np.asarray(observer),
            t=np.full(count, np.nan) if t is None else np.asarray(t),
            duration=np.full(count, np.nan) if duration is None else np.asarray(duration),
            scanpath=np.full(count, -1, np.int64) if scanpath is None else np.asarray(scanpath),
            order=np.full(count, -1, np.int64) if order is None else np.asarray(order),
            extra=dict(extra or {}),
        )

    @classmethod
    def empty(cls) -> Fixations:
        return cls.build(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index) -> Fixations:
        """The fixations selected by a boolean mask, an index array or a slice."""
        return Fixations(
            **{name: getattr(self, name)[index] for name in FIELDS},
            extra={name: value[index] for name, value in self.extra.items()},
        )

    def __repr__(self) -> str:
        images = len(np.unique(self.image)) if len(self) else 0
        return f"Fixations({len(self)} fixations on {images} images, extra={sorted(self.extra)})"

    @property
    def has_scanpaths(self) -> bool:
        """True when at least one fixation belongs to a recorded viewing sequence."""
        return bool((self.scanpath >= 0).any())

    @classmethod
    def concatenate(cls, parts: Sequence[Fixations]) -> Fixations:
        """Join records; extra fields present in only some parts are filled with NaN elsewhere."""
        if not parts:
            return cls.empty()
        names = sorted({name for part in parts for name in part.extra})
        return cls(
            **{name: np.concatenate([getattr(part, name) for part in parts]) for name in FIELDS},
            extra={
                name: np.concatenate([part.extra.get(name, np.full(len(part), np.nan)) for part in parts])
                for name in names
            },
        )

    def equals(self, other: Fixations) -> bool:
        """Field-by-field equality, NaN equal to NaN (exact, no tolerance)."""
        if len(self) != len(other) or sorted(self.extra) != sorted(other.extra):
            return False
        pairs = [(getattr(self, n), getattr(other, n)) for n in FIELDS]
        pairs += [(self.extra[n], other.extra[n]) for n in self.extra]
        return all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f") for a, b in pairs)


def duplicate_mask(fixations: Fixations) -> np.ndarray:
    """Boolean (F,): the fixation repeats an earlier one exactly (every field and extra field equal).

    Values are compared bit for bit, so NaN equals NaN (unknown time = unknown time). The first
    occurrence is not marked, so ``fixations[~duplicate_mask(fixations)]`` keeps one of each.
    """
    if len(fixations) < 2:
        return np.zeros(len(fixations), bool)
    columns = [getattr(fixations, name) for name in FIELDS] + [fixations.extra[name] for name in sorted(fixations.extra)]
    rows = np.ascontiguousarray(np.stack([np.asarray(c).view(np.int64) for c in columns], axis=1))
    _, first = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel(), return_index=True)
    mask = np.ones(len(fixations), bool)
    mask[first] = False
    return mask


def inside_mask(fixations: Fixations, image_sizes: np.ndarray) -> np.ndarray:
    """Boolean (F,): the fixation lies inside its image, ``0 <= x < W`` and ``0 <= y < H``."""
    sizes = np.asarray(image_sizes)[fixations.image]
    return (fixations.x >= 0) & (fixations.x < sizes[:, 1]) & (fixations.y >= 0) & (fixations.y < sizes[:, 0])


def apply_outside_policy(
    fixations: Fixations, image_sizes: np.ndarray, policy: str, where: str
) -> tuple[Fixations, int]:
    """Handle fixations outside their image by ``policy``; returns the result and how many were affected.

    ``"drop"`` removes them, ``"clip"`` moves each coordinate to the nearest position inside the
    image (the border pixel), ``"error"`` raises `DatasetError` naming ``where`` and the first one.
    Fixations with NaN or infinite coordinates are always an error (malformed input, not a gaze
    position). Expects valid image indices (see `check_image_indices`).
    """
    if policy not in OUTSIDE_POLICIES:
        raise DatasetError(f"{where}: unknown outside policy {policy!r}; use one of {OUTSIDE_POLICIES}")
    _check_finite_coordinates(fixations, where)
    outside = ~inside_mask(fixations, image_sizes)
    count = int(outside.sum())
    if count == 0:
        return fixations, 0
    if policy == "error":
        raise DatasetError(
            f"{where}: {count} of {len(fixations)} fixations lie outside their image "
            f"({_describe_first(fixations, image_sizes, outside)}); import with outside policy "
            "'drop' (remove them) or 'clip' (move them to the border)"
        )
    if policy == "drop":
        return fixations[~outside], count
    sizes = np.asarray(image_sizes)[fixations.image].astype(np.float64)
    x = np.clip(fixations.x, 0.0, np.nextafter(sizes[:, 1], 0.0))
    y = np.clip(fixations.y, 0.0, np.nextafter(sizes[:, 0], 0.0))
    fields = {name: getattr(fixations, name) for name in FIELDS}
    fields.update(x=x, y=y)
    return Fixations(**fields, extra=dict(fixations.extra)), count


def check_image_indices(fixations: Fixations, num_images: int, where: str) -> None:
    bad = (fixations.image < 0) | (fixations.image >= num_images)
    if bad.any():
        first = int(np.argmax(bad))
        raise DatasetError(
            f"{where}: {int(bad.sum())} fixations refer to images that do not exist (first: fixation "
            f"#{first} on image index {int(fixations.image[first])}, the dataset has {num_images} images)"
        )


def validate_fixations(fixations: Fixations, image_sizes: np.ndarray, where: str) -> None:
    """Raise `DatasetError` unless ``fixations`` is a valid stored record for images of ``image_sizes``.

    Checks: image indices in range; coordinates finite and inside the image; observer ids >= 0;
    times and durations finite or NaN, durations >= 0; ``scanpath`` and ``order`` both -1 or both
    >= 0; every sequence on one image by one observer, without repeated positions.
    """
    image_sizes = np.asarray(image_sizes)
    check_image_indices(fixations, len(image_sizes), where)
    _check_finite_coordinates(fixations, where)
    outside = ~inside_mask(fixations, image_sizes)
    if outside.any():
        raise DatasetError(
            f"{where}: {int(outside.sum())} fixations lie outside their image "
            f"({_describe_first(fixations, image_sizes, outside)})"
        )
    _first_bad(fixations.observer < 0, fixations, where, "have a negative observer id")
    for name in ("t", "duration"):
        _first_bad(np.isinf(getattr(fixations, name)), fixations, where, f"have an infinite {name}")
    _first_bad(fixations.duration < 0, fixations, where, "have a negative duration")
    in_sequence = fixations.scanpath >= 0
    _first_bad(
        (fixations.scanpath < -1) | (fixations.order < -1) | (in_sequence != (fixations.order >= 0)),
        fixations,
        where,
        "have inconsistent scanpath/order (both must be -1, or both >= 0)",
    )
    if in_sequence.any():
        index = np.flatnonzero(in_sequence)
        sequence = fixations.scanpath[index]
        sort = np.lexsort((fixations.order[index], sequence))
        sequence, index = sequence[sort], index[sort]
        same = sequence[1:] == sequence[:-1]
        repeated = same & (fixations.order[index[1:]] == fixations.order[index[:-1]])
        mixed = same & (
            (fixations.image[index[1:]] != fixations.image[index[:-1]])
            | (fixations.observer[index[1:]] != fixations.observer[index[:-1]])
        )
        for bad, problem in ((repeated, "repeat a position within a scanpath"), (mixed, "belong to a scanpath that spans several images or observers")):
            if bad.any():
                first = int(index[1:][np.argmax(bad)])
                raise DatasetError(
                    f"{where}: {int(bad.sum())} fixations {problem} (first: fixation #{first}, "
                    f"scanpath {int(fixations.scanpath[first])})"
                )


def _check_finite_coordinates(fixations: Fixations, where: str) -> None:
    _first_bad(~(np.isfinite(fixations.x) & np.isfinite(fixations.y)), fixations, where, "have NaN or infinite coordinates")


def _first_bad(bad: np.ndarray, fixations: Fixations, where: str, problem: str) -> None:
    if bad.any():
        first = int(np.argmax(bad))
        raise DatasetError(
            f"{where}: {int(bad.sum())} fixations {problem} (first: fixation #{first} on image "
            f"{int(fixations.image[first])}, x={fixations.x[first]!r}, y={fixations.y[first]!r}, "
            f"observer={int(fixations.observer[first])})"
        )


def _describe_first(fixations: Fixations, image_sizes: np.ndarray, mask: np.ndarray) -> str:
    first = int(np.argmax(mask))
    height, width = (int(v) for v in np.asarray(image_sizes)[fixations.image[first]])
    return (
        f"first: fixation #{first} on image {int(fixations.image[first])} at x={fixations.x[first]:g}, "
        f"y={fixations.y[first]:g}, image {width} x {height} px"
    )
