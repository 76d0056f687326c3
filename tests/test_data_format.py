"""The dataset file format: writing, validating, lazy and multi-process reading, failure modes."""

from __future__ import annotations

import io
import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub.data import FixationDataset, Fixations
from deepgaze_hub.data.dataset import FORMAT_VERSION
from deepgaze_hub.data.fixations import apply_outside_policy, validate_fixations
from deepgaze_hub.data.stimuli import decode, pixel_id
from deepgaze_hub.errors import DatasetError


def png_bytes(height: int, width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def small_fixations() -> Fixations:
    return Fixations.build(
        image=[1, 0, 1, 0, 2],
        x=[3.5, 0.0, 19.99, 7.25, 1.0],
        y=[2.0, 9.5, 0.5, 3.0, 4.0],
        observer=[0, 1, 1, 1, 2],
        t=[0.1, np.nan, 0.3, 0.2, 0.0],
        duration=[0.2, 0.25, np.nan, 0.3, 0.1],
        scanpath=[0, 1, 2, 1, -1],
        order=[0, 0, 0, 1, -1],
        extra={"pupil": [1.0, 2.0, 3.0, 4.0, np.nan]},
    )


@pytest.fixture
def images():
    return [png_bytes(10, 16, 0), png_bytes(12, 20, 1), png_bytes(8, 8, 2)]


@pytest.fixture
def dataset(tmp_path, images):
    return FixationDataset.create(
        tmp_path / "d.h5", images=images, fixations=small_fixations(), image_names=["a.png", "b.png", "c.png"],
        observer_names=["ann", "bob", "cy"], metadata={"time_unit": "s", "name": "tiny"},
    )


def test_create_and_open_round_trip(dataset, images):
    assert len(dataset) == 3
    assert dataset.image_names == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(dataset.image_sizes, [[10, 16], [12, 20], [8, 8]])
    assert dataset.image_ids == [pixel_id(decode(b, "x")) for b in images]
    assert len(set(dataset.image_ids)) == 3 and all(len(i) == 16 for i in dataset.image_ids)
    assert dataset.image_bytes(1) == images[1]  # stored byte for byte
    image = dataset.load_image(1)
    assert image.shape == (3, 12, 20) and image.dtype == torch.float32 and float(image.max()) <= 255
    # fixations come back sorted by image, keeping their order within an image
    fix = dataset.fixations
    np.testing.assert_array_equal(fix.image, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(fix.x, [0.0, 7.25, 3.5, 19.99, 1.0])
    np.testing.assert_array_equal(fix.order, [0, 1, 0, 0, -1])
    np.testing.assert_array_equal(fix.extra["pupil"], [2.0, 4.0, 1.0, 3.0, np.nan])
    assert np.isnan(fix.t[0]) and fix.duration[3] != fix.duration[3]
    np.testing.assert_array_equal(dataset.fixations_of(1).x, [3.5, 19.99])
    assert len(dataset.fixations_of(2)) == 1
    np.testing.assert_array_equal(dataset.fixation_counts, [2, 2, 1])
    assert dataset.observer_names == ["ann", "bob", "cy"] and dataset.num_observers == 3
    assert dataset.metadata["time_unit"] == "s" and dataset.metadata["name"] == "tiny"
    assert dataset.true_log_density(0) is None and not dataset.has_truth
    with pytest.raises(IndexError):
        dataset.load_image(3)


def test_layout_is_the_documented_one(dataset):
    with h5py.File(dataset.path, "r") as f:
        assert f.attrs["format"] == "deepgaze-hub fixation dataset" and f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["metadata"])["created_with"].startswith("deepgaze-hub")
        for name in ("images/encoded", "images/name", "images/id", "images/size", "fixations/offsets", "fixations/extra/pupil", "observers/name"):
            assert name in f
        np.testing.assert_array_equal(f["fixations/offsets"][()], [0, 2, 4, 5])
        assert f["fixations/x"].dtype == np.float64 and f["fixations/image"].dtype == np.int64


def test_pickled_dataset_reopens_lazily_and_skips_cached_tables(dataset):
    dataset.load_image(0)  # opens a handle in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._handle is None and clone._fixations is None
    assert torch.equal(clone.load_image(2), dataset.load_image(2))
    assert clone.fixations_of(0).equals(dataset.fixations_of(0))  # read from the file, not a cache
    assert clone.fixations.equals(dataset.fixations)


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset.load_image(i).sum(), len(self.dataset.fixations_of(i))


def test_dataloader_workers_read_the_file_each_with_its_own_handle(dataset):
    dataset.load_image(0)  # the parent's handle must not be used by forked workers
    loader = torch.utils.data.DataLoader(_Images(dataset), batch_size=None, num_workers=2)
    got = sorted((float(total), int(count)) for total, count in loader)
    expected = sorted((float(dataset.load_image(i).sum()), len(dataset.fixations_of(i))) for i in range(len(dataset)))
    assert got == expected


def test_true_log_densities_are_stored_normalised(tmp_path, images):
    truths = []
    for b in images:
        h, w = Image.open(io.BytesIO(b)).size[::-1]
        values = np.random.default_rng(h).normal(size=(h, w))
        truths.append(values - np.log(np.exp(values).sum()))
    ds = FixationDataset.create(tmp_path / "t.h5", images=images, fixations=Fixations.empty(), true_log_densities=truths)
    assert ds.has_truth and len(ds.fixations) == 0
    for i, truth in enumerate(truths):
        got = ds.true_log_density(i)
        assert got.dtype == np.float64 and abs(np.exp(got).sum() - 1) < 1e-12
        np.testing.assert_allclose(got, truth, atol=1e-5)
    with pytest.raises(DatasetError, match="not a normalised log density"):
        FixationDataset.create(tmp_path / "u.h5", images=images, fixations=Fixations.empty(), true_log_densities=[t + 1 for t in truths])
    with pytest.raises(DatasetError, match="shape"):
        FixationDataset.create(tmp_path / "v.h5", images=images, fixations=Fixations.empty(), true_log_densities=[truths[1]] * 3)
    assert not (tmp_path / "u.h5").exists() and not (tmp_path / "v.h5").exists()


def test_ids_depend_on_pixels_not_encoding(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    encodings = []
    for kwargs in ({"compress_level": 0}, {"compress_level": 9}):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", **kwargs)
        encodings.append(buffer.getvalue())
    assert encodings[0] != encodings[1]
    a = FixationDataset.create(tmp_path / "a.h5", images=[encodings[0]], fixations=Fixations.empty())
    b = FixationDataset.create(tmp_path / "b.h5", images=[encodings[1]], fixations=Fixations.empty())
    assert a.image_ids == b.image_ids


def test_failed_create_leaves_nothing_and_keeps_an_existing_file(tmp_path, images, dataset):
    before = dataset.path.read_bytes()
    outside = Fixations.build(image=[0], x=[16.0], y=[1.0])  # x == W is outside
    with pytest.raises(DatasetError, match="outside their image"):
        FixationDataset.create(dataset.path, images=images, fixations=outside)
    with pytest.raises(DatasetError, match="image 1 .*corrupt|truncated"):
        FixationDataset.create(tmp_path / "bad.h5", images=[images[0], images[1][:60], images[2]], fixations=Fixations.empty())
    with pytest.raises(DatasetError, match="refer to images that do not exist"):
        FixationDataset.create(tmp_path / "bad.h5", images=images, fixations=Fixations.build(image=[3], x=[1.0], y=[1.0]))
    with pytest.raises(DatasetError, match="unique"):
        FixationDataset.create(tmp_path / "bad.h5", images=images, fixations=Fixations.empty(), image_names=["a", "a", "b"])
    with pytest.raises(DatasetError, match="decodes to"):
        FixationDataset.create(tmp_path / "bad.h5", images=images, fixations=Fixations.empty(), image_sizes=[[10, 16], [20, 12], [8, 8]])
    assert dataset.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


def test_open_rejects_truncated_foreign_newer_and_tampered_files(tmp_path, dataset):
    data = dataset.path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated.h5"):
        FixationDataset.open(truncated)
    with pytest.raises(DatasetError, match="no such dataset file"):
        FixationDataset.open(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(DatasetError, match="not a deepgaze-hub fixation dataset"):
        FixationDataset.open(foreign)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DatasetError, match="newer"):
        FixationDataset.open(newer)
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(data)
    with h5py.File(tampered, "a") as f:
        f["fixations/y"][0] = 99.0
    with pytest.raises(DatasetError, match="outside their image"):
        FixationDataset.open(tampered)
    with h5py.File(tampered, "a") as f:
        f["fixations/y"][0] = 1.0
        del f["fixations/observer"]
    with pytest.raises(DatasetError, match="lacks 'fixations/observer'"):
        FixationDataset.open(tampered)


def test_outside_policy_drop_clip_error():
    fix = Fixations.build(image=[0, 0, 0, 1], x=[-0.5, 3.0, 10.0, 2.0], y=[1.0, 1.0, 1.0, 7.0])
    sizes = np.array([[5, 10], [8, 4]])
    dropped, count = apply_outside_policy(fix, sizes, "drop", "here")
    assert count == 2 and dropped.x.tolist() == [3.0, 2.0]
    clipped, count = apply_outside_policy(fix, sizes, "clip", "here")
    assert count == 2 and clipped.x[0] == 0.0 and 9.999 < clipped.x[2] < 10.0 and int(clipped.x[2]) == 9
    validate_fixations(clipped, sizes, "here")
    with pytest.raises(DatasetError, match="here: 2 of 4 fixations lie outside.*x=-0.5"):
        apply_outside_policy(fix, sizes, "error", "here")
    nan = Fixations.build(image=[0], x=[np.nan], y=[1.0])
    with pytest.raises(DatasetError, match="NaN or infinite coordinates"):
        apply_outside_policy(nan, sizes, "drop", "here")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"observer": [-1]}, "negative observer"),
        ({"duration": [-0.1]}, "negative duration"),
        ({"t": [np.inf]}, "infinite t"),
        ({"scanpath": [3], "order": [-1]}, "inconsistent scanpath"),
    ],
)
def test_validation_messages(change, message):
    fields = {"image": [0], "x": [1.0], "y": [1.0]}
    fields.update(change)
    with pytest.raises(DatasetError, match=message):
        validate_fixations(Fixations.build(**fields), np.array([[4, 4]]), "f.h5")


