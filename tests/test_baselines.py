"""Centre bias and gold standard: checked against direct evaluations of their defining formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from scipy.special import ndtr

from deepgaze_hub.baselines import CenterBiasModel, fit_centerbias, fit_gold_standard
from deepgaze_hub.data import Fixations, make_synthetic_dataset
from deepgaze_hub.data.sampling import sample_fixations
from deepgaze_hub.errors import DatasetError

SIZES = np.array([[30, 40], [40, 30], [24, 24], [36, 48], [30, 40], [20, 50], [30, 40], [44, 22], [30, 30], [16, 40], [30, 40], [28, 36]])


def gaussian_log_density(size, sigma=0.15, uniform=0.1):
    h, w = size
    y = (np.arange(h) + 0.5) / h - 0.5
    x = (np.arange(w) + 0.5) / w - 0.5
    g = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return np.log((1 - uniform) * g / g.sum() + uniform / (h * w))


def sample(sizes, per_image, seed, observers=3):
    parts = []
    for i, size in enumerate(sizes):
        xs, ys = sample_fixations(gaussian_log_density(size), per_image, seed=seed * 1000 + i)
        parts.append(Fixations.build(image=np.full(per_image, i), x=xs, y=ys, observer=np.arange(per_image) % observers))
    return Fixations.concatenate(parts), np.asarray(sizes)


def mass(low, high, centre, h):
    return ndtr((high - centre) / h) - ndtr((low - centre) / h)


def naive_centerbias_ll(fix, sizes, grid, h, w, same_group):
    """Mean held-out log density ratio, fixation by fixation, straight from the definition."""
    size = sizes[fix.image]
    bx = np.clip((fix.x / size[:, 1] * grid).astype(int), 0, grid - 1)
    by = np.clip((fix.y / size[:, 0] * grid).astype(int), 0, grid - 1)
    cx, cy = (bx + 0.5) / grid, (by + 0.5) / grid
    total = 0.0
    for j in range(len(fix)):
        others = ~same_group(fix.image, fix.image[j])
        cell = mass(bx[j] / grid, (bx[j] + 1) / grid, cx[others], h) * mass(by[j] / grid, (by[j] + 1) / grid, cy[others], h)
        inside = mass(0, 1, cx[others], h) * mass(0, 1, cy[others], h)
        ratio = cell.sum() / inside.sum() * grid * grid
        total += math.log((1 - w) * ratio + w)
    return total / len(fix)


@pytest.fixture(scope="module")
def small():
    return sample(SIZES[:5], 6, seed=1)


def test_centerbias_fit_maximises_the_leave_one_image_out_likelihood(small):
    fix, sizes = small
    model = fit_centerbias((fix, sizes), grid_size=16)
    assert model.cv == "leave-one-image-out" and model.histogram.shape == (16, 16) and model.histogram.sum() == len(fix)

    def naive(h, w):
        return naive_centerbias_ll(fix, sizes, 16, h, w, lambda images, own: images == own)

    assert model.cv_log_likelihood == pytest.approx(naive(model.bandwidth, model.uniform_weight), abs=1e-9)
    for h, w in [(model.bandwidth * 1.05, model.uniform_weight), (model.bandwidth / 1.05, model.uniform_weight), (model.bandwidth, min(1.0, model.uniform_weight * 2 + 1e-3))]:
        assert naive(h, w) < model.cv_log_likelihood


def test_centerbias_kfold_fallback(small):
    fix, sizes = sample(SIZES, 5, seed=2)
    model = fit_centerbias((fix, sizes), grid_size=16, max_pairs=0)
    assert model.cv == "10-fold over images"
    naive = naive_centerbias_ll(fix, sizes, 16, model.bandwidth, model.uniform_weight, lambda images, own: images % 10 == own % 10)
    assert model.cv_log_likelihood == pytest.approx(naive, abs=1e-9)


def test_centerbias_maps_templates_and_likelihoods_agree(small):
    fix, sizes = small
    model = fit_centerbias((fix, sizes), grid_size=16)
    size = (7, 9)
    log_density = model.log_density(size)
    assert log_density.shape == size and log_density.dtype == torch.float32
    assert abs(float(log_density.double().exp().sum()) - 1) < 1e-6
    # direct evaluation of the mixture at every pixel
    hist = model.histogram.numpy()
    centres = (np.arange(16) + 0.5) / 16
    by, bx = np.nonzero(hist)
    counts = hist[by, bx]
    h = model.bandwidth
    inside = (counts * mass(0, 1, centres[bx], h) * mass(0, 1, centres[by], h)).sum()
    expected = np.empty(size)
    for r in range(size[0]):
        for c in range(size[1]):
            kde = (counts * mass(c / size[1], (c + 1) / size[1], centres[bx], h) * mass(r / size[0], (r + 1) / size[0], centres[by], h)).sum() / inside
            expected[r, c] = (1 - model.uniform_weight) * kde + model.uniform_weight / (size[0] * size[1])
    np.testing.assert_allclose(log_density.numpy(), np.log(expected), atol=1e-5)
    # per-fixation likelihoods read the map of each image's size
    ll = model.log_likelihoods((fix, sizes))
    for j in range(len(fix)):
        own = model.log_density(tuple(sizes[fix.image[j]]))
        assert ll[j] == pytest.approx(float(own[int(fix.y[j]), int(fix.x[j])]), abs=1e-5)
    assert model.template().shape == (256, 256) and model.template((20, 30)).shape == (20, 30)


def test_centerbias_recovers_a_known_density_and_fits_the_model_template():
    fix, sizes = sample(SIZES, 150, seed=3)
    model = fit_centerbias((fix, sizes))
    assert 0.02 < model.uniform_weight < 0.4 and 0.03 < model.bandwidth < 0.2
    fresh, _ = sample(SIZES, 150, seed=4)
    fitted = model.log_likelihoods((fresh, sizes)).mean()
    maps = [gaussian_log_density(size) for size in sizes]
    truth = np.mean([maps[i][int(y), int(x)] for i, x, y in zip(fresh.image, fresh.x, fresh.y)])
    assert truth - 0.05 < fitted <= truth + 0.02  # close to the true density, on held-out samples
    deepgaze = make_tiny_model()
    deepgaze.set_centerbias(model.template())
    resized = deepgaze.centerbias((30, 40)).double().exp()
    direct = model.log_density((30, 40)).double().exp()
    assert float((resized - direct).abs().sum()) < 0.02  # total variation of the stored template vs direct


def test_centerbias_save_load(tmp_path, small):
    model = fit_centerbias(small, grid_size=16)
    model.save(tmp_path / "cb.npz")
    loaded = CenterBiasModel.load(tmp_path / "cb.npz")
    assert (loaded.bandwidth, loaded.uniform_weight, loaded.cv, loaded.cv_log_likelihood) == (model.bandwidth, model.uniform_weight, model.cv, model.cv_log_likelihood)
    assert torch.equal(loaded.log_density((9, 11)), model.log_density((9, 11)))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="bad.npz: not a centre-bias file"):
        CenterBiasModel.load(tmp_path / "bad.npz")


def test_gold_standard_matches_its_definition(small):
    fix, sizes = small
    centerbias = fit_centerbias((fix, sizes), grid_size=16)
    gold = fit_gold_standard((fix, sizes), centerbias)
    ll = gold.log_likelihoods((fix, sizes))
    cb = np.exp(centerbias.log_likelihoods((fix, sizes)))
    h, a = gold.bandwidth, gold.centerbias_weight
    for j in range(len(fix)):
        H, W = sizes[fix.image[j]]
        others = (fix.image == fix.image[j]) & (fix.observer != fix.observer[j])
        u, v = fix.x[others] / W, fix.y[others] / H
        c, r = int(fix.x[j]), int(fix.y[j])
        kde = (mass(c / W, (c + 1) / W, u, h) * mass(r / H, (r + 1) / H, v, h)).sum() / (mass(0, 1, u, h) * mass(0, 1, v, h)).sum()
        assert ll[j] == pytest.approx(math.log((1 - a) * kde + a * cb[j]), abs=1e-9)
        density = gold.log_density((fix, sizes), fix.image[j], observer=fix.observer[j])
        assert float(density[r, c]) == pytest.approx(ll[j], abs=1e-5)
        assert abs(float(density.double().exp().sum()) - 1) < 1e-6
    uniform = np.log(sizes[fix.image].prod(1))
    assert gold.cv_log_likelihood == pytest.approx((ll + uniform).mean(), abs=1e-9)
    everyone = gold.log_density((fix, sizes), 0)
    assert everyone.shape == tuple(sizes[0]) and abs(float(everyone.double().exp().sum()) - 1) < 1e-6
    no_fixations = gold.log_density((fix, np.concatenate([sizes, [[9, 13]]])), len(sizes))  # an image nobody looked at
    assert torch.allclose(no_fixations, centerbias.log_density((9, 13)), atol=1e-6)


def test_gold_standard_maps_of_an_image_at_once_match_the_definition(small):
    fix, sizes = small
    centerbias = fit_centerbias((fix, sizes), grid_size=16)
    gold = fit_gold_standard((fix, sizes), centerbias)
    h, a = gold.bandwidth, gold.centerbias_weight
    image = 3
    H, W = sizes[image]
    cb = centerbias.log_density((H, W)).double().exp().numpy()
    c, r = np.arange(W), np.arange(H)
    on_image = fix.image == image
    observers = [*np.unique(fix.observer[on_image]).tolist(), None, 99]  # 99: not on the image, i.e. everyone
    maps = gold.log_densities((fix, sizes), image, observers)
    assert maps.shape == (len(observers), H, W) and maps.dtype == torch.float32
    for k, observer in enumerate(observers):
        kept = on_image & (fix.observer != (-1 if observer is None else observer))
        u, v = fix.x[kept] / W, fix.y[kept] / H
        cells = mass(r[:, None] / H, (r[:, None] + 1) / H, v, h) @ mass(c[:, None] / W, (c[:, None] + 1) / W, u, h).T
        kde = cells / (mass(0, 1, u, h) * mass(0, 1, v, h)).sum()
        expected = np.log((1 - a) * kde + a * cb)
        np.testing.assert_allclose(maps[k].numpy(), expected - np.log(np.exp(expected).sum()), rtol=0, atol=2e-6)
        assert torch.equal(maps[k], gold.log_density((fix, sizes), image, observer=observer))
    lonely = Fixations.build(image=np.zeros(2, int), x=np.array([3.5, 9.0]), y=np.array([2.0, 7.5]), observer=np.zeros(2, int))
    alone = gold.log_densities((lonely, sizes[:1]), 0, [0, None])  # without observer 0 nobody is left: the centre bias
    assert torch.allclose(alone[0], centerbias.log_density(tuple(sizes[0])), atol=1e-6)
    assert not torch.allclose(alone[1], alone[0], atol=1e-3)


def test_gold_standard_on_synthetic_data_sits_between_centre_bias_and_truth(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "s.h5", 12, size=(48, 64), num_observers=8, seed=5)
    centerbias = fit_centerbias(ds)
    gold = fit_gold_standard(ds, centerbias)
    fix = ds.fixations
    uniform = math.log(48 * 64)
    truth = np.concatenate([ds.true_log_density(i)[ds.fixations_of(i).y.astype(int), ds.fixations_of(i).x.astype(int)] for i in range(len(ds))])
    assert 0 < centerbias.cv_log_likelihood < gold.cv_log_likelihood < truth.mean() + uniform
    train = np.arange(8)
    only_train = fit_centerbias(ds, images=train)
    assert only_train.histogram.sum() == np.isin(fix.image, train).sum()
    assert len(gold.log_likelihoods(ds, images=[2, 3])) == np.isin(fix.image, [2, 3]).sum()


def test_baselines_need_enough_data(small):
    fix, sizes = small
    single_observer = Fixations.build(image=fix.image, x=fix.x, y=fix.y)
    centerbias = fit_centerbias((single_observer, sizes), grid_size=16)
    with pytest.raises(DatasetError, match="at least two observers"):
        fit_gold_standard((single_observer, sizes), centerbias)
    with pytest.raises(DatasetError, match="at least two images"):
        fit_centerbias((fix[fix.image == 0], sizes))
    with pytest.raises(DatasetError, match="no fixations"):
        fit_centerbias((fix, sizes), images=[])
