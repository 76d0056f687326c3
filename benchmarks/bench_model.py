"""Forward-pass cost of DeepGaze ensembles on one image, measured side by side in one run.

Prints, at 1024x768 (default) with a VGG-19 backbone (random weights: timing does not depend
on their values):

* 10-member ensemble forward / single-member forward (goal <= 1.05: members share the backbone);
* backbone-only time / full forward time (how much of a prediction is the frozen network);
* our finalizer for K members vs the reference's per-member interpolate + conv1d finalizer;
* the reference implementation's DeepGaze II forward (tests/reference_impl.py: the same
  torchvision VGG-19 run module by module, the authors' way) against ours: ours by default
  (channels-last backbone, float32; goal <= 0.75) and ours with a bfloat16 backbone, whose
  accuracy cost `benchmarks/bench_precision.py` measures. bfloat16 is fast on GPUs and on CPUs
  with AMX or AVX512-BF16; on other CPUs it is emulated and slower.

Timings interleave the variants and report medians, so machine load affects all alike.

    python benchmarks/bench_model.py [--size 1024x768] [--repeats 7] [--threads N] [--device cpu] [--no-bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference_impl import member_log_density, reference_forward  # noqa: E402  (the literal reference)

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig  # noqa: E402

#: torchvision vgg19().features indices of DeepGaze II's taps (conv5_1, relu5_1, relu5_2, conv5_3, relu5_4).
VGG_TAPS = [28, 29, 31, 32, 35]


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-bfloat16", action="store_true", help="skip the bfloat16 row (slow on CPUs without bf16 units)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = map(int, args.size.lower().split("x"))
    device = torch.device(args.device)

    torch.manual_seed(0)
    backbone = BackboneConfig(weights=None)
    single = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=1)).to(device).eval()
    ensemble = DeepGaze(DeepGazeConfig(backbone=backbone, num_members=args.members), backbone=single.backbone).to(device).eval()
    images = (torch.rand(1, 3, height, width) * 255).to(device)
    centerbias = single.centerbias((height, width)).to(device)[None]
    features = ensemble.extract_features(images)
    reference = copy.deepcopy(single)  # the same weights, run the authors' way: default memory layout
    for extractor in reference.backbones:
        extractor.channels_last = False
    # ours: as built, the default (channels-last unless DEEPGAZE_HUB_CHANNELS_LAST=0)
    layout = "channels-last" if single.backbone.channels_last else "default layout"

    def reduced() -> torch.Tensor:
        single.precision = "bfloat16"
        try:
            return single(images)
        finally:
            single.precision = "float32"

    variants = {
        "reference": lambda: reference_forward(reference, images, centerbias, VGG_TAPS),
        "ours_bf16": reduced,
        "single": lambda: single(images),
        "ensemble": lambda: ensemble(images),
        "backbone": lambda: single.extract_features(images),
        "finalizer_ours": lambda: ensemble.log_density_from_features(features, (height, width), centerbias),
        "finalizer_reference": lambda: torch.stack(
            [member_log_density(ensemble, images, centerbias, k, features) for k in range(args.members)]
        ).logsumexp(0),
    }
    if args.no_bfloat16:
        del variants["ours_bf16"]
    times: dict[str, list[float]] = {name: [] for name in variants}
    load_before = os.getloadavg()
    with torch.no_grad():
        for fn in variants.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in variants.items():
                times[name].append(timed(fn, device))
    median = {name: statistics.median(values) for name, values in times.items()}
    load_after = os.getloadavg()

    print(f"deepgaze-hub forward benchmark: {width}x{height}, VGG-19, K={args.members}, device={device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"ours: {layout}; load average (1 min) {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    for name, value in median.items():
        print(f"  {name:<20} median {value * 1000:8.1f} ms  (min {min(times[name]) * 1000:.1f} ms, {args.repeats} runs)")
    print(f"ratio {args.members}-member / single-member forward: {median['ensemble'] / median['single']:.3f}  (goal <= 1.05)")
    print(f"ratio backbone-only / full single-member forward:   {median['backbone'] / median['single']:.3f}")
    print(f"ratio reference finalizer / ours (K={args.members}):          {median['finalizer_reference'] / median['finalizer_ours']:.1f}x")
    print(f"ratio ours default (float32) / reference forward:   {median['single'] / median['reference']:.3f}  (goal <= 0.75)")
    paired = [ours / ref for ours, ref in zip(times["single"], times["reference"])]
    print(f"  per repeat (ours/reference, run side by side):   {' '.join(f'{r:.3f}' for r in paired)}")
    if "ours_bf16" in median:
        print(f"ratio ours bfloat16 backbone / reference forward:   {median['ours_bf16'] / median['reference']:.3f}")


if __name__ == "__main__":
    main()
