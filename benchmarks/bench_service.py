"""Load test of `deepgaze-hub serve`: throughput and latency with micro-batching off and on.

Starts the real command (``python -m deepgaze_hub serve``) twice on 127.0.0.1 with a small
random-init model (SqueezeNet 1.1 backbone, 2 members, CPU): with ``--max-batch 1`` (batching off)
and with ``--max-batch N`` (on). This process loads them over loopback: C client threads with
keep-alive connections POST the same JPEG, bounded by a request count and a time limit per level,
in rounds that alternate between the two services so that other load on the machine hits both
alike. Prints requests/s, p50/p99 latency and the mean batch size the service reports.

    python benchmarks/bench_service.py                      # defaults below
    python benchmarks/bench_service.py --concurrency 1,8,32 --requests 300 --size 640x480
    python benchmarks/bench_service.py --encoding --size 1024x768  # the scanpath protocol's JSON answer
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.io.scale import Scaling
from deepgaze_hub.service.protocol import encode_log_density
from deepgaze_hub.service.settings import ServiceSettings


def save_model(directory: Path) -> None:
    backbone = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    torch.manual_seed(0)
    DeepGaze(DeepGazeConfig(backbone=backbone, num_members=2)).save_pretrained(directory)


def test_image(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class Service:
    """`deepgaze-hub serve` in a child process; ``url`` once it listens."""

    def __init__(self, model_dir: Path, max_batch: int, batch_wait_ms: float) -> None:
        command = [
            sys.executable, "-m", "deepgaze_hub", "serve", "--model", str(model_dir), "--device", "cpu",
            "--port", "0", "--max-batch", str(max_batch), "--batch-wait-ms", str(batch_wait_ms),
            "--max-queue", "1000", "--max-uploads", "1000", "--log-level", "warning",
            "--max-uploads-per-client", "1000",  # every load-test client has the address 127.0.0.1
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stderr], daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if "serving" in line:
                self.url = line.split(" at ")[1].split("/ ")[0]
                self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
                self.port = int(port)
                return

    def health(self) -> dict:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        connection.request("GET", "/healthz")
        return json.loads(connection.getresponse().read())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


@dataclass
class Tally:
    """Latencies (ms), failures, wall time and the service's batch counters over rounds."""

    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    wall: float = 0.0
    batches: int = 0
    images: int = 0

    def row(self) -> dict:
        return {
            "ok": len(self.latencies),
            "failed": self.failed,
            "rps": len(self.latencies) / self.wall,
            "p50": float(np.percentile(self.latencies, 50)),
            "p99": float(np.percentile(self.latencies, 99)),
            "mean_batch": self.images / max(self.batches, 1),
        }


def load(
    service: Service, body: bytes, path: str, concurrency: int, requests: int, seconds: float, tally: Tally
) -> None:
    """C threads POST until ``requests`` are done or ``seconds`` have passed; adds to ``tally``."""
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(service.host, service.port, timeout=120)
        while True:
            with lock:
                if issued[0] >= requests or time.monotonic() > deadline:
                    return
                issued[0] += 1
            start = time.perf_counter()
            connection.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            elapsed = (time.perf_counter() - start) * 1000.0
            with lock:
                if response.status == 200:
                    tally.latencies.append(elapsed)
                else:
                    tally.failed += 1

    before = service.health()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    tally.wall += time.perf_counter() - start
    after = service.health()
    tally.batches += after["batches"] - before["batches"]
    tally.images += after["images"] - before["images"]


def encoding_cost(width: int, height: int, repeats: int = 3) -> None:
    """Time and size of ``/conditional_log_density``'s JSON answer for a (height, width) log density:
    the service's encoder (orjson, shortest exact float32) against Python's json module."""
    rng = np.random.default_rng(0)
    log_density = torch.from_numpy((rng.standard_normal((height, width)) - np.log(width * height)).astype(np.float32))
    scaling = Scaling((height, width), (height, width), 1.0, "as is")
    encoders = {
        "service (orjson)": lambda: encode_log_density(log_density, scaling),
        "json.dumps(tolist())": lambda: json.dumps({"log_density": log_density.numpy().tolist()}).encode(),
    }
    for name, encode in encoders.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            data = encode()
            times.append(time.perf_counter() - start)
        back = np.array(json.loads(data)["log_density"]).astype(np.float32)
        exact = np.array_equal(back, log_density.numpy())
        print(f"{name:22s} {min(times) * 1000:8.1f} ms {len(data) / 1e6:6.2f} MB  float32 round trip exact: {exact}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts (default: 1,4,16)")
    parser.add_argument("--requests", type=int, default=160, help="requests per level and setting (default: 160)")
    parser.add_argument("--seconds", type=float, default=40.0, help="time per level and setting at most (default: 40)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per level (default: 4)")
    parser.add_argument("--size", default="320x240", help="image WIDTHxHEIGHT (default: 320x240)")
    defaults = ServiceSettings()
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, help="batch size with batching on")
    parser.add_argument("--batch-wait-ms", type=float, default=defaults.batch_wait_ms, help="window with batching on")
    parser.add_argument("--output", default="npy", choices=("npy", "json", "png"), help="what each request asks for")
    parser.add_argument(
        "--encoding", action="store_true", help="only time the scanpath protocol's JSON answer for --size, then stop"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.encoding:
        encoding_cost(width, height)
        return
    body = test_image(width, height)
    path = f"/v1/predict?output={args.output}"
    configs = {"off": (1, 0.0), "on": (args.max_batch, args.batch_wait_ms)}

    print(
        f"deepgaze-hub serve load test: squeezenet1_1 backbone, 2 members, CPU ({os.cpu_count()} cores, "
        f"torch {torch.__version__}), {width}x{height} JPEG, output={args.output}; batching on = "
        f"--max-batch {args.max_batch} --batch-wait-ms {args.batch_wait_ms:g}; per level and setting: "
        f"{args.requests} requests (at most {args.seconds:g} s) in {args.rounds} rounds alternating off/on"
    )
    tallies = {(label, level): Tally() for label in configs for level in levels}
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp))
        services = {label: Service(Path(tmp), *settings) for label, settings in configs.items()}
        try:
            for service in services.values():
                load(service, body, path, 2, 10, 30, Tally())  # warm-up
            for level in levels:
                for round_ in range(args.rounds):
                    order = list(configs) if round_ % 2 == 0 else list(reversed(configs))
                    for label in order:  # alternating, so that background load hits both settings alike
                        share = args.requests // args.rounds
                        load(
                            services[label],
                            body,
                            path,
                            level,
                            share,
                            args.seconds / args.rounds,
                            tallies[(label, level)],
                        )
        finally:
            for service in services.values():
                service.stop()

    print_table(tallies, levels, list(configs))


def print_table(tallies: dict, levels: list[int], labels: list[str]) -> None:
    columns = ("clients", "batching", "req/s", "p50 ms", "p99 ms", "batch", "ok", "err")
    widths = (7, 8, 7, 7, 7, 5, 4, 3)
    print("\n" + " | ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for level in levels:
        rows = {label: tallies[(label, level)].row() for label in labels}
        for label, r in rows.items():
            print(
                f"{level:>7} | {label:>8} | {r['rps']:7.1f} | {r['p50']:7.1f} | {r['p99']:7.1f} | "
                f"{r['mean_batch']:5.2f} | {r['ok']:>4} | {r['failed']:>3}"
            )
        print(f"{'':>7}   throughput on/off: {rows['on']['rps'] / rows['off']['rps']:.2f}x")


if __name__ == "__main__":
    main()
