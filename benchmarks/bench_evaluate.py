"""`deepgaze-hub evaluate` end to end: a plain run against a run reading a feature cache, side by side.

Issue 14's workload: 200 synthetic images of 240x320 (8 observers), a DeepGaze II model with a
randomly initialised VGG-19 (timing does not depend on its weights) and 10 members, scored
cross-validated over 10 folds with every metric, the centre bias, the gold standard and the truth.

Each variant is the real command in a fresh interpreter (imports and model loading count), the
variants interleaved ``--repeats`` times; medians are printed:

* ``plain``: ``deepgaze-hub evaluate ...`` (runs VGG-19 over every image);
* ``cached``: the same with ``--features CACHE``, the cache filled by one untimed run before;
* the ratio cached / plain, and whether both reports hold the same scores.

The wall time minus "Evaluated in" is what the command spends outside the evaluation: starting
the interpreter, importing torch and torchvision, loading the model, writing the report files.
``--breakdown`` also times the parts of the evaluation in this process: model loading, the backbone
pass with the readouts (`model_log_densities`) and the scoring (`evaluate_predictions`).

    python benchmarks/bench_evaluate.py [--workdir DIR] [--images 200] [--size 240x320] [--repeats 3] [--breakdown]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_cli(args: list[str]) -> tuple[float, float]:
    """(wall seconds, the "Evaluated in" seconds it printed) of one ``deepgaze-hub`` command."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deepgaze_hub", *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"deepgaze-hub {' '.join(args)} failed:\n{done.stderr}")
    found = re.search(r"Evaluated in ([0-9.]+) s", done.stdout)
    return wall, float(found.group(1)) if found else float("nan")


def prepare(work: Path, images: int, size: str) -> tuple[Path, Path]:
    """The dataset and the model under ``work`` (made once, reused by later runs)."""
    data, model_dir = work / f"synthetic-{images}-{size}.h5", work / f"vgg19-10-members-{images}-{size}"
    if not data.exists():
        subprocess.run(
            [sys.executable, "-m", "deepgaze_hub", "data", "synthetic", "--out", str(data), "--images", str(images), "--size", size, "-q"],
            check=True,
        )
    if not (model_dir / "config.json").exists():
        import torch

        from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
        from deepgaze_hub.baselines import fit_centerbias
        from deepgaze_hub.data import open_dataset

        torch.manual_seed(0)
        model = DeepGaze(DeepGazeConfig(backbone=BackboneConfig(name="vgg19", weights=None), num_members=10))
        model.set_centerbias(fit_centerbias(open_dataset(data)).template())
        model.save_pretrained(model_dir)
    return data, model_dir


def breakdown(data: Path, model_dir: Path) -> None:
    """Time the parts of one evaluation in this process."""
    from deepgaze_hub.data import open_dataset
    from deepgaze_hub.evaluation.crossval import held_out_members
    from deepgaze_hub.evaluation.evaluate import evaluate_predictions, model_log_densities
    from deepgaze_hub.hub import load

    imported = time.perf_counter()
    dataset = open_dataset(data)
    model = load(str(model_dir), map_location="cpu")
    loaded = time.perf_counter()
    members, _ = held_out_members(model, dataset, {"folds": 10, "fold_seed": 0})
    log_densities = model_log_densities(model, dataset, members=members, progress=False)
    forward = time.perf_counter()
    evaluate_predictions(log_densities, dataset, progress=False)
    scored = time.perf_counter()
    print("\nbreakdown (this process):")
    print(f"  open dataset + load model                     {loaded - imported:6.1f} s")
    print(f"  backbone + readouts over every image          {forward - loaded:6.1f} s")
    print(f"  scoring (all metrics, 4 rows, gold standard)  {scored - forward:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the dataset, model and cache here (default: a temporary folder)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="240x320", help="HEIGHTxWIDTH of the synthetic images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="also time the parts in this process")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        work = args.workdir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        data, model_dir = prepare(work, args.images, args.size)
        command = ["evaluate", "--model", str(model_dir), "--data", str(data), "--folds", "10", "--fold-seed", "0", "-q", "--device", "cpu"]
        cache = work / "features"
        run_cli([*command, "--out", str(work / "fill"), "--features", str(cache)])  # fills the cache (untimed)

        timings: dict[str, list[tuple[float, float]]] = {"plain": [], "cached": []}
        for _ in range(args.repeats):
            timings["plain"].append(run_cli([*command, "--out", str(work / "plain")]))
            timings["cached"].append(run_cli([*command, "--out", str(work / "cached"), "--features", str(cache)]))

        plain, cached = (json.loads((work / name / "report.json").read_text())["rows"] for name in ("plain", "cached"))
        largest = max(abs(plain[row][col] - cached[row][col]) for row in plain for col in plain[row])
        print(f"deepgaze-hub evaluate, {args.images} images of {args.size}, VGG-19 (random init), 10 members, 10 folds")
        print(f"{platform.processor() or platform.machine()}, {args.repeats} interleaved runs, medians\n")
        print("variant   wall       'Evaluated in'   outside it")
        for name, runs in timings.items():
            wall, inside = statistics.median(w for w, _ in runs), statistics.median(e for _, e in runs)
            print(f"{name:8s} {wall:6.1f} s   {inside:6.1f} s         {wall - inside:6.1f} s")
        ratio = statistics.median(w for w, _ in timings["cached"]) / statistics.median(w for w, _ in timings["plain"])
        print(f"\ncached / plain wall time: {ratio:.3f}")
        print(f"largest difference between the two reports' scores: {largest:.2e}")
        if args.breakdown:
            breakdown(data, model_dir)


if __name__ == "__main__":
    main()
