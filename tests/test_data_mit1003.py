"""MIT1003: converting the output of Judd's code, the pysaliency cache, and the raw-only case."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import (
    random_image,
    write_file_stimuli,
    write_fixation_trains,
    write_judd_mat,
)

from deepgaze_hub.data import import_mit1003
from deepgaze_hub.errors import DatasetError


@pytest.fixture
def download(tmp_path):
    root = tmp_path / "mit"
    random_image(root / "ALLSTIMULI" / "i1.jpeg", 30, 40, seed=0)  # (H, W)
    random_image(root / "ALLSTIMULI" / "i2_x.jpeg", 40, 30, seed=1)
    (root / "DATA" / "CNG").mkdir(parents=True)
    (root / "DATA" / "ajs").mkdir(parents=True)
    # first row = forced central fixation; (0, 5) is not strictly inside; (41, 3) is outside
    write_judd_mat(root / "extracted" / "i1.jpeg_CNG.mat", [[20, 15], [3.5, 4.5], [0, 5], [39.9, 29.9], [41, 3]], [10, 60, 120, 240, 480], [100, 200, 300, 400, 500])
    write_judd_mat(root / "extracted" / "i1.jpeg_ajs.mat", [[-1, -1], [10, 10]], [0, 24], [50, 150])  # invalid first fixation
    write_judd_mat(root / "extracted" / "i2_x.jpeg_ajs.mat", [[15, 20], [1, 1], [np.nan, np.nan]], [5, 48, 60], [250, 260, 10])  # NaN: a blink
    return root


def test_judd_output_is_converted_like_the_published_dataset(download, tmp_path):
    ds = import_mit1003(download, tmp_path / "out.h5")
    assert ds.image_names == ["i1.jpeg", "i2_x.jpeg"] and ds.observer_names == ["CNG", "ajs"]
    fix = ds.fixations
    np.testing.assert_array_equal(fix.image, [0, 0, 0, 1])
    np.testing.assert_array_equal(fix.x, [3.5, 39.9, 10.0, 1.0])
    np.testing.assert_array_equal(fix.observer, [0, 0, 1, 1])
    np.testing.assert_allclose(fix.t, [0.25, 1.0, 0.1, 0.2])  # 240 Hz samples -> s
    np.testing.assert_allclose(fix.duration, [0.2, 0.4, 0.15, 0.26])  # ms -> s
    np.testing.assert_array_equal(fix.order, [0, 1, 0, 0])
    assert ds.metadata["outside_count"] == 3 and ds.metadata["time_unit"] == "s"


def test_initial_fixation_can_be_kept(download, tmp_path):
    fix = import_mit1003(download, tmp_path / "out.h5", include_initial_fixation=True).fixations
    np.testing.assert_array_equal(fix.x, [20.0, 3.5, 39.9, 10.0, 15.0, 1.0])


def test_pysaliency_cache_is_preferred(download, tmp_path):
    cache = download / "MIT1003"
    cache.mkdir()
    random_image(cache / "stimuli" / "i1.jpeg", 30, 40, seed=0)
    write_file_stimuli(cache / "stimuli.hdf5", ["stimuli/i1.jpeg"], [(30, 40, 3)])
    write_fixation_trains(cache / "fixations.hdf5", [{"xs": [5.0, 6.0], "ys": [7.0, 8.0], "ts": [0.0, 0.3], "n": 0, "subject": 4, "durations": [0.2, 0.3]}])
    ds = import_mit1003(download, tmp_path / "out.h5")
    assert ds.image_names == ["stimuli/i1.jpeg"] and ds.fixations.x.tolist() == [5.0, 6.0]
    assert ds.metadata["time_unit"] == "s"
    judd = import_mit1003(download, tmp_path / "judd.h5", include_initial_fixation=True)  # no cache with the initial fixation
    assert judd.image_ids[0] == ds.image_ids[0]  # same picture, same id, whatever the route


def test_raw_data_only_explains_the_extraction_step(download, tmp_path):
    for mat in (download / "extracted").iterdir():
        mat.unlink()
    (download / "extracted").rmdir()
    with pytest.raises(DatasetError, match=r"found folders: \['ALLSTIMULI', 'DATA'\].*MATLAB or Octave.*get_mit1003"):
        import_mit1003(download, tmp_path / "out.h5")
    with pytest.raises(DatasetError, match="is not a folder"):
        import_mit1003(tmp_path / "nowhere", tmp_path / "out.h5")


def test_malformed_judd_files(download, tmp_path):
    from scipy.io import savemat

    savemat(str(download / "extracted" / "i2_x.jpeg_ajs.mat"), {"fixations": np.ones((2, 2)), "starts": np.ones((1, 2))})
    with pytest.raises(DatasetError, match=r"i2_x.jpeg_ajs.mat: lacks the variables \['durations'\]"):
        import_mit1003(download, tmp_path / "out.h5")
    write_judd_mat(download / "extracted" / "i2_x.jpeg_ajs.mat", [[1, 2], [3, 4]], [1, 2, 3], [1, 2])
    with pytest.raises(DatasetError, match=r"i2_x.jpeg_ajs.mat: starts must be a numeric vector of 2 values"):
        import_mit1003(download, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()