def test_scanpaths_must_be_consistent():
    sizes = np.array([[4, 4], [4, 4]])
    repeated = Fixations.build(image=[0, 0], x=[1.0, 2.0], y=[1.0, 1.0], scanpath=[5, 5], order=[0, 0])
    with pytest.raises(DatasetError, match="repeat a position"):
        validate_fixations(repeated, sizes, "f")
    spanning = Fixations.build(image=[0, 1], x=[1.0, 2.0], y=[1.0, 1.0], scanpath=[5, 5], order=[0, 1])
    with pytest.raises(DatasetError, match="spans several images"):
        validate_fixations(spanning, sizes, "f")


def test_fixations_record_operations():
    fix = small_fixations()
    assert len(fix) == 5 and fix.has_scanpaths
    part = fix[np.array([True, False, True, False, False])]
    assert part.x.tolist() == [3.5, 19.99] and part.extra["pupil"].tolist() == [1.0, 3.0]
    joined = Fixations.concatenate([part, Fixations.build(image=[0], x=[1.0], y=[2.0])])
    assert len(joined) == 3 and np.isnan(joined.extra["pupil"][2])
    assert fix.equals(fix[np.arange(5)]) and not fix.equals(part)
    with pytest.raises(DatasetError, match="has 2 entries"):
        Fixations.build(image=[0, 1, 2], x=[1.0, 2.0], y=[1.0, 2.0, 3.0])
