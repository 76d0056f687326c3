"""Throughput of DeepGaze models on a GPU (or, saying so, on the CPU): images/s and peak memory.

For each model (the registry's DeepGaze II on VGG-19, DeepGaze I and the 5-backbone DeepGaze IIE,
built offline with random weights, and one single-readout model per backbone preset), each
precision (float32, bfloat16; float16 on GPUs) and each batch size, prints images/s of the full forward pass (backbone, readout, finalizer) on
random 1024x768 images, and the peak memory of the device (CUDA: ``max_memory_allocated``; CPU:
the process's peak resident set, which only grows). Backbones have random weights: timing does
not depend on their values. A configuration that runs out of memory is reported as OOM and the
next one goes on.

    python benchmarks/bench_gpu.py [--device cuda] [--batch-sizes 1,2,4,8,16,32] [--size 1024x768]
                                   [--models all|deepgaze2-vgg19,deepgaze2e,densenet201,...] [--seconds 3]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time

import torch

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.hub.official import DEEPGAZE1, DEEPGAZE2E, official_config
from deepgaze_hub.io.images import is_out_of_memory
from deepgaze_hub.model.config import BACKBONE_PRESETS


#: Models of the hub's registry, built offline with random weights (the published DeepGaze I and
#: IIE architectures as the converter makes them, before their weights are loaded).
REGISTRY_MODELS = ("deepgaze2-vgg19", DEEPGAZE1, DEEPGAZE2E)


def build(name: str, device: torch.device) -> DeepGaze:
    """A registry model (`REGISTRY_MODELS`) or a one-member model on the backbone preset ``name``,
    random weights (timing does not depend on their values)."""
    if name in (DEEPGAZE1, DEEPGAZE2E):
        config = official_config(name)  # backbones "stored": randomly initialised, nothing loaded
    elif name in ("deepgaze2-vgg19", "vgg19"):
        config = DeepGazeConfig(backbone=BackboneConfig(weights=None))
    else:
        config = DeepGazeConfig(backbone=BackboneConfig.preset(name, weights=None))
    return DeepGaze(config).to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def images_per_second(model: DeepGaze, batch: int, size: tuple[int, int], seconds: float) -> float:
    """Full forward passes on a (batch, 3, H, W) input for about ``seconds``; images per second."""
    device = model.device
    images = torch.rand(batch, 3, *size, device=device) * 255
    with torch.inference_mode():
        model(images)  # warm-up (cuDNN autotuning, allocator)
        sync(device)
        runs, start = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - start < seconds:
            model(images)
            runs += 1
        sync(device)
    return runs * batch / (time.perf_counter() - start)


def measure(model: DeepGaze, precision: str, batch: int, size: tuple[int, int], seconds: float) -> str:
    device = model.device
    model.precision = precision  # every backbone of the model
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        rate = images_per_second(model, batch, size, seconds)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        return f"{'OOM':>9}"
    finally:
        model.precision = "float32"
    return f"{rate:9.2f} ({peak_memory_mib(device):7.0f} MiB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    parser.add_argument(
        "--models", default="all", help=f"comma-separated: {', '.join(REGISTRY_MODELS)} and/or backbone presets"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    args = parser.parse_args()
    device = torch.device(args.device)
    width, height = map(int, args.size.lower().split("x"))
    batches = [int(b) for b in args.batch_sizes.split(",")]
    presets = sorted(set(BACKBONE_PRESETS) - {"vgg19"})
    names = [*REGISTRY_MODELS, *presets] if args.models == "all" else args.models.split(",")
    precisions = ["float32", "bfloat16"] + (["float16"] if device.type == "cuda" else [])
    if device.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads): NOT a GPU figure"
        print("bench_gpu: no GPU selected, running on the CPU; the figures below are CPU figures", file=sys.stderr)
    print(f"deepgaze-hub throughput: {width}x{height}, {where}, torch {torch.__version__}")
    print("images/s (peak memory) per batch size")
    for name in names:
        model = build(name, device)
        for precision in precisions:
            cells = [measure(model, precision, batch, (height, width), args.seconds) for batch in batches]
            print(f"{name:<16} {precision:<9} " + "  ".join(f"B={b}: {c}" for b, c in zip(batches, cells)), flush=True)
        del model


if __name__ == "__main__":
    main()
