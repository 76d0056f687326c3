"""Speed of AUC, sAUC and NSS for a probabilistic model: ours against a straightforward numpy version.

Both score the same DeepGaze-like log densities (float32, 300 images of 1024 x 768 by default, smooth
maps nearest-upsampled by 2 so that 2 x 2 blocks tie, as DeepGaze's output does) on the same
fixations (40 per image, drawn from the densities), with the benchmark's conventions: AUC on the
equalised density, sAUC on the equalised ``log p - log p_shuffled`` with the fixations of all other
images as negatives, NSS on the density, each averaged per image. The numpy version works image by
image as pysaliency does: it equalises each map with a double argsort (stable, so that ties are
ordered by pixel index as ours are), sorts the negatives and counts with ``searchsorted``.
Results are checked to agree before the times are compared.

    python benchmarks/bench_metrics.py                      # 300 images, numpy on all of them
    python benchmarks/bench_metrics.py --naive-images 60    # numpy on a subset, scaled per image
    python benchmarks/bench_metrics.py --threads 1          # ours on one thread, like numpy
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from deepgaze_hub.evaluation import METRICS, evaluate_log_densities


def make_data(images: int, height: int, width: int, fixations: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.empty(images, height, width, dtype=torch.float32)
    for start in range(0, images, 16):
        count = min(16, images - start)
        low = torch.randn(count, 1, 6, 8, generator=generator, dtype=torch.float64) * 1.5
        half = F.interpolate(low, size=(height // 2, width // 2), mode="bicubic", align_corners=False)
        full = F.interpolate(half, size=(height, width), mode="nearest")[:, 0]
        maps[start : start + count] = (full - full.logsumexp((1, 2), keepdim=True)).float()
    xs, ys, ns = [], [], []
    for k in range(images):
        pixels = torch.multinomial(maps[k].double().exp().flatten(), fixations, replacement=True, generator=generator)
        jitter = torch.rand(2, fixations, generator=generator, dtype=torch.float64)
        xs.append((pixels % width).double() + jitter[0])
        ys.append((pixels // width).double() + jitter[1])
        ns.append(torch.full((fixations,), k))
    return maps, torch.cat(xs).numpy(), torch.cat(ys).numpy(), torch.cat(ns).numpy()


# ----------------------------------------------------------------------------- straightforward numpy


def equalise(smap: np.ndarray) -> np.ndarray:
    flat = smap.ravel()
    return (np.argsort(np.argsort(flat, kind="stable"), kind="stable") / flat.size).reshape(smap.shape)


def roc_per_positive(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    equal = np.searchsorted(ordered, positives, side="right") - below
    return (below + 0.5 * equal) / len(negatives)


def naive_auc(maps: np.ndarray, xs, ys, ns, images: list[int]) -> np.ndarray:
    out = np.full(len(xs), np.nan)
    for k in images:
        own = ns == k
        smap = equalise(np.exp(maps[k].astype(np.float64)))
        out[own] = roc_per_positive(smap[ys[own].astype(int), xs[own].astype(int)], smap.ravel())
    return out


def shuffled_sum(maps: np.ndarray) -> np.ndarray:
    """The sum of all densities; image k's shuffled baseline is ``(sum - p_k) / (B - 1)``."""
    total = np.zeros(maps.shape[1:])
    for log_density in maps:
        total += np.exp(log_density.astype(np.float64))
    return total


def naive_sauc(maps: np.ndarray, xs, ys, ns, images: list[int], total: np.ndarray) -> np.ndarray:
    out = np.full(len(xs), np.nan)
    cols, rows = xs.astype(int), ys.astype(int)  # all images share one size: no rescaling
    for k in images:
        own = ns == k
        log_density = maps[k].astype(np.float64)
        shuffled = np.log((total - np.exp(log_density)) / (len(maps) - 1))
        smap = equalise(log_density - shuffled)
        out[own] = roc_per_positive(smap[rows[own], cols[own]], smap[rows[~own], cols[~own]])
    return out


