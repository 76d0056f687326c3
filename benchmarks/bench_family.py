"""DeepGaze IIE forward pass: ours (one converted model) vs a per-member loop in the authors' style.

Both run the same weights, a random state dict in the published ``deepgaze2e.pth`` layout (timing
does not depend on the values), on one image (default 1024x768), with the authors' kind of centre
bias (a (1024, 1024) log-density template resized per image):

* ours: `deepgaze_hub.hub.official.convert_official` -> ``model(images)``: each backbone runs once,
  the 30 readouts of a backbone run as batched products, the mixture over 120 members is one
  logsumexp;
* the reference: tests/reference_family.py, the authors' structure written out literally: per
  backbone one network pass with hooks, then a Python loop over its 30 members, each with its own
  readout (layer norms, 1x1 convolutions) and its own finalizer (blur, centre bias, normalise),
  ``logsumexp - log 30``, then ``logsumexp - log 4``. Its networks are built once, outside the timing.

Also measured, each on its own: the backbone passes (ours: ``model.extract_features``) and the
readouts + finalizers + mixture from precomputed features (ours: ``model.log_density_from_features``;
the reference: its member loop). The readouts' share is readouts / (backbones + readouts), from
these separate medians, which is steadier on a loaded machine than a difference of two full passes.

Variants are interleaved and medians reported, so machine load affects all alike. Each variant's
process CPU time (all threads) is recorded beside its wall time: on a machine shared with other
work, wall times stretch with the load (and multi-threaded backbones stretch more than the many
small readout operations), so the share is printed from both, with the load average.

    python benchmarks/bench_family.py [--size 1024x768] [--repeats 5] [--threads N] [--kind deepgaze2e]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference_family as ref  # noqa: E402  (the literal per-member reference)

from deepgaze_hub.hub import official  # noqa: E402


def centerbias_template() -> np.ndarray:
    """A (1024, 1024) float64 log density shaped like a centre bias (the real file is not needed)."""
    y, x = np.mgrid[0:1024, 0:1024]
    log = -((x - 512.0) ** 2 + (y - 460.0) ** 2) / (2 * 220.0**2)
    return log - np.log(np.exp(log).sum())


class Reference:
    """The authors' structure with its networks built once: features per backbone, member loop."""

    def __init__(self, kind: str, state: dict[str, torch.Tensor]) -> None:
        self.kind, self.state = kind, state
        if kind == official.DEEPGAZE2E:
            self.networks = [
                ref.load_network(b["build"], state, f"models.{i}.features.features.1.")
                for i, b in enumerate(ref.DEEPGAZE2E_BACKBONES)
            ]
        else:
            self.networks = [ref.load_network(ref.DEEPGAZE1["build"], state, "features.features.1.")]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == official.DEEPGAZE1:
            d = ref.DEEPGAZE1
            return [ref.readout_input(self.networks[0], d["taps"], images, d["downsample"], d["readout_factor"], False)]
        return [
            ref.readout_input(net, b["taps"], images, ref.DEEPGAZE2E_DOWNSAMPLE, ref.DEEPGAZE2E_READOUT_FACTOR, False)
            for net, b in zip(self.networks, ref.DEEPGAZE2E_BACKBONES)
        ]

    @torch.no_grad()
    def forward(self, images: torch.Tensor, centerbias: torch.Tensor) -> torch.Tensor:
        return self.readouts(self.features(images), centerbias)

    @torch.no_grad()
    def readouts(self, features: list[torch.Tensor], centerbias: torch.Tensor) -> torch.Tensor:
        """Every member's readout and finalizer, one by one, and the mixtures: (B, H, W)."""
        if self.kind == official.DEEPGAZE1:
            s = self.state
            x = torch.nn.functional.conv2d(features[0], s["readout_network.conv0.weight"])
            sigma, weight = s["finalizer.gauss.sigma"], s["finalizer.center_bias_weight"]
            return ref.finalizer(x, centerbias, sigma, weight, ref.DEEPGAZE1["saliency_map_factor"])
        mixtures = []
        for b, f in enumerate(features):
            members = [ref.deepgaze2e_member(self.state, b, k, f, centerbias) for k in range(ref.DEEPGAZE2E_MEMBERS)]
            mixtures.append(torch.stack(members, 1).logsumexp(1) - math.log(ref.DEEPGAZE2E_MEMBERS))
        return torch.stack(mixtures, 1).logsumexp(1) - math.log(len(mixtures))


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT (default 1024x768)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kind", default=official.DEEPGAZE2E, choices=official.KINDS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = map(int, args.size.lower().split("x"))

    start = time.perf_counter()
    state = official.random_published_state_dict(args.kind, seed=0)
    template = centerbias_template()
    ours = official.convert_official(args.kind, state, centerbias=template, where="random state dict").eval()
    reference = Reference(args.kind, state)
    print(f"setup (random weights, conversion, reference networks): {time.perf_counter() - start:.1f} s", flush=True)

    images = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (1, 3, height, width)).astype(np.float32))
    centerbias = torch.from_numpy(ref.authors_centerbias(template, height, width)).float()[None]
    with torch.no_grad():  # warm-up, and the two must agree
        difference = float((ours(images) - reference.forward(images, centerbias)).abs().max())
    print(f"max |ours - reference| on this image: {difference:.2e} nats", flush=True)

    with torch.no_grad():
        our_features, ref_features = ours.extract_features(images), reference.features(images)
    variants = {
        "ours, full forward": lambda: ours(images),
        "reference (per-member loop), full forward": lambda: reference.forward(images, centerbias),
        "ours, backbones only": lambda: ours.extract_features(images),
        "reference, backbones only": lambda: reference.features(images),
        "ours, readouts + finalizers + mixture only": lambda: ours.log_density_from_features(
            our_features, (height, width)
        ),
        "reference, member loop only": lambda: reference.readouts(ref_features, centerbias),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    load_before = os.getloadavg()
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                walls[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
    medians = {name: (median_ms(walls[name]), median_ms(cpus[name])) for name in variants}
    report(args, ours.num_members, width, height, medians, (load_before, os.getloadavg()))


def report(args, members: int, width: int, height: int, medians: dict, loads: tuple) -> None:
    """Print the table (wall and CPU medians), then the ratio and the share from each."""
    print(f"\n{args.kind}, {members} members, one {width}x{height} image, CPU, {torch.get_num_threads()} threads,")
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cores, medians of {args.repeats} "
          "interleaved runs")
    print("load average (1, 5, 15 min) before / after the timed runs: "
          + " / ".join(", ".join(f"{v:.2f}" for v in load) for load in loads) + "\n")
    print("| variant | wall median | CPU time median |\n|---|---|---|")
    for name, (wall, cpu) in medians.items():
        print(f"| {name} | {wall:.0f} ms | {cpu:.0f} ms |")
    for column, what in ((0, "wall time"), (1, "CPU time")):
        value = {name: pair[column] for name, pair in medians.items()}
        ours_full, ref_full = value["ours, full forward"], value["reference (per-member loop), full forward"]
        ours_bb, ref_bb = value["ours, backbones only"], value["reference, backbones only"]
        ours_ro, ref_ro = value["ours, readouts + finalizers + mixture only"], value["reference, member loop only"]
        share = ours_ro / (ours_bb + ours_ro)
        print(f"\nFrom {what}:")
        print(f"* ours / per-member loop, full forward: **{ours_full / ref_full:.3f}** (goal <= 0.6); "
              f"readouts' share of ours, readouts / (backbones + readouts): **{share:.1%}** (goal <= 10%)")
        print(f"* readouts' share of the reference: {ref_ro / (ref_bb + ref_ro):.1%}")
        print(f"* readouts alone, ours / reference: {ours_ro / ref_ro:.3f}; backbones alone: {ours_bb / ref_bb:.3f}")

if __name__ == "__main__":
    main()
