"""Sizes and times of the fixation-data pipeline on a generated dataset (default 1000 images x 15 observers).

Steps, all on one synthetic dataset so the numbers are side by side:

1. generate it (PNG images + float32 true densities) and write the dataset file;
2. export it to a CSV folder and to pysaliency files, and import each back (timed; each import
   decodes and hashes every image);
3. open the dataset and read random images (what a DataLoader worker does);
4. fit the centre bias (leave-one-image-out) and the gold standard (leave-one-observer-out).

Usage:  python benchmarks/bench_data.py [--images 1000] [--observers 15] [--size 384x512] [--workdir DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepgaze_hub.baselines import fit_centerbias, fit_gold_standard
from deepgaze_hub.data import (
    FixationDataset,
    export_csv,
    export_pysaliency,
    import_csv,
    import_pysaliency,
    make_synthetic_dataset,
)


def folder_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--observers", type=int, default=15)
    parser.add_argument("--size", default="384x512", help="HxW")
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temporary folder, removed afterwards)")
    parser.add_argument("--device", default="cpu", help="where the baseline fits run (cpu, cuda)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        run(Path(tmp), args.images, args.observers, (height, width), args.device)


def run(work: Path, num_images: int, observers: int, size: tuple[int, int], device: str) -> None:
    rows = []

    def timed(label, function, *a, **k):
        start = time.perf_counter()
        result = function(*a, **k)
        rows.append((label, time.perf_counter() - start))
        return result

    print(f"{num_images} images of {size[0]}x{size[1]} px, {observers} observers, fits on {device}, torch threads {torch.get_num_threads()}")
    dataset = timed("generate + write synthetic", make_synthetic_dataset, work / "synthetic.h5", num_images, size=size, num_observers=observers, seed=0)
    fixations = len(dataset.fixations)
    timed("export CSV folder", export_csv, dataset, work / "csv")
    from_csv = timed("import CSV folder", import_csv, work / "csv" / "fixations.csv", work / "csv" / "images", work / "from_csv.h5")
    timed("export pysaliency", export_pysaliency, dataset, work / "pysaliency" / "stimuli.hdf5", work / "pysaliency" / "fixations.hdf5")
    from_pysaliency = timed("import pysaliency", import_pysaliency, work / "pysaliency" / "stimuli.hdf5", work / "pysaliency" / "fixations.hdf5", work / "from_pysaliency.h5")
    assert from_csv.fixations.equals(dataset.fixations) and from_pysaliency.image_ids == dataset.image_ids

    opened = timed("open dataset (validate all fixations)", FixationDataset.open, work / "from_csv.h5")
    order = np.random.default_rng(0).permutation(len(opened))[:200]
    timed("load 200 random images", lambda: [opened.load_image(int(i)) for i in order])
    centerbias = timed("fit centre bias", fit_centerbias, dataset, device=device)
    gold = timed("fit gold standard", fit_gold_standard, dataset, centerbias, device=device)

    print(f"\n{fixations} fixations ({fixations / num_images:.1f} per image)")
    print(f"{'step':<40}{'seconds':>10}{'ms/image':>10}")
    for label, seconds in rows:
        print(f"{label:<40}{seconds:>10.2f}{1000 * seconds / num_images:>10.2f}" if "200" not in label else f"{label:<40}{seconds:>10.2f}{1000 * seconds / 200:>10.2f}")
    images_bytes = folder_size(work / "csv" / "images")
    print(f"\n{'file':<40}{'MB':>10}{'x images':>10}")
    for label, path in [
        ("image files (PNG)", work / "csv" / "images"),
        ("fixations.csv", work / "csv" / "fixations.csv"),
        ("dataset with true densities", work / "synthetic.h5"),
        ("dataset imported from CSV", work / "from_csv.h5"),
        ("pysaliency fixations.hdf5", work / "pysaliency" / "fixations.hdf5"),
    ]:
        size_bytes = folder_size(path)
        print(f"{label:<40}{size_bytes / 1e6:>10.1f}{size_bytes / images_bytes:>10.3f}")
    bits = 1 / math.log(2)
    print(
        f"\ncentre bias: bandwidth {centerbias.bandwidth:.4f}, uniform weight {centerbias.uniform_weight:.2g}, "
        f"{centerbias.cv_log_likelihood * bits:.3f} bits/fixation ({centerbias.cv})"
    )
    print(f"gold standard: bandwidth {gold.bandwidth:.4f}, centre-bias weight {gold.centerbias_weight:.3g}, {gold.cv_log_likelihood * bits:.3f} bits/fixation")


if __name__ == "__main__":
    main()
