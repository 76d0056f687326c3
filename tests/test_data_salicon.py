"""Importing SALICON per-image .mat files (both editions' layout, mouse samples or fixations)."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import random_image, write_salicon_mat

from deepgaze_hub.data import import_salicon
from deepgaze_hub.errors import DatasetError

H, W = 48, 64  # small stand-ins for SALICON's 480 x 640


def observer(location, fixations, start=0.0):
    location = np.asarray(location, float)
    return {"location": location, "timestamp": (start + 8.0 * np.arange(len(location)))[:, None], "fixations": np.asarray(fixations, float)}


@pytest.fixture
def salicon(tmp_path):
    root = tmp_path / "SALICON"
    names = ["COCO_train2014_000000000009", "COCO_train2014_000000000025"]
    for i, name in enumerate(names):
        random_image(root / "images" / "train" / f"{name}.jpg", H, W, seed=i)
    random_image(root / "images" / "train" / "COCO_train2014_000000000030.jpg", H, W, seed=9)  # no fixation file
    # 1-based MATLAB coordinates; (65, 10) is outside a 64 px wide image (2017 mouse data has such samples)
    write_salicon_mat(
        root / "fixations" / "train" / f"{names[0]}.mat",
        [observer([[1, 1], [64, 48], [65, 10]], [[10, 20]]), observer([[5.5, 6.5]], [[30, 40], [2, 3]], start=100.0)],
        resolution=(H, W), image_name=names[0],
    )
    write_salicon_mat(
        root / "fixations" / "train" / f"{names[1]}.mat",
        [observer(np.zeros((0, 0)), np.zeros((0, 0))), observer([[7, 8]], [[9, 10]])],
        resolution=(H, W), image_name=names[1],
    )
    return root


def test_inferred_fixations_are_converted_to_zero_based(salicon, tmp_path):
    ds = import_salicon(salicon, tmp_path / "out.h5")
    assert ds.image_names == ["COCO_train2014_000000000009.jpg", "COCO_train2014_000000000025.jpg"]
    fix = ds.fixations
    np.testing.assert_array_equal(fix.image, [0, 0, 0, 1])
    np.testing.assert_array_equal(fix.x, [9.0, 29.0, 1.0, 8.0])
    np.testing.assert_array_equal(fix.y, [19.0, 39.0, 2.0, 9.0])
    np.testing.assert_array_equal(fix.observer, [0, 1, 1, 1])  # position in each file's gaze array
    np.testing.assert_array_equal(fix.order, [0, 0, 1, 0])
    assert len(np.unique(fix.scanpath)) == 3 and np.isnan(fix.t).all()
    assert ds.metadata["images_without_fixations"] == 1 and ds.metadata["time_unit"] == "unknown"


@pytest.mark.parametrize("outside, count, kept_x", [("drop", 4, [0.0, 63.0, 4.5, 6.0]), ("clip", 5, [0.0, 63.0, 63.99999, 4.5, 6.0])])
def test_mouse_samples_keep_timestamps_and_apply_the_outside_policy(salicon, tmp_path, outside, count, kept_x):
    ds = import_salicon(salicon, tmp_path / "out.h5", fixation_type="mouse", outside=outside)
    fix = ds.fixations
    assert len(fix) == count and ds.metadata["outside_count"] == 1 and ds.metadata["time_unit"] == "ms"
    np.testing.assert_allclose(fix.x, kept_x, atol=1e-4)
    assert fix.t[0] == 0.0 and fix.t[1] == 8.0 and 100.0 in fix.t
    with pytest.raises(DatasetError, match="1 of 5 fixations lie outside"):
        import_salicon(salicon, tmp_path / "strict.h5", fixation_type="mouse", outside="error")
    assert not (tmp_path / "strict.h5").exists()


def test_explicit_folders_instead_of_root(salicon, tmp_path):
    ds = import_salicon(None, tmp_path / "out.h5", images=salicon / "images" / "train", fixations=salicon / "fixations" / "train")
    assert len(ds) == 2


def test_malformed_salicon_input(salicon, tmp_path):
    out = tmp_path / "out.h5"
    mats = salicon / "fixations" / "train"

    def fails(message):
        with pytest.raises(DatasetError, match=message):
            import_salicon(salicon, out)
        assert not out.exists() and not list(tmp_path.rglob("*.partial"))

    good = (mats / "COCO_train2014_000000000025.mat").read_bytes()
    (mats / "COCO_train2014_000000000025.mat").write_bytes(good[: len(good) // 2])
    fails(r"000025.mat: cannot read it as a MATLAB v5 .mat file")
    write_salicon_mat(mats / "COCO_train2014_000000000025.mat", [{"location": [[1, 1]], "timestamp": [[0]]}])
    fails(r"000025.mat: 'gaze' has no field 'fixations' \(fields: \['location', 'timestamp'\]\)")
    write_salicon_mat(mats / "COCO_train2014_000000000025.mat", [{"fixations": [[1, 2, 3]]}])
    fails(r"000025.mat: gaze\(1\).fixations must be an N x 2 numeric matrix")
    write_salicon_mat(mats / "COCO_train2014_000000000025.mat", [{"fixations": [[1, 2]]}, {"fixations": [[np.nan, 2]]}])
    fails(r"000025.mat: gaze\(2\).fixations has NaN or infinite coordinates")
    write_salicon_mat(mats / "COCO_train2014_000000000025.mat", [{"fixations": [[1, 2]]}], resolution=(480, 640))
    fails(r"000025.mat: resolution \(480, 640\) \(H, W\) differs from the image's size \(48, 64\)")
    from scipy.io import savemat

    savemat(str(mats / "COCO_train2014_000000000025.mat"), {"fix": np.ones((2, 2))})
    fails(r"000025.mat: no variable 'gaze' \(variables: \['fix'\]\)")
    write_salicon_mat(mats / "COCO_train2014_000000000025.mat", [{"fixations": [[1, 2]]}])
    write_salicon_mat(mats / "COCO_train2014_000000000099.mat", [{"fixations": [[1, 2]]}])
    fails(r"000099.mat: no image named COCO_train2014_000000000099")
    (salicon / "fixations" / "val").mkdir()
    with pytest.raises(DatasetError, match="images folder .*images/val does not exist"):
        import_salicon(salicon, out, split="val")
    (salicon / "images" / "val").mkdir()
    with pytest.raises(DatasetError, match="no .mat fixation files in .*fixations/val"):
        import_salicon(salicon, out, split="val")
