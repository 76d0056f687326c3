"""Which ensemble member may score which image: `CrossvalInfo` and `held_out_members`.

A k-fold ensemble's member j did not train on the images that ``kfold_assignments(dataset, k,
fold_seed)`` puts in fold j. `CrossvalInfo` records that assignment with the exact image set the
folds were drawn from (`image_set_digest`); it travels in the model card (``crossval``), in
``crossval.json`` and in evaluation reports. Training builds it with `CrossvalInfo.of`, and
evaluation checks a dataset against it with `held_out_members`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import FixationDataset, image_set_digest, kfold_assignments
from ..errors import DatasetError, EvaluationError

_CROSSVAL_KEYS = {"dataset", "folds", "fold_seed", "images", "image_set"}


@dataclass(frozen=True)
class CrossvalInfo:
    """The folds of a cross-validated ensemble.

    Attributes:
        dataset: the dataset's name (a recipe's data key, or its own name).
        folds: k, the number of folds (= members).
        fold_seed: the seed of `kfold_assignments`.
        images: number of images the folds were drawn from.
        image_set: `image_set_digest` of those images.
    """

    dataset: str
    folds: int
    fold_seed: int
    images: int
    image_set: str

    @classmethod
    def of(cls, dataset: FixationDataset, name: str, folds: int, fold_seed: int = 0) -> CrossvalInfo:
        """The fold info of ``folds`` folds (seed ``fold_seed``) on ``dataset``, called ``name``."""
        return cls(str(name), int(folds), int(fold_seed), len(dataset), image_set_digest(dataset))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def held_out_members(
    model, dataset: FixationDataset, crossval: bool | Mapping[str, Any] | CrossvalInfo | None
) -> tuple[np.ndarray | None, CrossvalInfo | None]:
    """The member that scores each image, int64 (N,), and the fold info used; ``(None, None)`` for the mixture.

    ``crossval``: False/None (the mixture), True (the fold info of ``model.card_info.crossval``),
    a `CrossvalInfo`, or a mapping ``{"folds": k, "fold_seed": s}``. Raises `EvaluationError` when
    ``crossval=True`` but the model has no fold info, was cross-validated on another image set or
    a dataset of another name, or its fold count differs from its member count.
    """
    if crossval is False or crossval is None:
        return None, None
    if crossval is True:
        info = _card_crossval(model, dataset)
    elif isinstance(crossval, CrossvalInfo):
        info = crossval.to_dict()
    elif isinstance(crossval, Mapping):
        unknown = sorted(set(crossval) - _CROSSVAL_KEYS)
        if unknown or "folds" not in crossval:
            raise EvaluationError(f"crossval must be True, False or {{'folds': k, 'fold_seed': s}}, got {dict(crossval)}")
        info = dict(crossval)
    else:
        raise EvaluationError(f"crossval must be True, False or {{'folds': k, 'fold_seed': s}}, got {crossval!r}")
    folds, seed = int(info["folds"]), int(info.get("fold_seed", 0))
    if folds != model.num_members:
        raise EvaluationError(
            f"cross-validation with {folds} folds needs one member per fold, but the model has {model.num_members} "
            "members; was it saved from another run, or were members selected on loading?"
        )
    try:
        members = kfold_assignments(dataset, folds, seed)
    except DatasetError as error:
        raise EvaluationError(f"{dataset.path}: {error}; this is not the dataset the model was cross-validated on") from None
    return members, CrossvalInfo.of(dataset, info.get("dataset", dataset_label(dataset)), folds, seed)


def _card_crossval(model, dataset: FixationDataset) -> dict[str, Any]:
    """The model card's fold info, checked to be about ``dataset``."""
    info = getattr(getattr(model, "card_info", None), "crossval", None)
    if not info:
        raise EvaluationError(
            "the model carries no cross-validation fold info (model card field crossval), so it is unknown "
            "which member did not train on which image; evaluate the full mixture (without --crossval), or "
            "state the folds explicitly (crossval={'folds': k, 'fold_seed': s}; CLI: --folds K --fold-seed S)"
        )
    trained_on = str(info.get("dataset", ""))
    if "image_set" in info:  # the exact images the folds were drawn from (newer cards)
        if info["image_set"] != image_set_digest(dataset):
            raise EvaluationError(
                f"the model was cross-validated on another set of images ({info.get('images', '?')} images of "
                f"{trained_on!r}) than {dataset_label(dataset)!r} ({len(dataset)} images, {dataset.path}); folds "
                "depend on the whole image set, so its members may have trained on images they would score. "
                "Evaluate the full mixture (without --crossval) or use the dataset it was trained on."
            )
    elif not names_match(trained_on, dataset):
        raise EvaluationError(
            f"the model was cross-validated on dataset {trained_on!r} (model card), but the dataset given is "
            f"{dataset_label(dataset)!r} ({dataset.path}); on other data its members may have trained on the "
            "images they would score. Evaluate the full mixture (without --crossval), or, if this is the same "
            f"data under another name, state the folds explicitly (CLI: --folds {info.get('folds')} "
            f"--fold-seed {info.get('fold_seed', 0)})"
        )
    return dict(info)


def names_match(name: str, dataset: FixationDataset) -> bool:
    """Whether ``name`` (a model card's dataset name) names ``dataset``.

    True when all words of ``name`` (letters and digits, case-insensitive) occur in the dataset's
    own name, its file name or its file stem: ``"mit1003"`` names a dataset called ``"MIT1003"``,
    ``"synthetic"`` (the key of the synthetic recipe) the ``"deepgaze-hub default synthetic dataset"``.
    """
    words = set(_words(name))
    if not words:
        return False
    candidates = [str(dataset.metadata.get("name", "")), dataset.path.name, dataset.path.stem]
    return any(words <= set(_words(candidate)) for candidate in candidates)


def dataset_label(dataset: FixationDataset) -> str:
    """The dataset's name for people: its stored name, else its file stem."""
    return str(dataset.metadata.get("name") or dataset.path.stem)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())
