"""What reduced precision costs in accuracy and gains in speed, on the embedded dataset.

Scores a model's predictions on the embedded synthetic dataset (or another dataset file) with
the backbone in float32 and in a reduced precision (bfloat16; float16 on GPUs) and prints:

* information gain over the uniform density (bits per fixation, averaged over fixations) for
  each precision, and the change (goal: at most 0.01 bits/fixation lost);
* the largest per-pixel change of the log density (nats);
* the time of scoring the dataset in each precision, interleaved, and their ratio.

    python benchmarks/bench_precision.py MODEL [--dataset embedded] [--precision bfloat16] [--device cpu]

MODEL: anything `deepgaze_hub.load` takes, e.g. the model directory `deepgaze-hub demo` writes
(``deepgaze-demo/run/model``) or one trained with
``deepgaze-hub train --config synthetic-small --set model.backbone.weights=null``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepgaze_hub.data.embedded import open_dataset
from deepgaze_hub.evaluation.evaluate import model_log_densities
from deepgaze_hub.evaluation.information import information_gain
from deepgaze_hub.hub import load


def scored(model, dataset, precision: str, device: str) -> tuple[list[torch.Tensor], float]:
    """The model's log densities of every image with the backbone in ``precision``, and the seconds."""
    model.precision = precision
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            maps = model_log_densities(model, dataset, batch_size=4, device=device, progress=False)
        return maps, time.perf_counter() - start
    finally:
        model.precision = "float32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each precision (interleaved)")
    args = parser.parse_args()
    model = load(args.model, map_location=args.device)
    dataset = open_dataset(args.dataset)
    fix = dataset.fixations
    runs: dict[str, list[float]] = {"float32": [], args.precision: []}
    maps: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.repeats):
        for precision in runs:
            maps[precision], seconds = scored(model, dataset, precision, args.device)
            runs[precision].append(seconds)
    gains = {p: information_gain(maps[p], fix.x, fix.y, fix.image).mean_over_fixations for p in runs}
    change = max(float((a - b).abs().max()) for a, b in zip(maps["float32"], maps[args.precision]))
    seconds = {p: float(np.median(v)) for p, v in runs.items()}
    print(f"{args.model} on {args.dataset} ({len(dataset)} images, {len(fix.x)} fixations), device {args.device}, "
          f"torch {torch.__version__}")  # fmt: skip
    for precision in runs:
        print(f"  {precision:<9} IG {gains[precision]:+.5f} bits/fixation   scoring time {seconds[precision]:.2f} s")
    loss = gains["float32"] - gains[args.precision]
    print(f"IG float32 - {args.precision}: {loss:+.5f} bits/fixation (goal: at most 0.01 lost)")
    print(f"largest change of a log density: {change:.4f} nats")
    print(f"time {args.precision} / float32: {seconds[args.precision] / seconds['float32']:.2f}")


if __name__ == "__main__":
    main()
