"""Benchmark metrics: closed-form cases and agreement with a straightforward numpy/scipy reference.

The reference functions below are written independently of the package, one image and one
fixation at a time, following the benchmark's conventions (SPEC §2): pixel read map[int(y), int(x)],
AUC = (#lower + 0.5 #equal) / #negatives, equalised maps = argsort(argsort(map)) with a stable sort.
"""

from __future__ import annotations

from functools import partial

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, zoom
from scipy.special import logsumexp

from deepgaze_hub.errors import EvaluationError
from deepgaze_hub.evaluation import (
    METRICS,
    auc,
    blurred_density_maps,
    cc,
    density_maps,
    empirical_saliency_maps,
    evaluate_log_densities,
    explained_information_gain,
    information_gain,
    kldiv,
    log_likelihood,
    nss,
    ranks,
    sauc,
    sauc_maps,
    shuffled_baseline_log_densities,
    sim,
)

EPS = 2.2204e-16


# ----------------------------------------------------------------------------- numpy reference


def ref_equalise(smap):
    ranks_ = np.argsort(np.argsort(smap.ravel(), kind="stable"), kind="stable")
    return (ranks_ / smap.size).reshape(smap.shape)


def ref_roc(value, negatives):
    return ((negatives < value).sum() + 0.5 * (negatives == value).sum()) / len(negatives)


def ref_auc(smaps, xs, ys, ns, ties="average"):
    out = []
    for x, y, k in zip(xs, ys, ns):
        smap = ref_equalise(smaps[k]) if ties == "index" else smaps[k]
        out.append(ref_roc(smap[int(y), int(x)], smap.ravel()))
    return np.array(out)


def ref_sauc(smaps, xs, ys, ns, ties="average"):
    out = []
    for x, y, k in zip(xs, ys, ns):
        smap = ref_equalise(smaps[k]) if ties == "index" else smaps[k]
        height, width = smap.shape
        negatives = []
        for x2, y2, k2 in zip(xs, ys, ns):
            if k2 == k:
                continue
            h2, w2 = smaps[k2].shape
            col = min(int(x2 * (width / w2)), width - 1)
            row = min(int(y2 * (height / h2)), height - 1)
            negatives.append(smap[row, col])
        out.append(ref_roc(smap[int(y), int(x)], np.array(negatives)) if negatives else np.nan)
    return np.array(out)


def ref_nss(smaps, xs, ys, ns):
    out = []
    for x, y, k in zip(xs, ys, ns):
        smap = smaps[k]
        value = smap[int(y), int(x)] - smap.mean()
        out.append(value / smap.std() if smap.std() else value)
    return np.array(out)


def ref_density(smap):
    smap = smap - smap.min() if smap.min() < 0 else smap
    return smap / smap.sum()


def ref_cc(a, b):
    return 0.0 if a.std() == 0 else np.corrcoef(a.ravel(), b.ravel())[0, 1]


def ref_kldiv(s, e):
    p, q = ref_density(s), ref_density(e)
    return (q * np.log(EPS + q / (p + EPS))).sum()


def ref_sim(s, e):
    return np.minimum(ref_density(s), ref_density(e)).sum()


def ref_empirical(xs, ys, ns, k, shape, sigma, mode="reflect"):
    counts = np.zeros(shape)
    for x, y, j in zip(xs, ys, ns):
        if j == k:
            counts[int(y), int(x)] += 1
    return gaussian_filter(counts, sigma, mode=mode)


def ref_shuffled_log(log_densities, k, compute_size=None):
    if compute_size is None:
        others = [np.exp(ld) for j, ld in enumerate(log_densities) if j != k]
        return np.log(np.mean(others, axis=0))

    def resize(ld, shape):
        out = zoom(ld, [shape[0] / ld.shape[0], shape[1] / ld.shape[1]], order=1, mode="nearest")
        return out - logsumexp(out)

    resized = [np.exp(resize(ld, compute_size)) for ld in log_densities]
    count = len(log_densities)
    mean = np.mean(resized, axis=0)
    leave_one_out = np.log((count * mean - resized[k]) / (count - 1))
    return resize(leave_one_out, log_densities[k].shape)


def ref_average(per_fixation, ns, num_images):
    per_image = np.array([per_fixation[ns == k].mean() if (ns == k).any() else np.nan for k in range(num_images)])
    return per_image, np.nanmean(per_image), np.nanmean(per_fixation)


# ----------------------------------------------------------------------------- synthetic data