def naive_nss(maps: np.ndarray, xs, ys, ns, images: list[int]) -> np.ndarray:
    out = np.full(len(xs), np.nan)
    for k in images:
        own = ns == k
        density = np.exp(maps[k].astype(np.float64))
        out[own] = (density[ys[own].astype(int), xs[own].astype(int)] - density.mean()) / density.std()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--fixations", type=int, default=40, help="per image")
    parser.add_argument("--naive-images", type=int, default=None, help="time numpy on this many images only (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--all-metrics", action="store_true", help="also time all eight metrics in one call (ours only)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    maps, xs, ys, ns = make_data(args.images, args.height, args.width, args.fixations, args.seed)
    print(
        f"{args.images} images of {args.width}x{args.height}, {args.fixations} fixations each, float32 log densities; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU"
    )

    ours_times: dict[str, list[float]] = {"AUC": [], "sAUC": [], "NSS": []}
    ours = {}
    for _ in range(args.repeats):
        for name, times in ours_times.items():
            start = time.perf_counter()
            ours[name] = evaluate_log_densities(maps, xs, ys, ns, metrics=[name])[name]
            times.append(time.perf_counter() - start)

    subset = list(range(args.images if args.naive_images is None else min(args.naive_images, args.images)))
    scale = args.images / len(subset)
    maps_np = maps.numpy()
    naive, naive_times = {}, {}
    start = time.perf_counter()
    naive["AUC"] = naive_auc(maps_np, xs, ys, ns, subset)
    naive_times["AUC"] = (time.perf_counter() - start) * scale
    start = time.perf_counter()
    total = shuffled_sum(maps_np)  # needs every image whatever the subset: not scaled
    middle = time.perf_counter()
    naive["sAUC"] = naive_sauc(maps_np, xs, ys, ns, subset, total)
    naive_times["sAUC"] = (middle - start) + (time.perf_counter() - middle) * scale
    start = time.perf_counter()
    naive["NSS"] = naive_nss(maps_np, xs, ys, ns, subset)
    naive_times["NSS"] = (time.perf_counter() - start) * scale

    checked = np.isin(ns, subset)
    print(f"agreement on the {checked.sum()} fixations numpy scored (max |ours - numpy| per fixation; per-image means):")
    for name in ("AUC", "sAUC", "NSS"):
        diff = np.abs(ours[name].per_fixation.numpy()[checked] - naive[name][checked]).max()
        ours_mean = np.nanmean(ours[name].per_image.numpy()[subset])
        naive_mean = np.mean([naive[name][ns == k].mean() for k in subset])
        print(f"  {name:5s} max diff {diff:.2e}   mean ours {ours_mean:.6f}   numpy {naive_mean:.6f}")
        tolerance = 1e-5 if name == "NSS" else 1e-9  # NSS: ours takes exp in float32, numpy in float64
        if not diff <= tolerance:
            raise SystemExit(f"\n{name}: results disagree (max difference {diff:.3g} > {tolerance})")

    scaled = "" if len(subset) == args.images else f" (numpy timed on {len(subset)} images, scaled per image to {args.images})"
    print(f"\ntime for {args.images} images{scaled}:")
    print(f"  {'metric':6s} {'ours [s]':>9s} {'numpy [s]':>10s} {'ours ms/img':>12s} {'numpy ms/img':>13s} {'speed-up':>9s}")
    sum_ours = sum_naive = 0.0
    for name in ("AUC", "sAUC", "NSS"):
        mine = statistics.median(ours_times[name])
        theirs = naive_times[name]
        sum_ours += mine
        sum_naive += theirs
        print(f"  {name:6s} {mine:9.2f} {theirs:10.2f} {1000 * mine / args.images:12.2f} {1000 * theirs / args.images:13.2f} {theirs / mine:8.1f}x")
    print(f"  {'all':6s} {sum_ours:9.2f} {sum_naive:10.2f} {1000 * sum_ours / args.images:12.2f} {1000 * sum_naive / args.images:13.2f} {sum_naive / sum_ours:8.1f}x")
    print(f"(ours: median of {args.repeats} runs, each metric in its own call; numpy: one run)")
    if args.all_metrics:
        start = time.perf_counter()
        evaluate_log_densities(maps, xs, ys, ns)
        took = time.perf_counter() - start
        print(f"\nours, all of {', '.join(METRICS)} in one call: {took:.2f} s ({1000 * took / args.images:.1f} ms/img)")


if __name__ == "__main__":
    main()
