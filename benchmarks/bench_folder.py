"""Folder prediction keeps the model busy: ``deepgaze-hub predict`` images/s vs the forward-only rate.

Writes N generated JPEG photos (default 100 of 1024x768) and a DeepGaze II model with a random
VGG-19 (timing does not depend on weights), then measures, interleaved:

* the forward-only rate: ``model(batch)`` on already decoded tensors, batches of --batch-size;
* folder prediction as ``deepgaze-hub predict FOLDER --batch-size B`` runs it (its
  `FolderPredictor`: decode, forward, resample, write, with the model already loaded), for each
  output format asked (default: npy, then npy,png).

Prints images/s of each and predict / forward-only (goal >= 0.90), and the share of the predict
run's wall time that the model was running (on a machine shared with other jobs the two
forward-only measurements, before and after, show how much the load moved).

    python benchmarks/bench_folder.py [--count 100] [--size 1024x768] [--batch-size 8] [--formats npy npy,png]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.cli._predict_run import FolderPredictor, PredictOptions, output_stems


def write_photos(folder: Path, count: int, width: int, height: int) -> None:
    """``count`` smooth random JPEG photos (quality 90), like camera images in size and decoding cost."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        coarse = rng.random((height // 32 + 1, width // 32 + 1, 3)) * 255
        picture = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
        noisy = np.asarray(picture, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / f"photo_{i:04d}.jpg", quality=90)


def forward_rate(model: DeepGaze, count: int, batch: int, width: int, height: int) -> float:
    """Images/s of ``model(images)`` alone, ``count`` images in batches of ``batch``."""
    images = torch.rand(batch, 3, height, width) * 255
    with torch.inference_mode():
        model(images)  # warm-up (kernels are chosen per input shape)
        start = time.perf_counter()
        for done in range(0, count, batch):
            model(images[: min(batch, count - done)])
    return count / (time.perf_counter() - start)


def predict_rate(model: DeepGaze, photos: Path, out: Path, batch: int, formats: str) -> tuple[float, float]:
    """Images/s of the predict command's pipeline over the folder ``photos`` (model loaded), and
    the fraction of its wall time the model was running (busy fraction)."""
    todo = output_stems([str(photos)], out)
    predictor = FolderPredictor(model, out, formats.split(","), PredictOptions(batch_size=batch))
    busy: list[float] = []
    run_model = predictor._run_model

    def timed_run_model(items):  # the time the model itself runs inside the pipeline
        started = time.perf_counter()
        try:
            return run_model(items)
        finally:
            busy.append(time.perf_counter() - started)

    predictor._run_model = timed_run_model
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        failed = predictor.run(todo)
    seconds = time.perf_counter() - start
    if failed:
        sys.exit(f"predict failed on {failed} images: {predictor.failures[:3]}")
    return len(todo) / seconds, sum(busy) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--forward-count", type=int, default=16, help="images per forward-only measurement")
    parser.add_argument("--formats", nargs="+", default=["npy", "npy,png"])
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_photos(root / "photos", args.count, width, height)
        torch.manual_seed(0)
        model = DeepGaze(DeepGazeConfig(backbone=BackboneConfig(weights=None))).eval()
        print(f"deepgaze-hub folder prediction: {args.count} JPEGs of {width}x{height}, VGG-19, batch "
              f"{args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
        for formats in args.formats:
            before = forward_rate(model, args.forward_count, args.batch_size, width, height)
            rate, busy = predict_rate(model, root / "photos", root / f"out-{formats}", args.batch_size, formats)
            after = forward_rate(model, args.forward_count, args.batch_size, width, height)
            forward = (before + after) / 2
            print(f"  --format {formats:<8} predict {rate:.3f} images/s, forward-only {forward:.3f} images/s "
                  f"(before {before:.3f}, after {after:.3f}); ratio {rate / forward:.3f} (goal >= 0.90); "
                  f"model busy {busy:.1%} of the predict run", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