def smooth_log_density(shape, seed, upsample=2):
    """A DeepGaze-like log density: smooth at half resolution, nearest-upsampled (2x2 ties)."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.randn(1, 1, 4, 5, generator=generator, dtype=torch.float64) * 1.5
    half = torch.nn.functional.interpolate(low, size=(shape[0] // upsample, shape[1] // upsample), mode="bicubic", align_corners=False)
    full = torch.nn.functional.interpolate(half, size=shape, mode="nearest")[0, 0]
    return (full - full.logsumexp((0, 1))).numpy()


@pytest.fixture(scope="module")
def dataset():
    """Five images of two sizes, sampled fixations plus duplicates, border fixations, one empty image."""
    rng = np.random.default_rng(3)
    sizes = [(24, 32), (24, 32), (20, 28), (24, 32), (20, 28)]
    log_densities = [smooth_log_density(size, seed) for seed, size in enumerate(sizes)]
    xs, ys, ns = [], [], []
    for k, (height, width) in enumerate(sizes):
        if k == 3:
            continue  # an image without fixations
        p = np.exp(log_densities[k]).ravel()
        pixels = rng.choice(p.size, size=12 + 3 * k, p=p / p.sum())
        xs += list(pixels % width + rng.uniform(0, 1, len(pixels)))
        ys += list(pixels // width + rng.uniform(0, 1, len(pixels)))
        ns += [k] * len(pixels)
        xs += [xs[-1], 0.0, width - 1e-9]  # a duplicate, the left and the right border
        ys += [ys[-1], height - 1e-9, 0.0]
        ns += [k] * 3
    return log_densities, np.array(xs), np.array(ys), np.array(ns)


# ----------------------------------------------------------------------------- closed forms


def test_auc_of_a_map_with_known_ranks():
    smap = torch.arange(12.0).reshape(3, 4)[None]
    result = auc(smap, [0.5, 3.2, 1.9], [0.0, 2.7, 1.1], [0, 0, 0])
    # pixel values 0, 11, 5: (k + 0.5) / 12
    assert torch.allclose(result.per_fixation, torch.tensor([0.5, 11.5, 5.5], dtype=torch.float64) / 12)
    assert result.value == pytest.approx(17.5 / 36)


def test_auc_ties_half_or_by_pixel_index():
    smap = torch.zeros(1, 2, 3)
    smap[0, 1, 2] = 1.0  # five equal pixels and one above
    average = auc(smap, [0.0, 2.0, 2.0], [0.0, 1.0, 0.0], [0, 0, 0])
    assert torch.allclose(average.per_fixation, torch.tensor([2.5 / 6, 5.5 / 6, 2.5 / 6], dtype=torch.float64))
    index = auc(smap, [0.0, 2.0, 2.0], [0.0, 1.0, 0.0], [0, 0, 0], ties="index")
    # equal pixels ranked by flat index: pixel 0 -> rank 0, pixel 2 -> rank 2, the maximum -> rank 5
    assert torch.allclose(index.per_fixation, torch.tensor([0.5 / 6, 5.5 / 6, 2.5 / 6], dtype=torch.float64))


def test_uniform_density_auc_depends_on_position_under_the_benchmark_tie_rule():
    uniform = torch.full((1, 4, 5), -math.log(20.0))
    x, y, n = [0.5, 4.5], [0.5, 3.5], [0, 0]  # the first and the last pixel
    result = evaluate_log_densities(uniform, x, y, n, metrics=["AUC"])["AUC"]
    assert result.per_fixation.tolist() == [0.5 / 20, 19.5 / 20]
    assert auc(uniform.exp(), x, y, n).per_fixation.tolist() == [0.5, 0.5]


def test_constant_map_scores_chance_auc_and_zero_nss():
    smap = torch.full((2, 5, 7), 3.0)
    x, y, n = [1.0, 6.5, 3.3], [0.2, 4.9, 2.0], [0, 1, 1]
    assert torch.allclose(auc(smap, x, y, n).per_fixation, torch.full((3,), 0.5, dtype=torch.float64))
    assert torch.equal(nss(smap, x, y, n).per_fixation, torch.zeros(3, dtype=torch.float64))


def test_nss_of_a_two_valued_map():
    smap = torch.zeros(1, 10, 10)
    smap[0, :2, :] = 1.0  # a fraction f = 0.2 of the pixels is 1
    result = nss(smap, [3.0, 3.0], [0.5, 7.0], [0, 0])
    f = 0.2
    expected = torch.tensor([math.sqrt((1 - f) / f), -math.sqrt(f / (1 - f))], dtype=torch.float64)
    assert torch.allclose(result.per_fixation, expected)


def test_cc_kldiv_sim_of_identical_and_opposite_maps():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 8, 9, generator=generator, dtype=torch.float64) + 0.1
    assert torch.allclose(cc(a, a).per_image, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(cc(-a, a).per_image, -torch.ones(3, dtype=torch.float64))
    assert torch.allclose(kldiv(a, a).per_image, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(sim(a, 2 * a).per_image, torch.ones(3, dtype=torch.float64))
    left, right = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    left[0, :, :2], right[0, :, 2:] = 1, 1
    assert sim(left, right).value == 0.0
    assert cc(torch.ones(1, 4, 4), right).value == 0.0  # a constant saliency map scores 0


def test_kldiv_closed_form():
    p = torch.tensor([[[0.5, 0.5]]], dtype=torch.float64)
    q = torch.tensor([[[0.25, 0.75]]], dtype=torch.float64)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # KL(q || p)
    assert kldiv(p, q).value == pytest.approx(expected, abs=1e-12)


def test_ll_and_ig_closed_forms():
    height, width = 6, 8
    uniform = torch.full((2, height, width), -math.log(height * width), dtype=torch.float64)
    left = torch.full((height, width), float("-inf"), dtype=torch.float64)
    left[:, : width // 2] = -math.log(height * width / 2)  # all mass on the left half
    model = torch.stack([left, left])
    x, y, n = [0.5, 3.9, 1.0], [0.0, 5.5, 2.2], [0, 0, 1]
    assert log_likelihood(uniform, x, y, n).value == pytest.approx(-math.log(48))
    assert information_gain(uniform, x, y, n).value == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(information_gain(model, x, y, n).per_fixation, torch.ones(3, dtype=torch.float64))
    assert information_gain(model, x, y, n, baseline=model).value == 0.0  # a model against itself
    outside = information_gain(model, [6.0], [1.0], [0])  # zero density at the fixation
    assert outside.value == float("-inf")


def test_explained_information_gain():
    rng = np.random.default_rng(0)
    n = np.array([0, 0, 1, 1, 1, 3])
    centre = rng.normal(-8, 0.3, len(n))
    gold = centre + rng.uniform(0.5, 1.0, len(n))
    result = explained_information_gain(centre + 0.5 * (gold - centre), centre, gold, n)
    assert result.over_fixations == pytest.approx(0.5)
    assert result.over_images == pytest.approx(0.5)
    assert torch.allclose(result.per_image[[0, 1, 3]], torch.full((3,), 0.5, dtype=torch.float64))
    assert torch.isnan(result.per_image[2])
    assert explained_information_gain(gold, centre, gold, n).over_fixations == pytest.approx(1.0)
    assert explained_information_gain(centre, centre, gold, n).over_images == 0.0


def test_sauc_closed_form_across_sizes():
    smap0 = torch.arange(12.0, dtype=torch.float64).reshape(3, 4)
    smap1 = torch.zeros(6, 8, dtype=torch.float64)
    # image 1's fixations land on image 0 at (x * 4 / 8, y * 3 / 6): pixels (0, 1), (2, 3), (2, 3)
    x = [2.5, 2.0, 7.9, 7.0]
    y = [1.0, 0.0, 5.9, 5.0]
    n = [0, 1, 1, 1]
    result = sauc([smap0, smap1], x, y, n)
    # fixation on image 0 reads value 6; negatives 1, 11, 11
    assert result.per_fixation[0].item() == pytest.approx(1 / 3)
    # image 1 is constant: every negative ties
    assert torch.allclose(result.per_fixation[1:], torch.full((3,), 0.5, dtype=torch.float64))


def test_sauc_without_other_images_is_nan():
    result = sauc(torch.rand(2, 4, 4), [1.0, 2.0], [1.0, 2.0], [0, 0])
    assert torch.isnan(result.per_fixation).all()
    assert math.isnan(result.value)


def test_duplicates_count_and_both_averages():
    smap = torch.arange(16.0).reshape(1, 4, 4).repeat(2, 1, 1)
    # image 0: the same fixation twice; image 1: one fixation
    result = nss(smap, [3.5, 3.5, 0.0], [3.5, 3.5, 0.0], [0, 0, 1])
    high, low = result.per_fixation[0].item(), result.per_fixation[2].item()
    assert result.per_fixation[1].item() == high
    assert result.mean_over_images == pytest.approx((high + low) / 2)
    assert result.mean_over_fixations == pytest.approx((2 * high + low) / 3)
    assert result.value == result.mean_over_images  # NSS: the benchmark averages per image
    assert information_gain(torch.zeros(1, 2, 2) - math.log(4), [0.0], [0.0], [0]).average == "fixation"


def test_images_without_fixations_are_nan_and_skipped():
    smap = torch.arange(16.0).reshape(1, 4, 4).repeat(3, 1, 1)
    result = auc(smap, [3.0, 0.0], [3.0, 0.0], [0, 2])
    assert torch.isnan(result.per_image[1])
    assert result.mean_over_images == pytest.approx((15.5 / 16 + 0.5 / 16) / 2)
    assert result.fixation_counts.tolist() == [1, 0, 1]


def test_coordinates_are_truncated_and_checked():
    smap = torch.arange(12.0).reshape(1, 3, 4)
    values = nss(smap, [2.99, 3.999999, 0.0], [0.0, 2.5, 0.0], [0, 0, 0]).per_fixation
    reference = ref_nss([smap[0].numpy()], [2, 3, 0], [0, 2, 0], [0, 0, 0])
    assert np.allclose(values.numpy(), reference)
    for x, y in [(4.0, 0.0), (0.0, 3.0), (-0.1, 0.0)]:
        with pytest.raises(EvaluationError, match="outside image 0"):
            nss(smap, [x], [y], [0])
    with pytest.raises(EvaluationError, match="image indices"):
        nss(smap, [0.0], [0.0], [1])
    with pytest.raises(EvaluationError, match="NaN"):
        nss(torch.full((1, 3, 4), float("nan")), [0.0], [0.0], [0])
    with pytest.raises(EvaluationError, match="same length"):
        auc(smap, [0.0, 1.0], [0.0], [0])


# ----------------------------------------------------------------------------- agreement with the reference


@pytest.mark.parametrize("ties", ["average", "index"])
def test_plain_map_metrics_match_the_reference(dataset, ties):
    log_densities, xs, ys, ns = dataset
    smaps = [np.round(np.exp(ld) * 400, 1) for ld in log_densities]  # many exact ties
    maps = [torch.as_tensor(s) for s in smaps]
    result = auc(maps, xs, ys, ns, ties=ties)
    expected = ref_auc(smaps, xs, ys, ns, ties)
    assert np.allclose(result.per_fixation.numpy(), expected, atol=1e-12)
    per_image, by_image, by_fixation = ref_average(expected, ns, len(smaps))
    assert np.allclose(result.per_image.numpy(), per_image, equal_nan=True)
    assert result.mean_over_images == pytest.approx(by_image)
    assert result.mean_over_fixations == pytest.approx(by_fixation)
    assert np.allclose(sauc(maps, xs, ys, ns, ties=ties).per_fixation.numpy(), ref_sauc(smaps, xs, ys, ns, ties), atol=1e-12)
    if ties == "average":
        assert np.allclose(nss(maps, xs, ys, ns).per_fixation.numpy(), ref_nss(smaps, xs, ys, ns), atol=1e-10)


def test_auc_is_exact_in_float32_with_neg_inf_and_when_bins_crowd(dataset, monkeypatch):
    log_densities, xs, ys, ns = dataset
    maps = [ld.astype(np.float32) for ld in log_densities]
    maps[0][:5, :] = -np.inf  # zero density
    maps[1] = np.round(maps[1], 1)  # few distinct values: many pixels share each bin
    monkeypatch.setattr(ranks, "BINS", 8)  # coarse bins and small comparison tables exercise
    monkeypatch.setattr(ranks, "_TABLE", 64)  # the exact within-bin pass
    for ties in ("average", "index"):
        result = auc([torch.as_tensor(m) for m in maps], xs, ys, ns, ties=ties)
        reference = ref_auc([m.astype(np.float64) for m in maps], xs, ys, ns, ties)
        assert np.allclose(result.per_fixation.numpy(), reference, atol=1e-12)


def test_map_metrics_and_empirical_maps_match_the_reference(dataset):
    log_densities, xs, ys, ns = dataset
    sizes = [ld.shape for ld in log_densities]
    for sigma, mode in [(2.5, "reflect"), (23.99, "reflect"), (4.0, "constant"), (3.0, "nearest")]:
        empirical = empirical_saliency_maps(xs, ys, ns, sizes, sigma, mode)
        for k, size in enumerate(sizes):
            assert np.allclose(empirical[k].numpy(), ref_empirical(xs, ys, ns, k, size, sigma, mode), atol=1e-12)
    empirical = empirical_saliency_maps(xs, ys, ns, sizes, sigma=3.0)
    smaps = [np.exp(ld) + 0.3 * np.sin(np.arange(ld.size).reshape(ld.shape)) for ld in log_densities]  # negatives too
    for metric, reference in [(cc, ref_cc), (kldiv, ref_kldiv), (sim, ref_sim)]:
        result = metric([torch.as_tensor(s) for s in smaps], empirical)
        expected = [reference(s, e.numpy()) if e.numpy().any() else np.nan for s, e in zip(smaps, empirical)]
        assert np.allclose(result.per_image.numpy(), expected, equal_nan=True, atol=1e-12), metric.__name__


@pytest.mark.parametrize("compute_size", [None, (9, 11)])
def test_shuffled_baseline_matches_the_reference(dataset, compute_size):
    log_densities, *_ = dataset
    same_size = [ld for ld in log_densities if ld.shape == (24, 32)]
    inputs = same_size if compute_size is None else log_densities
    result = shuffled_baseline_log_densities([torch.as_tensor(ld) for ld in inputs], compute_size)
    for k, ld in enumerate(inputs):
        assert np.allclose(result[k].numpy(), ref_shuffled_log(inputs, k, compute_size), atol=1e-9)
        assert float(torch.logsumexp(result[k].flatten(), 0)) == pytest.approx(0.0, abs=1e-12)


def test_density_metrics_match_the_reference(dataset):
    log_densities, xs, ys, ns = dataset
    sigma, empirical_sigma = 5.0, 3.0
    results = evaluate_log_densities(
        [torch.as_tensor(ld) for ld in log_densities], xs, ys, ns, model_sigma=sigma, empirical_sigma=empirical_sigma
    )
    assert list(results) == list(METRICS)
    assert (results["IG"].unit, results["LL"].unit, results["KLDiv"].unit, results["AUC"].unit) == (
        "bits/fixation", "nats/fixation", "nats", "")
    assert (results["IG"].average, results["AUC"].average, results["CC"].mean_over_fixations) == ("fixation", "image", None)
    densities = [np.exp(ld) for ld in log_densities]
    num_images = len(log_densities)
    lls = np.array([log_densities[k][int(y), int(x)] for x, y, k in zip(xs, ys, ns)])
    uniform = np.array([-np.log(log_densities[k].size) for k in ns])
    shuffled = [ld - ref_shuffled_log(log_densities, k, (500, 500)) for k, ld in enumerate(log_densities)]
    per_fixation = {
        "LL": lls,
        "IG": (lls - uniform) / np.log(2),
        "AUC": ref_auc(densities, xs, ys, ns, ties="index"),
        "sAUC": ref_sauc(shuffled, xs, ys, ns, ties="index"),
        "NSS": ref_nss(densities, xs, ys, ns),
    }
    for name, expected in per_fixation.items():
        assert np.allclose(results[name].per_fixation.numpy(), expected, atol=1e-9), name
        assert results[name].value == pytest.approx(ref_average(expected, ns, num_images)[1 if name not in ("LL", "IG") else 2])
    model_maps = [gaussian_filter(p, sigma, mode="constant") for p in densities]
    empirical = [ref_empirical(xs, ys, ns, k, p.shape, empirical_sigma) for k, p in enumerate(densities)]
    for name, reference in [("CC", ref_cc), ("KLDiv", ref_kldiv), ("SIM", ref_sim)]:
        expected = [reference(m, e) if e.any() else np.nan for m, e in zip(model_maps, empirical)]
        assert np.allclose(results[name].per_image.numpy(), expected, equal_nan=True, atol=1e-10), name
        assert torch.isnan(results[name].per_image[3])  # the image without fixations


def test_density_route_equals_plain_metrics_on_the_derived_maps(dataset):
    log_densities, xs, ys, ns = dataset
    same = [torch.as_tensor(ld) for ld in log_densities if ld.shape == (24, 32)]
    keep = np.isin(ns, [0, 1])  # images 0, 1 (and 3, without fixations) have size 24 x 32
    x, y, n = xs[keep], ys[keep], np.where(ns[keep] == 3, 2, ns[keep])
    results = evaluate_log_densities(same, x, y, n, metrics=["AUC", "sAUC", "NSS", "CC"], model_sigma=4.0, empirical_sigma=2.0)
    density = density_maps(same)
    assert torch.allclose(results["AUC"].per_fixation, auc(density, x, y, n, ties="index").per_fixation)
    assert torch.allclose(results["NSS"].per_fixation, nss(density, x, y, n).per_fixation)
    assert torch.allclose(results["sAUC"].per_fixation, sauc(sauc_maps(same), x, y, n, ties="index").per_fixation)
    reference_cc = cc(blurred_density_maps(same, 4.0), empirical_saliency_maps(x, y, n, [(24, 32)] * 3, 2.0))
    assert torch.allclose(results["CC"].per_image, reference_cc.per_image, equal_nan=True)


def test_float32_inputs_agree_with_float64(dataset):
    log_densities, xs, ys, ns = dataset
    results64 = evaluate_log_densities([torch.as_tensor(ld) for ld in log_densities], xs, ys, ns, metrics=["AUC", "NSS", "IG"])
    results32 = evaluate_log_densities([torch.as_tensor(ld, dtype=torch.float32) for ld in log_densities], xs, ys, ns, metrics=["AUC", "NSS", "IG"])
    for name in ("AUC", "NSS", "IG"):
        assert torch.allclose(results32[name].per_fixation, results64[name].per_fixation, atol=1e-4), name


def test_batches_and_lists_give_the_same_results(dataset):
    log_densities, xs, ys, ns = dataset
    same = np.stack([ld for ld in log_densities if ld.shape == (24, 32)])
    keep = np.isin(ns, [0, 1])
    batch = evaluate_log_densities(same, xs[keep], ys[keep], ns[keep], metrics=["AUC", "sAUC", "KLDiv"])
    listed = evaluate_log_densities(list(torch.as_tensor(same)), xs[keep], ys[keep], ns[keep], metrics=["AUC", "sAUC", "KLDiv"])
    for name in batch:
        assert torch.allclose(batch[name].per_image, listed[name].per_image, equal_nan=True)


def test_unknown_metric_and_mismatched_baseline_are_refused(dataset):
    log_densities, xs, ys, ns = dataset
    maps = [torch.as_tensor(ld) for ld in log_densities]
    with pytest.raises(EvaluationError, match="unknown metrics"):
        evaluate_log_densities(maps, xs, ys, ns, metrics=["AUC-Judd"])
    with pytest.raises(EvaluationError, match="baseline"):
        information_gain(maps, xs, ys, ns, baseline=maps[:2])
    with pytest.raises(EvaluationError, match="at least two images"):
        sauc_maps(maps[:1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_results_on_gpu_match_cpu(dataset):
    log_densities, xs, ys, ns = dataset
    cpu = evaluate_log_densities([torch.as_tensor(ld) for ld in log_densities], xs, ys, ns, model_sigma=4.0)
    gpu = evaluate_log_densities([torch.as_tensor(ld).cuda() for ld in log_densities], xs, ys, ns, model_sigma=4.0)
    for name in cpu:
        assert gpu[name].per_image.device.type == "cuda"
        assert torch.allclose(gpu[name].per_image.cpu(), cpu[name].per_image, equal_nan=True, atol=1e-9), name


# ----------------------------------------------------------------------------- fast paths against the plain computation


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("mode", ["constant", "reflect", "nearest"])
def test_blur_on_the_grid_equals_the_blur_of_the_upsampled_map(factor, mode):
    from deepgaze_hub.baselines.blur import gaussian_blur, gaussian_matrix, upsampled_gaussian_blur

    generator = torch.Generator().manual_seed(factor)
    for grid_size, sigma in [((7, 5), 2.5), ((12, 16), 3.0), ((6, 9), 24.0)]:  # odd and even sizes; radius > size
        grid = torch.rand(2, *grid_size, generator=generator, dtype=torch.float64) ** 3
        grid[0, 0, :] = 0.0  # exact zeros on a border
        full = grid.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        height, width = full.shape[1:]
        dense = gaussian_matrix(height, sigma, mode) @ full @ gaussian_matrix(width, sigma, mode).T
        on_grid = upsampled_gaussian_blur(grid, factor, sigma, mode)
        assert on_grid.shape == full.shape
        assert torch.allclose(on_grid, dense, rtol=1e-9, atol=0), (grid_size, sigma)
        assert torch.allclose(gaussian_blur(full, sigma, mode), dense, rtol=1e-9, atol=0)
        reference = np.stack([gaussian_filter(m, sigma, mode=mode) for m in full.numpy()])
        assert np.allclose(on_grid.numpy(), reference, rtol=1e-9, atol=1e-300)


def test_upsampled_grid_is_found_only_on_exact_blocks():
    from deepgaze_hub.evaluation.saliency_maps import grid_pixels, upsampled_grid

    log_density = torch.as_tensor(np.stack([smooth_log_density((6, 8), seed) for seed in range(3)]))
    grid = upsampled_grid(log_density)
    assert torch.equal(grid, log_density[:, ::2, ::2])
    pixel = torch.arange(48)
    assert torch.equal(grid.reshape(3, -1)[:, grid_pixels(pixel, 8)], log_density.reshape(3, -1))
    broken = log_density.clone()
    broken[2, 5, 7] -= 1e-12  # one pixel of one map off its block
    assert upsampled_grid(broken) is None
    assert upsampled_grid(log_density[:, :5]) is None  # odd height
    assert upsampled_grid(log_density[:, :, 1:]) is None  # odd width


def test_density_metrics_on_the_grid_equal_the_full_resolution_route(dataset, monkeypatch):
    from deepgaze_hub.evaluation import probabilistic

    log_densities, xs, ys, ns = dataset  # 2 x 2 blocks: the grid route; fixations on the borders
    maps = [torch.as_tensor(ld) for ld in log_densities]
    names = ["AUC", "NSS", "CC", "KLDiv", "SIM"]
    on_grid = evaluate_log_densities(maps, xs, ys, ns, metrics=names, model_sigma=5.0, empirical_sigma=3.0)
    monkeypatch.setattr(probabilistic, "upsampled_grid", lambda chunk: None)
    monkeypatch.setattr(probabilistic, "MAP_PIXELS", 1)  # one image at a time
    full = evaluate_log_densities(maps, xs, ys, ns, metrics=names, model_sigma=5.0, empirical_sigma=3.0)
    for name in names:
        assert torch.allclose(on_grid[name].per_image, full[name].per_image, rtol=1e-9, atol=1e-12, equal_nan=True), name


def test_density_metrics_without_blocks_match_the_reference():
    rng = np.random.default_rng(5)
    sizes = [(15, 21), (15, 21), (16, 22)]  # odd sizes, and an even size without 2 x 2 blocks
    log_densities = []
    for size in sizes:
        values = rng.normal(0, 1, size)
        log_densities.append(values - logsumexp(values))
    xs = np.array([0.0, 20.99, 10.5, 3.2, 21.9, 0.0])
    ys = np.array([14.99, 0.0, 7.5, 2.2, 15.9, 0.0])
    ns = np.array([0, 0, 1, 1, 2, 2])
    results = evaluate_log_densities([torch.as_tensor(ld) for ld in log_densities], xs, ys, ns, model_sigma=2.0, empirical_sigma=1.5)
    densities = [np.exp(ld) for ld in log_densities]
    assert np.allclose(results["NSS"].per_fixation.numpy(), ref_nss(densities, xs, ys, ns), atol=1e-9)
    assert np.allclose(results["AUC"].per_fixation.numpy(), ref_auc(densities, xs, ys, ns, "index"), atol=1e-12)
    for k, density in enumerate(densities):
        model_map = gaussian_filter(density, 2.0, mode="constant")
        empirical = ref_empirical(xs, ys, ns, k, density.shape, 1.5)
        assert results["CC"].per_image[k].item() == pytest.approx(ref_cc(model_map, empirical), abs=1e-10)
        assert results["KLDiv"].per_image[k].item() == pytest.approx(ref_kldiv(model_map, empirical), abs=1e-10)
        assert results["SIM"].per_image[k].item() == pytest.approx(ref_sim(model_map, empirical), abs=1e-10)


@pytest.mark.parametrize("ties", ["average", "index"])
def test_sauc_with_many_ties(dataset, ties):
    log_densities, xs, ys, ns = dataset
    smaps = [np.round(np.exp(ld) * 100) for ld in log_densities]  # few distinct values: most negatives tie
    smaps[2][:] = 1.0  # a constant map: every negative ties with every fixation
    result = sauc([torch.as_tensor(s) for s in smaps], xs, ys, ns, ties=ties)
    assert np.allclose(result.per_fixation.numpy(), ref_sauc(smaps, xs, ys, ns, ties), atol=1e-12, equal_nan=True)


def test_padding_of_a_chunk_never_reads_another_images_pixels():
    # image 0 is larger and its fixation reads pixel 99; images 1 and 2 (4 x 4) have 1 and 2 fixations
    maps = [torch.full((10, 10), -math.log(100.0)), torch.full((4, 4), -math.log(16.0)), torch.full((4, 4), -math.log(16.0))]
    x, y, n = [9.5, 1.0, 2.0, 3.0], [9.5, 1.0, 2.0, 3.0], [0, 1, 2, 2]
    assert nss([m.exp() for m in maps], x, y, n).per_fixation.tolist() == [0.0] * 4
    assert auc([m.exp() for m in maps], x, y, n).per_fixation.tolist() == [0.5] * 4
    results = evaluate_log_densities(maps, x, y, n, model_sigma=1.0, empirical_sigma=1.0)
    assert results["LL"].per_fixation.tolist() == pytest.approx([-math.log(100.0)] + [-math.log(16.0)] * 3)
    assert results["NSS"].per_fixation.tolist() == [0.0] * 4
    assert empirical_saliency_maps(x, y, n, [(10, 10), (4, 4), (4, 4)], 1.0)[2].sum().item() == pytest.approx(2.0)


def test_empirical_maps_are_kept_for_the_next_model_on_the_same_fixations(dataset, monkeypatch):
    from deepgaze_hub.evaluation import probabilistic, saliency_maps
    from deepgaze_hub.evaluation.saliency_maps import EmpiricalCache

    log_densities, xs, ys, ns = dataset
    maps = [torch.as_tensor(ld) for ld in log_densities]
    other = [torch.as_tensor(np.roll(ld, 3, axis=1)) for ld in log_densities]
    made = []
    original = saliency_maps.empirical_chunk
    counting = lambda *args: made.append(args[1]) or original(*args)  # noqa: E731
    monkeypatch.setattr(saliency_maps, "empirical_chunk", counting)  # used by the cache
    monkeypatch.setattr(probabilistic, "empirical_chunk", counting)  # used without one
    score = partial(evaluate_log_densities, metrics=["CC", "KLDiv", "SIM"], empirical_sigma=3.0)
    cache = EmpiricalCache()
    first = score(maps, xs, ys, ns, empirical_cache=cache)
    count = len(made)
    second = score(other, xs, ys, ns, empirical_cache=cache)
    assert len(made) == count > 0  # the second model reused the first one's empirical maps
    for log_density_maps, kept in ((maps, first), (other, second)):
        fresh = score(log_density_maps, xs, ys, ns)  # no cache: every map made again
        for name in ("CC", "KLDiv", "SIM"):
            assert torch.allclose(fresh[name].per_image, kept[name].per_image, rtol=0, atol=0, equal_nan=True), name
    assert len(made) == 3 * count
    nothing_kept = EmpiricalCache(max_bytes=0)
    score(maps, xs, ys, ns, empirical_cache=nothing_kept)
    score(maps, xs, ys, ns, empirical_cache=nothing_kept)
    assert len(made) == 5 * count
    moved = np.minimum(np.asarray(xs) + 1.0, [ld.shape[1] - 0.5 for ld in (log_densities[k] for k in ns)])
    shifted = evaluate_log_densities(maps, moved, ys, ns, metrics=["CC"], empirical_sigma=3.0, empirical_cache=cache)  # other fixations: new maps
    sizes = [ld.shape for ld in log_densities]
    expected = cc(blurred_density_maps(maps, 24.0), empirical_saliency_maps(moved, ys, ns, sizes, 3.0))
    assert torch.allclose(shifted["CC"].per_image, expected.per_image, atol=1e-12, equal_nan=True)


def test_map_scores_with_a_prepared_empirical_side_are_unchanged(dataset):
    from deepgaze_hub.evaluation.metrics import empirical_reference, map_chunk_scores

    log_densities, xs, ys, ns = dataset
    sizes = [ld.shape for ld in log_densities]
    index = [k for k, size in enumerate(sizes) if size == sizes[0]]
    maps = torch.stack([torch.as_tensor(log_densities[k]).exp() for k in index])
    empirical = torch.stack([empirical_saliency_maps(xs, ys, ns, sizes, 3.0)[k] for k in index])
    names = ["CC", "KLDiv", "SIM"]
    plain = map_chunk_scores(maps, empirical, names)
    for centred in (True, False):
        reference = empirical_reference(empirical.clone(), centred=centred, overwrite=True)
        prepared = map_chunk_scores(maps.clone(), None, names, overwrite=True, reference=reference)
        assert all(torch.allclose(plain[name], prepared[name], rtol=0, atol=0, equal_nan=True) for name in names)


def test_nss_and_auc_the_same_in_any_grouping_of_maps(dataset, monkeypatch):
    from deepgaze_hub.evaluation import metrics

    log_densities, xs, ys, ns = dataset
    maps = [torch.as_tensor(ld.astype(np.float32)) for ld in log_densities]
    together = evaluate_log_densities(maps, xs, ys, ns, metrics=["AUC", "NSS"])
    monkeypatch.setattr(metrics, "NSS_PIXELS", 1)  # NSS one map at a time
    monkeypatch.setattr(ranks, "_TABLE", 1)  # AUC: one candidate pixel per comparison table
    apart = evaluate_log_densities(maps, xs, ys, ns, metrics=["AUC", "NSS"])
    assert torch.equal(together["AUC"].per_fixation, apart["AUC"].per_fixation)
    assert torch.allclose(together["NSS"].per_fixation, apart["NSS"].per_fixation, rtol=1e-6, atol=0)
    densities = [np.exp(ld) for ld in log_densities]
    assert np.allclose(apart["NSS"].per_fixation.numpy(), ref_nss(densities, xs, ys, ns), atol=1e-5)
