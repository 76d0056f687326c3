"""Importing pysaliency HDF5 files of every type and version, exporting, and malformed input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from datafiles import (
    random_image,
    write_file_stimuli,
    write_fixation_trains,
    write_fixations,
    write_scanpath_fixations,
    write_stimuli,
)

from deepgaze_hub.data import (
    FixationDataset,
    export_pysaliency,
    import_pysaliency,
)
from deepgaze_hub.data.stimuli import pixel_id
from deepgaze_hub.errors import DatasetError

SIZES = [(30, 40), (24, 24), (36, 20)]  # (H, W)


@pytest.fixture
def file_stimuli(tmp_path):
    names = []
    for i, (h, w) in enumerate(SIZES):
        name = f"stimuli/img{i}.png" if i != 1 else f"stimuli/img{i}.jpg"
        random_image(tmp_path / name, h, w, seed=i, mode="L" if i == 2 else "RGB")
        names.append(name)
    shapes = [(h, w, 3) if i != 2 else (h, w) for i, (h, w) in enumerate(SIZES)]
    write_file_stimuli(tmp_path / "stimuli.hdf5", names, shapes)
    return tmp_path / "stimuli.hdf5", names


def trains():
    return [
        {"xs": [1.5, 30.0, 39.9], "ys": [2.0, 20.0, 29.0], "ts": [0.0, 0.3, 0.6], "n": 0, "subject": 0, "durations": [0.25, 0.2, 0.3]},
        {"xs": [10.0, 12.5], "ys": [11.0, 3.0], "ts": [0.0, 0.4], "n": 0, "subject": 1, "durations": [0.3, 0.35]},
        {"xs": [5.0], "ys": [5.0], "ts": [0.0], "n": 2, "subject": 1, "durations": [0.5]},
        {"xs": [23.0, 45.0, 1.0], "ys": [23.0, 1.0, 1.0], "ts": [0.0, 0.1, 0.2], "n": 1, "subject": 2, "durations": [0.1, 0.1, 0.1]},  # 45 is outside
    ]


def same_dataset(a: FixationDataset, b: FixationDataset) -> bool:
    return (
        a.image_ids == b.image_ids and a.image_names == b.image_names and np.array_equal(a.image_sizes, b.image_sizes)
        and a.fixations.equals(b.fixations) and a.observer_names == b.observer_names
        and all(a.image_bytes(i) == b.image_bytes(i) for i in range(len(a)))
    )


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3"])
@pytest.mark.parametrize("as_bytes", [True, False])
def test_fixation_trains_all_versions(tmp_path, file_stimuli, version, as_bytes):
    stimuli, names = file_stimuli
    write_fixation_trains(tmp_path / "fix.hdf5", trains(), version=version, as_bytes=as_bytes, scanpath_attributes={"task": [1, 1, 2, 2]} if version >= "1.1" else None)
    ds = import_pysaliency(stimuli, tmp_path / "fix.hdf5", tmp_path / "out.h5")
    assert ds.image_names == names and ds.image_sizes.tolist() == [list(s) for s in SIZES]
    fix = ds.fixations
    assert len(fix) == 8 and ds.metadata["outside_count"] == 1 and ds.metadata["outside_policy"] == "drop"
    np.testing.assert_array_equal(fix.image, [0, 0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(fix.x, [1.5, 30.0, 39.9, 10.0, 12.5, 23.0, 1.0, 5.0])
    np.testing.assert_array_equal(fix.observer, [0, 0, 0, 1, 1, 2, 2, 1])
    np.testing.assert_array_equal(fix.scanpath, [0, 0, 0, 1, 1, 3, 3, 2])
    np.testing.assert_array_equal(fix.order, [0, 1, 2, 0, 1, 0, 2, 0])  # position in the recorded train
    np.testing.assert_array_equal(fix.t, [0.0, 0.3, 0.6, 0.0, 0.4, 0.0, 0.2, 0.0])
    if version >= "1.2":
        np.testing.assert_array_equal(fix.duration, [0.25, 0.2, 0.3, 0.3, 0.35, 0.1, 0.1, 0.5])
    else:
        assert np.isnan(fix.duration).all()
    assert ds.metadata.get("ignored", []) == (["task"] if version >= "1.1" else [])


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_flat_fixations_all_versions(tmp_path, file_stimuli, version):
    stimuli, _ = file_stimuli
    x, y = [1.0, 2.5, 3.0, 100.0], [4.0, 5.0, 6.0, 1.0]
    write_fixations(
        tmp_path / "fix.hdf5", x, y, t=[0.1, 0.2, 0.3, 0.4], n=[2, 0, 0, 0], subject=[3, 1, 1, 0], version=version,
        as_bytes=version != "1.1", attributes={"duration": [0.2, 0.3, 0.4, 0.5], "scanpath_index": [7, 4, 4, 5], "label": np.array([b"a", b"b", b"c", b"d"])},
        history=[0, 0, 1, 0],
    )
    ds = import_pysaliency(stimuli, tmp_path / "fix.hdf5", tmp_path / "out.h5", outside="clip")
    fix = ds.fixations
    assert ds.metadata["outside_count"] == 1 and ds.metadata["ignored"] == ["label"]
    np.testing.assert_array_equal(fix.image, [0, 0, 0, 2])
    np.testing.assert_array_equal(fix.x[:2], [2.5, 3.0])
    assert 39.99 < fix.x[2] < 40.0  # clipped into the 40 px wide image
    np.testing.assert_array_equal(fix.observer, [1, 1, 0, 3])
    np.testing.assert_array_equal(fix.scanpath, [4, 4, 5, 7])
    np.testing.assert_array_equal(fix.order, [0, 1, 0, 0])
    np.testing.assert_array_equal(fix.duration, [0.3, 0.4, 0.5, 0.2])


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_stimuli_arrays_become_lossless_pngs(tmp_path, version):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (12, 9, 3), dtype=np.uint8), rng.integers(0, 256, (7, 11), dtype=np.uint8)]
    write_stimuli(tmp_path / "stimuli.hdf5", arrays, version=version, as_bytes=False)
    write_fixations(tmp_path / "fix.hdf5", [1.0, 2.0], [3.0, 4.0], [0, 0], [0, 1], [0, 0])
    ds = import_pysaliency(tmp_path / "stimuli.hdf5", tmp_path / "fix.hdf5", tmp_path / "out.h5")
    assert ds.image_names == ["000000.png", "000001.png"]
    np.testing.assert_array_equal(ds.load_image(0).permute(1, 2, 0).numpy(), arrays[0])
    np.testing.assert_array_equal(ds.load_image(1)[0].numpy(), arrays[1])
    assert ds.image_ids[0] == pixel_id(arrays[0])


def test_file_stimuli_version_1_with_absolute_paths(tmp_path):
    path = random_image(tmp_path / "elsewhere" / "a.png", 10, 12, seed=3)
    write_file_stimuli(tmp_path / "stimuli.hdf5", [str(path)], [(10, 12, 3)], version="1.0")
    write_fixations(tmp_path / "fix.hdf5", [1.0], [1.0], [0], [0], [0])
    ds = import_pysaliency(tmp_path / "stimuli.hdf5", tmp_path / "fix.hdf5", tmp_path / "out.h5")
    assert ds.image_sizes.tolist() == [[10, 12]]


def test_scanpath_fixations(tmp_path, file_stimuli):
    stimuli, _ = file_stimuli
    write_scanpath_fixations(tmp_path / "fix.hdf5", trains()[:3])
    fix = import_pysaliency(stimuli, tmp_path / "fix.hdf5", tmp_path / "out.h5").fixations
    np.testing.assert_array_equal(fix.duration, [0.25, 0.2, 0.3, 0.3, 0.35, 0.5])
    np.testing.assert_array_equal(fix.observer, [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("kind, outside, written", [("trains", "clip", "FixationTrains"), ("trains", "drop", "Fixations"), ("flat", "drop", "Fixations")])
def test_import_export_import_is_lossless(tmp_path, file_stimuli, kind, outside, written):
    """Complete scanpaths export as FixationTrains; one with a dropped fixation (a gap) as Fixations."""
    stimuli, _ = file_stimuli
    if kind == "trains":
        write_fixation_trains(tmp_path / "fix.hdf5", trains())
    else:
        write_fixations(
            tmp_path / "fix.hdf5", [1.0, 2.5, 7.0], [4.0, 5.0, 6.0], [0.1, np.nan, 0.3], [2, 0, 0], [3, 1, 1],
            attributes={"duration": [0.2, np.nan, 0.4], "pupil": [3.0, 2.0, 1.0], "scanpath_index": [-1, 0, 0]}, history=[0, 0, 1],
        )
    first = import_pysaliency(stimuli, tmp_path / "fix.hdf5", tmp_path / "first.h5", outside=outside)
    export = tmp_path / "export"
    assert export_pysaliency(first, export / "stimuli.hdf5", export / "fixations.hdf5") == written
    second = import_pysaliency(export / "stimuli.hdf5", export / "fixations.hdf5", tmp_path / "second.h5")
    assert same_dataset(first, second)
    with h5py.File(export / "stimuli.hdf5", "r") as f:  # what pysaliency's reader needs
        assert f.attrs["type"] == b"FileStimuli" and f.attrs["version"] == b"2.1" and f.attrs["size"] == 3
        assert [tuple(s) for s in f["shapes"][()]] == [(30, 40, 3), (24, 24, 3), (36, 20)]


def test_synthetic_dataset_round_trips_through_pysaliency(tmp_path):
    from deepgaze_hub.data import make_synthetic_dataset

    first = make_synthetic_dataset(tmp_path / "syn.h5", 3, size=(24, 32), num_observers=2, seed=4)
    export_pysaliency(first, tmp_path / "p" / "stimuli.hdf5", tmp_path / "p" / "fixations.hdf5")
    second = import_pysaliency(tmp_path / "p" / "stimuli.hdf5", tmp_path / "p" / "fixations.hdf5", tmp_path / "again.h5")
    assert same_dataset(first, second)


def test_malformed_pysaliency_files_name_the_file_and_leave_nothing(tmp_path, file_stimuli):
    stimuli, _ = file_stimuli
    out = tmp_path / "out.h5"
    write_fixation_trains(tmp_path / "fix.hdf5", trains(), version="1.3")

    def fails(fixations, message, stimuli_path=stimuli):
        with pytest.raises(DatasetError, match=message):
            import_pysaliency(stimuli_path, fixations, out)
        assert not out.exists() and not list(tmp_path.glob("*.partial"))

    wrong = tmp_path / "wrong.hdf5"
    write_fixation_trains(wrong, trains(), version="9.9")
    fails(wrong, r"wrong.hdf5: FixationTrains format version '9.9' is not supported")
    fails(stimuli, r"stimuli.hdf5: pysaliency type 'FileStimuli' where one of .*Fixations")
    with h5py.File(wrong, "a") as f:
        f.attrs["version"] = b"1.3"
        del f["train_ys"]
    fails(wrong, r"wrong.hdf5: dataset 'train_ys' is missing")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes((tmp_path / "fix.hdf5").read_bytes()[:1500])
    fails(truncated, r"truncated.hdf5: .*truncated")
    ragged = tmp_path / "ragged.hdf5"
    write_fixations(ragged, [1.0, 2.0], [1.0], [0.0, 0.0], [0, 0], [0, 0])
    fails(ragged, r"ragged.hdf5: fixations: field 'y' has 1 entries, 'image' has 2")
    unknown_image = tmp_path / "unknown.hdf5"
    write_fixations(unknown_image, [1.0], [1.0], [0.0], [5], [0])
    fails(unknown_image, r"refer to images that do not exist .*image index 5")
    # a stimulus file whose real size differs from the recorded shape
    write_file_stimuli(tmp_path / "lying.hdf5", ["stimuli/img0.png"], [(40, 30, 3)])
    fails(tmp_path / "fix.hdf5", r"img0.png is \(30, 40\) \(H, W\) as displayed .* records \(40, 30\)", stimuli_path=tmp_path / "lying.hdf5")
    write_file_stimuli(tmp_path / "gone.hdf5", ["stimuli/none.png"], [(4, 4, 3)])
    fails(tmp_path / "fix.hdf5", r"none.png does not exist", stimuli_path=tmp_path / "gone.hdf5")
