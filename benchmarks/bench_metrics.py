"""Speed of AUC, sAUC and NSS for a probabilistic model: ours against a straightforward numpy version.

Both score the same DeepGaze-like log densities (float32, 300 images of 1024 x 768 by default, smooth
maps nearest-upsampled by 2 so that 2 x 2 blocks tie, as DeepGaze's output does; ``--no-blocks`` adds
tiny per-pixel noise so that no block ties, as for other models' maps) on the same
fixations (40 per image, drawn from the densities), with the benchmark's conventions: AUC on the
equalised density, sAUC on the equalised ``log p - log p_shuffled`` with the fixations of all other
images as negatives, NSS on the density, each averaged per image. The numpy version works image by
image as pysaliency does: it equalises each map with a double argsort (stable, so that ties are
ordered by pixel index as ours are), sorts the negatives and counts with ``searchsorted``.
Results are checked to agree before the times are compared.

When pysaliency is available (``--pysaliency-python``, default: the ``PYSALIENCY_PYTHON``
environment variable, else this interpreter if it imports pysaliency), the same data are also
scored by pysaliency in a second process, interleaved with ours metric by metric and repeat by
repeat: LL (``Model.log_likelihoods``), AUC (``SaliencyMapModel.AUCs`` on the log density, whose
ranks are the density's), NSS (``NSSs`` on the density) and sAUC (``ShuffledAUCSaliencyMapModel``
with ``ShuffledBaselineModel(library="numpy")`` at the images' size, shuffled negatives).
pysaliency scores the first ``--pysaliency-images`` images (times scaled per image; the shuffled
baseline's one pass over all images is not scaled) and its per-fixation values are compared with
ours (AUC and sAUC with ties counted as halves, as pysaliency does). Without pysaliency the
benchmark says so and runs the rest.

    python benchmarks/bench_metrics.py                      # 300 images, numpy on all of them
    python benchmarks/bench_metrics.py --naive-images 60    # numpy on a subset, scaled per image
    python benchmarks/bench_metrics.py --threads 1          # ours on one thread, like numpy
    python benchmarks/bench_metrics.py --no-blocks          # maps without 2x2 blocks (no grid shortcut)
    python benchmarks/bench_metrics.py --naive-images 0 --all-metrics --pysaliency-python /tmp/pysal/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from deepgaze_hub.evaluation import METRICS, evaluate_log_densities
from deepgaze_hub.evaluation.metrics import auc, sauc


#: Largest change of a log density by ``--no-blocks`` (uniform noise in [0, NOISE) added, then renormalised).
NOISE = 1e-3


def make_data(images: int, height: int, width: int, fixations: int, seed: int, *, blocks: bool = True):
    """(maps, x, y, n): ``images`` float32 log densities and ``fixations`` drawn from each.

    ``blocks``: smooth maps nearest-upsampled by 2 (2 x 2 blocks tie, as DeepGaze's output); else
    each pixel gets its own noise (up to `NOISE` in log density, from a second generator, so the
    smooth part is the same), so that no block ties and nothing can be computed on a half-size grid.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    maps = torch.empty(images, height, width, dtype=torch.float32)
    for start in range(0, images, 16):
        count = min(16, images - start)
        low = torch.randn(count, 1, 6, 8, generator=generator, dtype=torch.float64) * 1.5
        half = F.interpolate(low, size=(height // 2, width // 2), mode="bicubic", align_corners=False)
        full = F.interpolate(half, size=(height, width), mode="nearest")[:, 0]
        if not blocks:
            full = full + NOISE * torch.rand(full.shape, generator=noise, dtype=torch.float64)
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


PYSALIENCY_SIDE = r'''
import json, sys, time
from importlib.metadata import version
import numpy as np
import pysaliency
from pysaliency.models import ShuffledAUCSaliencyMapModel, ShuffledBaselineModel
from pysaliency.saliency_map_models import FullShuffledNonfixationProvider

folder, subset = sys.argv[1], int(sys.argv[2])
maps = np.load(folder + "/maps.npy", mmap_mode="r")
fix = np.load(folder + "/fixations.npz")
count, height, width = maps.shape
# distinct constant stimuli of the right size (no memory): the models read the image index from pixel (0, 0)
stimuli = pysaliency.Stimuli([np.broadcast_to(np.uint16(k), (height, width)) for k in range(count)])
every = pysaliency.Fixations.create_without_history(fix["x"], fix["y"], fix["n"])
scored = every[fix["n"] < subset]


def index(stimulus):
    return int(np.asarray(stimulus)[0, 0])


class LogDensity(pysaliency.Model):
    def _log_density(self, stimulus):
        return np.asarray(maps[index(stimulus)])


class RankMap(pysaliency.SaliencyMapModel):  # log p: the ranks of p, without pysaliency paying for exp
    def _saliency_map(self, stimulus):
        return np.asarray(maps[index(stimulus)])


class Density(pysaliency.SaliencyMapModel):
    def _saliency_map(self, stimulus):
        return np.exp(np.asarray(maps[index(stimulus)], dtype=np.float64))


def run(metric, scored):
    setup = 0.0
    if metric == "LL":
        start = time.perf_counter()
        values = LogDensity(caching=False).log_likelihoods(stimuli, scored)
    elif metric == "AUC":
        start = time.perf_counter()
        values = RankMap(caching=False).AUCs(stimuli, scored, nonfixations="uniform")
    elif metric == "NSS":
        start = time.perf_counter()
        values = Density(caching=False).NSSs(stimuli, scored)
    else:  # sAUC: log p - log p_shuffled, negatives the fixations of all other images
        start = time.perf_counter()
        baseline = ShuffledBaselineModel(LogDensity(caching=False), stimuli, compute_size=(height, width), library="numpy", caching=False)
        baseline.get_average_prediction()
        setup = time.perf_counter() - start
        start = time.perf_counter()
        model = ShuffledAUCSaliencyMapModel(LogDensity(caching=False), baseline)
        values = model.AUCs(stimuli, scored, nonfixations=FullShuffledNonfixationProvider(stimuli, every))
    seconds = time.perf_counter() - start
    np.save(f"{folder}/pysaliency_{metric}.npy", values)
    return {"metric": metric, "seconds": seconds, "setup": setup}


for metric in ("LL", "AUC", "NSS"):  # warm-up (first calls compile and import), on image 0 only
    run(metric, every[fix["n"] == 0])
print(json.dumps({"ready": version("pysaliency"), "numpy": np.__version__}), flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    print(json.dumps(run(line.strip(), scored)), flush=True)
'''


def pysaliency_python(requested: str | None) -> str | None:
    """The interpreter that runs pysaliency, or None (the benchmark then says so)."""
    candidate = requested or os.environ.get("PYSALIENCY_PYTHON") or sys.executable
    probe = subprocess.run([candidate, "-c", "import pysaliency"], capture_output=True)
    return candidate if probe.returncode == 0 else None


class PysaliencySide:
    """pysaliency in a second process, scoring ``maps`` on request: ``time(metric) -> (seconds, setup)``."""

    def __init__(self, python: str, maps: torch.Tensor, xs, ys, ns, subset: int) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="bench_metrics_")
        np.save(f"{self.folder.name}/maps.npy", maps.numpy())
        np.savez(f"{self.folder.name}/fixations.npz", x=xs, y=ys, n=ns)
        self.process = subprocess.Popen(
            [python, "-c", PYSALIENCY_SIDE, self.folder.name, str(subset)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.version = self._reply()

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise SystemExit("the pysaliency process ended early (its error is printed above)")

    def time(self, metric: str) -> tuple[float, float]:
        self.process.stdin.write(metric + "\n")
        self.process.stdin.flush()
        reply = self._reply()
        return reply["seconds"], reply["setup"]

    def values(self, metric: str) -> np.ndarray:
        return np.load(f"{self.folder.name}/pysaliency_{metric}.npy")

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()
        self.folder.cleanup()


PYSALIENCY_METRICS = ("LL", "AUC", "sAUC", "NSS")


def compare_with_pysaliency(args, python: str, maps: torch.Tensor, xs, ys, ns) -> None:
    """Time ours (all images) and pysaliency (a subset, scaled) interleaved; check their values agree."""
    subset = min(args.pysaliency_images, args.images)
    side = PysaliencySide(python, maps, xs, ys, ns, subset)
    print(f"\npysaliency {side.version['ready']} (numpy {side.version['numpy']}, {python}) on the first {subset} images, interleaved with ours:")
    ours_times = {m: [] for m in (*PYSALIENCY_METRICS, "all")}
    theirs = {m: [] for m in PYSALIENCY_METRICS}
    try:
        for _ in range(args.repeats):
            for metric in PYSALIENCY_METRICS:
                start = time.perf_counter()
                evaluate_log_densities(maps, xs, ys, ns, metrics=[metric])
                ours_times[metric].append(time.perf_counter() - start)
                seconds, setup = side.time(metric)
                theirs[metric].append(setup + seconds * args.images / subset)
            if args.all_metrics:
                start = time.perf_counter()
                evaluate_log_densities(maps, xs, ys, ns)
                ours_times["all"].append(time.perf_counter() - start)
        check_against_pysaliency(side, maps, xs, ys, ns, subset)
    finally:
        side.close()
    print(f"  {'metric':6s} {'ours [s]':>9s} {'pysaliency [s]':>15s} {'speed-up':>9s}   (medians of {args.repeats}, {args.images} images)")
    for metric in PYSALIENCY_METRICS:
        mine, other = statistics.median(ours_times[metric]), statistics.median(theirs[metric])
        print(f"  {metric:6s} {mine:9.2f} {other:15.2f} {other / mine:8.1f}x")
    if args.all_metrics:
        took = statistics.median(ours_times["all"])
        print(f"  ours, all eight metrics in one call: {took:.2f} s = {took / statistics.median(theirs['AUC']):.2f} x pysaliency's AUC alone")


def check_against_pysaliency(side: PysaliencySide, maps: torch.Tensor, xs, ys, ns, subset: int) -> None:
    """Per-fixation agreement on the images pysaliency scored; exits when a metric disagrees."""
    scored = ns < subset
    results = evaluate_log_densities(maps, xs, ys, ns, metrics=["LL", "NSS"])
    ours = {name: results[name].per_fixation.numpy()[scored] for name in ("LL", "NSS")}
    ours["AUC"] = auc(maps[:subset], xs[scored], ys[scored], ns[scored], ties="average").per_fixation.numpy()
    total = shuffled_sum(maps.numpy())
    filler = torch.zeros(1, 1, dtype=torch.float64).expand(*maps.shape[1:])  # images whose sAUC is not checked
    smaps = [filler] * len(maps)
    for k in range(subset):
        log_density = maps[k].numpy().astype(np.float64)
        smaps[k] = torch.from_numpy(log_density - np.log((total - np.exp(log_density)) / (len(maps) - 1)))
    ours["sAUC"] = sauc(smaps, xs, ys, ns, ties="average").per_fixation.numpy()[scored]
    # sAUC: both sides rank float64 values made by different formulas; two negatives closer than their rounding
    # may swap, which moves a fixation by 1 / (number of negatives), about 8e-5 here
    for name, tolerance in (("LL", 0.0), ("AUC", 1e-12), ("sAUC", 1e-3), ("NSS", 1e-5)):
        diff = float(np.abs(ours[name] - side.values(name)).max())
        print(f"  {name:5s} max |ours - pysaliency| per fixation {diff:.2e}")
        if not diff <= tolerance:
            raise SystemExit(f"{name}: ours and pysaliency disagree ({diff:.3g} > {tolerance})")


def compare_with_numpy(args, maps: torch.Tensor, xs, ys, ns) -> None:
    """AUC, sAUC and NSS: ours (all images, median of repeats) against the per-image numpy version."""
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
    parser.add_argument("--pysaliency-python", default=None, help="python with pysaliency installed (default: $PYSALIENCY_PYTHON or this one)")
    parser.add_argument("--pysaliency-images", type=int, default=30, help="images pysaliency scores (times scaled per image)")
    parser.add_argument(
        "--no-blocks", action="store_true", help="maps without 2x2 block ties (tiny per-pixel noise): no half-size grid shortcut"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    maps, xs, ys, ns = make_data(args.images, args.height, args.width, args.fixations, args.seed, blocks=not args.no_blocks)
    print(
        f"{args.images} images of {args.width}x{args.height}, {args.fixations} fixations each, float32 log densities "
        f"({'without 2x2 blocks' if args.no_blocks else 'nearest-upsampled 2x2 blocks'}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU"
    )

    if args.naive_images != 0:
        compare_with_numpy(args, maps, xs, ys, ns)
    python = pysaliency_python(args.pysaliency_python)
    if python is not None:
        compare_with_pysaliency(args, python, maps, xs, ys, ns)
        return
    print("\npysaliency: not available (pass --pysaliency-python or set PYSALIENCY_PYTHON); comparison skipped")
    if args.all_metrics:
        start = time.perf_counter()
        evaluate_log_densities(maps, xs, ys, ns)
        took = time.perf_counter() - start
        print(f"\nours, all of {', '.join(METRICS)} in one call: {took:.2f} s ({1000 * took / args.images:.1f} ms/img)")


if __name__ == "__main__":
    main()
