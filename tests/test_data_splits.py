"""Image-wise k-fold splits keyed on content ids."""

from __future__ import annotations

import numpy as np
import pytest

from deepgaze_hub.data import kfold_assignments, kfold_split
from deepgaze_hub.errors import DatasetError


def ids(count: int) -> list[str]:
    return [f"{i * 7919:016x}" for i in range(count)]


def test_balanced_deterministic_and_seeded():
    folds = kfold_assignments(ids(103), k=10, seed=0)
    assert folds.dtype == np.int64 and sorted(np.bincount(folds)) == [10] * 7 + [11] * 3
    np.testing.assert_array_equal(folds, kfold_assignments(ids(103), k=10, seed=0))
    assert not np.array_equal(folds, kfold_assignments(ids(103), k=10, seed=1))


def test_stable_when_reimported_in_another_order():
    names = ids(50)
    folds = dict(zip(names, kfold_assignments(names, k=5)))
    shuffled = list(np.random.default_rng(0).permutation(names))
    assert dict(zip(shuffled, kfold_assignments(shuffled, k=5))) == folds


def test_identical_images_share_a_fold_and_the_dataset_form_works(tmp_path):
    from deepgaze_hub.data import make_synthetic_dataset

    names = ids(20) + [ids(20)[3]] * 3
    folds = kfold_assignments(names, k=4)
    assert len(set(folds[[3, 20, 21, 22]])) == 1
    ds = make_synthetic_dataset(tmp_path / "d.h5", 12, size=(24, 32), num_observers=2, seed=0)
    train, val = kfold_split(ds, fold=1, k=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(12)) and len(val) == 4
    folds = kfold_assignments(ds, k=3)
    fixation_folds = folds[ds.fixations.image]  # every fixation in its image's fold
    assert set(fixation_folds[np.isin(ds.fixations.image, val)]) == {1}


def test_bad_arguments():
    with pytest.raises(DatasetError, match="k >= 2"):
        kfold_assignments(ids(5), k=1)
    with pytest.raises(DatasetError, match="cannot split 3 distinct images into 4 folds"):
        kfold_assignments(ids(3), k=4)
    with pytest.raises(DatasetError, match="fold must be in 0..2"):
        kfold_split(ids(9), fold=3, k=3)
    with pytest.raises(DatasetError, match="pass a FixationDataset"):
        kfold_assignments("abc")
