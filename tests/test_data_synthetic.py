"""The synthetic generator (determinism, known truth) and the default dataset."""

from __future__ import annotations

import numpy as np
import pytest

from deepgaze_hub.data import (
    FixationDataset,
    default_dataset,
    embedded_dataset_path,
    make_synthetic_dataset,
)
from deepgaze_hub.data.embedded import EMBEDDED_SETTINGS
from deepgaze_hub.data.synthetic import SyntheticConfig, make_scene
from deepgaze_hub.errors import DatasetError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "s.h5", 6, size=(48, 64), num_observers=5, seed=3)


def test_generation_is_deterministic_and_image_wise(synthetic, tmp_path):
    again = make_synthetic_dataset(tmp_path / "again.h5", 6, size=(48, 64), num_observers=5, seed=3)
    assert again.image_ids == synthetic.image_ids and again.fixations.equals(synthetic.fixations)
    longer = make_synthetic_dataset(tmp_path / "longer.h5", 8, size=(48, 64), num_observers=5, seed=3)
    assert longer.image_ids[:6] == synthetic.image_ids  # image i does not depend on num_images
    np.testing.assert_array_equal(longer.fixations_of(5).x, synthetic.fixations_of(5).x)
    other = make_synthetic_dataset(tmp_path / "other.h5", 6, size=(48, 64), num_observers=5, seed=4)
    assert not set(other.image_ids) & set(synthetic.image_ids)


def test_contents_and_metadata(synthetic):
    assert len(synthetic) == 6 and synthetic.has_truth and synthetic.metadata["time_unit"] == "s"
    assert synthetic.metadata["synthetic"]["seed"] == 3 and synthetic.image_sizes.tolist() == [[48, 64]] * 6
    fix = synthetic.fixations
    counts = np.unique(np.stack([fix.image, fix.observer]), axis=1, return_counts=True)[1]
    assert counts.min() >= 6 and counts.max() <= 12 and len(counts) == 30  # every observer on every image
    assert (np.diff(fix.t[fix.scanpath == fix.scanpath[0]]) > 0).all()
    assert (fix.duration > 0).all()
    assert len(set(synthetic.image_ids)) == 6


def test_true_density_is_normalised_and_explains_the_fixations(synthetic):
    uniform = np.log(48 * 64)
    gains = []
    for i in range(len(synthetic)):
        truth = synthetic.true_log_density(i)
        assert truth.shape == (48, 64) and abs(np.exp(truth).sum() - 1) < 1e-9
        fix = synthetic.fixations_of(i)
        gains.append(truth[fix.y.astype(int), fix.x.astype(int)].mean() + uniform)
    assert np.mean(gains) > 1.0  # nats per fixation above uniform: the fixations follow the truth


def test_truth_depends_on_content_and_has_a_centre_bias():
    config = SyntheticConfig(size=(96, 128), seed=11)
    densities = [np.exp(make_scene(config, i).log_density) for i in range(12)]
    mean = np.mean(densities, axis=0)
    centre, border = mean[32:64, 43:85].mean(), np.concatenate([mean[:10].ravel(), mean[-10:].ravel()]).mean()
    assert centre > 2 * border  # centre bias
    scene = make_scene(config, 0)
    image_contrast = np.abs(scene.image.astype(float) - np.median(scene.image, axis=(0, 1))).sum(-1)
    top = np.exp(scene.log_density) > np.quantile(np.exp(scene.log_density), 0.99)
    assert image_contrast[top].mean() > image_contrast.mean()  # mass sits on things that stand out
    assert not np.allclose(densities[0], densities[1])


def test_invalid_settings():
    with pytest.raises(DatasetError, match="fixations_per_observer"):
        make_synthetic_dataset("unused.h5", 2, fixations_per_observer=(5, 2))
    with pytest.raises(DatasetError, match="at least 16 x 16"):
        make_synthetic_dataset("unused.h5", 2, size=(8, 8))


def test_default_dataset_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGAZE_HUB_CACHE", str(tmp_path / "cache"))
    path = embedded_dataset_path()
    assert path.parent == tmp_path / "cache" / "datasets" and path.is_file()
    stamp = path.stat().st_mtime_ns
    ds = default_dataset()
    assert path.stat().st_mtime_ns == stamp  # reused, not regenerated
    assert len(ds) == EMBEDDED_SETTINGS["num_images"] == 40 and ds.image_sizes.tolist() == [[192, 256]] * 40
    assert ds.has_truth and ds.num_observers == 8
    path.write_bytes(b"damaged")
    assert len(FixationDataset.open(embedded_dataset_path())) == 40  # a damaged cache file is regenerated
    assert default_dataset(tmp_path / "elsewhere").image_ids == ds.image_ids
