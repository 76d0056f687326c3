"""Exports: pysaliency's HDF5 model layout and MIT benchmark submission images."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub.evaluation import export_mit_submission, export_pysaliency_hdf5
from deepgaze_hub.errors import EvaluationError
from deepgaze_hub.evaluation.export import (
    minimal_unique_names,
    saliency_map_to_uint8,
)


def log_density(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(shape, generator=generator, dtype=torch.float64)
    return values - values.logsumexp((0, 1))


def test_minimal_unique_names_follow_pysaliency():
    assert minimal_unique_names(["/data/mit/a.jpg", "/data/mit/b.jpg"]) == ["a.jpg", "b.jpg"]
    assert minimal_unique_names(["/d/x/a.jpg", "/d/y/a.jpg"]) == ["x/a.jpg", "y/a.jpg"]
    assert minimal_unique_names(["/d/x/a.jpg"]) == ["a.jpg"]
    assert minimal_unique_names(["a.jpg", "b.jpg"]) == ["a.jpg", "b.jpg"]


def test_hdf5_model_layout(tmp_path):
    maps = [log_density((6, 8), 0), log_density((5, 7), 1).float(), log_density((6, 8), 2)]
    files = ["/stimuli/set1/i1.jpg", "/stimuli/set2/i1.jpg", "/stimuli/set2/i2.png"]
    path = export_pysaliency_hdf5(tmp_path / "model.hdf5", files, (m for m in maps))
    with h5py.File(path, "r") as handle:
        assert handle.attrs["type"] == "pysaliency.precomputed_models.predictions"
        assert handle.attrs["version"] == "1.0"
        assert int(handle.attrs["downscale_factor"]) == 1
        assert handle.attrs["dtype"] == "float64"
        for name, expected in zip(["set1/i1.jpg", "set2/i1.jpg", "set2/i2.png"], maps):
            dataset = handle[name]
            assert dataset.compression == "gzip"
            assert dataset.dtype == expected.numpy().dtype
            assert np.array_equal(dataset[()], expected.numpy())
            assert abs(float(torch.logsumexp(torch.as_tensor(dataset[()]).flatten(), 0))) < 1e-6
        assert isinstance(handle["set1"], h5py.Group)


def test_hdf5_refuses_unnormalised_maps_and_count_mismatch_without_leaving_files(tmp_path):
    target = tmp_path / "model.hdf5"
    bad = log_density((4, 4), 0) + 0.5
    with pytest.raises(EvaluationError, match="not a normalised log density"):
        export_pysaliency_hdf5(target, ["a.jpg", "b.jpg"], [log_density((4, 4), 1), bad])
    with pytest.raises(EvaluationError, match="match one to one"):
        export_pysaliency_hdf5(target, ["a.jpg", "b.jpg"], [log_density((4, 4), 1)])
    with pytest.raises(EvaluationError, match="more maps"):
        export_pysaliency_hdf5(target, ["a.jpg"], iter([log_density((4, 4), 1), log_density((4, 4), 2)]))
    with pytest.raises(EvaluationError, match="same HDF5 dataset names"):
        export_pysaliency_hdf5(target, ["x/a.jpg", "x/a.jpg"], [log_density((4, 4), 1)] * 2)
    assert list(tmp_path.iterdir()) == []
    saliency = export_pysaliency_hdf5(target, ["a.jpg"], [bad.exp()], log_densities=False, dtype="float32")
    with h5py.File(saliency, "r") as handle:
        assert handle["a.jpg"].dtype == np.float32


def test_mit_submission_images(tmp_path):
    density = log_density((12, 16), 3).exp()
    signed = torch.linspace(-1, 3, 20).reshape(4, 5)
    paths = export_mit_submission(tmp_path / "sub", ["/imgs/i05.jpeg", "/imgs/i07.png"], [density, signed])
    assert [p.name for p in paths] == ["i05.jpg", "i07.jpg"]
    first = np.asarray(Image.open(paths[0]))
    assert first.shape == (12, 16) and first.dtype == np.uint8 and Image.open(paths[0]).mode == "L"
    expected = np.round(density.numpy() * 255 / density.numpy().max())
    assert np.abs(first.astype(float) - expected).mean() < 2.0  # JPEG is lossy
    lossless = export_mit_submission(tmp_path / "png", ["i07.png"], [signed], image_format="png")
    values = np.asarray(Image.open(lossless[0]))
    assert values.min() == 0 and values.max() == 255
    assert np.array_equal(values, np.round((signed.numpy() + 1) * 255 / 4).astype(np.uint8))


def test_uint8_rule_and_submission_errors(tmp_path):
    assert np.array_equal(saliency_map_to_uint8(np.zeros((2, 3))), np.zeros((2, 3), dtype=np.uint8))
    assert saliency_map_to_uint8(np.array([[0.0, 0.5, 1.0]])).tolist() == [[0, 128, 255]]
    with pytest.raises(EvaluationError, match="same submission file names"):
        export_mit_submission(tmp_path, ["a/x.jpg", "b/x.png"], [np.ones((2, 2))] * 2)
    with pytest.raises(EvaluationError, match="NaN or infinite"):
        export_mit_submission(tmp_path, ["x.jpg"], [np.full((2, 2), math.inf)])
    with pytest.raises(EvaluationError, match=r"\(H, W\)"):
        export_mit_submission(tmp_path, ["x.jpg"], [np.ones((2, 2, 3))])
