"""Every code block of README.md runs, in order, in a fresh workspace, so the README cannot rot.

Blocks run as a user would run them (bash blocks in bash, Python blocks with `python`, the YAML
recipe written to its file), with a short list of test stand-ins applied first: the tiny
squeezenet backbone for VGG-19 (no ImageNet download here), small SALICON / MIT1003 stand-ins in the real file formats for ~/data, a free
port for 8000. Every stand-in must match README text, and every block that does not run must say
why and name the test that covers it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from datafiles import random_image, write_judd_mat, write_salicon_mat

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip (.+?) -->")

#: Blocks that cannot run in a test, with where their code path is covered instead.
ALLOWED_SKIPS = {
    "the test command itself; .ci/run runs it",
    "needs the published deepgaze2-vgg19 weights; tests/test_hub_registry.py runs these entry points against a local Hub",
    "needs a Hugging Face account and network; tests/test_hub_roundtrip.py pushes and loads through a local Hub server",
    "needs network access to the Hugging Face Hub; tests/test_hub_registry.py loads both kinds through a local Hub",
    "starts a long-running server; tests/test_service_hardening.py covers token authentication",
    "starts a long-running server; tests/test_service_protocol.py speaks the protocol as pysaliency's client does",
    "downloads the authors' release files; tests/test_family_hub.py runs the same path against a local HTTP server",
}

TINY = "model.backbone.name=squeezenet1_1 model.backbone.weights=null \"model.backbone.layers=[features.9,features.12]\""


def stand_ins(workspace: Path, port: int) -> list[tuple[str, str]]:
    return [
        ('pip install -e ".[dev]"\n', ""),  # the install itself is what .ci/run does before the tests
        ("deepgaze-hub demo\n", "deepgaze-hub demo --epochs 8\n"),
        ("{name: vgg19, weights: IMAGENET1K_V1}", "{name: squeezenet1_1, weights: null, layers: [features.9, features.12]}"),
        ('BackboneConfig(weights="IMAGENET1K_V1")', 'BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"])'),
        ("~/data", str(workspace / "data")),
        ("data.mit1003=mit1003.h5\n", f"data.mit1003=mit1003.h5 {TINY} stages.0.epochs=2 stages.1.epochs=2\n"),
        ("torchrun --nproc_per_node 4 -m deepgaze_hub train --config my-recipe.yaml --set trainer.devices=4 trainer.strategy=ddp",
         "torchrun --nproc_per_node 2 -m deepgaze_hub train --config my-recipe.yaml --run-dir runs/ddp --set trainer.devices=2 trainer.strategy=ddp trainer.accelerator=cpu"),
        ("127.0.0.1:8000", f"127.0.0.1:{port}"),
        ("--port 8000", f"--port {port}"),
    ]  # fmt: skip


@dataclass
class Block:
    language: str
    text: str
    line: int
    skip: str | None


def readme_blocks(text: str) -> list[Block]:
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\w+)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, language, start = len(match.group(1)), match.group(2), i
        body = []
        i += 1
        while not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(previous)
        blocks.append(Block(language, "\n".join(body) + "\n", start + 1, skip.group(1) if skip else None))
        i += 1
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(workspace: Path) -> None:
    """What a user would have: photos with a fixations CSV, SALICON and MIT1003 downloads."""
    rng = np.random.default_rng(0)
    names = ["beach.jpg", "street.png"] + [f"scene{i:02d}.jpg" for i in range(10)]
    rows = ["image,x,y,observer"]
    for k, name in enumerate(names):
        random_image(workspace / "photos" / name, 96, 128, seed=k)
        for observer in range(3):
            for _ in range(5):
                rows.append(f"{name},{rng.uniform(20, 108):.2f},{rng.uniform(15, 80):.2f},p{observer}")
    (workspace / "fixations.csv").write_text("\n".join(rows) + "\n")

    salicon = workspace / "data" / "SALICON"
    for k in range(12):
        name = f"COCO_train2014_{k:012d}"
        random_image(salicon / "images" / "train" / f"{name}.jpg", 96, 128, seed=100 + k)
        observers = [
            {"fixations": np.column_stack([rng.uniform(1, 128, 6), rng.uniform(1, 96, 6)]), "location": np.zeros((0, 2)), "timestamp": np.zeros((0, 1))}
            for _ in range(3)
        ]
        write_salicon_mat(salicon / "fixations" / "train" / f"{name}.mat", observers, resolution=(96, 128), image_name=name)

    mit = workspace / "data" / "mit1003"
    for k in range(12):
        name = f"i{k:03d}.jpeg"
        random_image(mit / "ALLSTIMULI" / name, 96, 128, seed=200 + k)
        for observer in ("CNG", "ajs", "emb"):
            points = np.column_stack([rng.uniform(1, 127, 7), rng.uniform(1, 95, 7)])
            write_judd_mat(mit / "extracted" / f"{name}_{observer}.mat", points, np.arange(7) * 300.0, np.full(7, 250.0))


def run_block(block: Block, workspace: Path, env: dict[str, str], servers: list) -> None:
    where = f"README.md line {block.line}"
    if block.language == "yaml":
        name = re.search(r"^name: (\S+)", block.text, re.M).group(1)
        (workspace / f"{name}.yaml").write_text(block.text)
        return
    if block.language == "python":
        command = [sys.executable, "-c", block.text]
    elif block.language == "bash":
        lines = [line for line in block.text.splitlines() if line.strip() and not line.startswith("#")]
        serve = [line for line in lines if line.startswith("deepgaze-hub serve")]
        for line in serve:  # a long-running server: start it, wait until it answers
            servers.append(subprocess.Popen(["bash", "-c", line], cwd=workspace, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
            port = re.search(r"--port (\d+)", line).group(1)
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except OSError:
                    assert servers[-1].poll() is None, f"{where}: the server exited: {servers[-1].stderr.read().decode()[-2000:]}"
                    assert time.monotonic() < deadline, f"{where}: the server did not come up"
                    time.sleep(0.5)
        rest = "\n".join(line for line in lines if line not in serve)
        if not rest:
            return
        command = ["bash", "-e", "-o", "pipefail", "-c", rest]
    else:
        raise AssertionError(f"{where}: no runner for ```{block.language} blocks")
    process = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, f"{where} failed:\n{block.text}\n--- stdout\n{process.stdout[-3000:]}\n--- stderr\n{process.stderr[-5000:]}"


def test_every_readme_block_runs(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    make_workspace(workspace)
    port = free_port()
    text = README.read_text()
    for old, _ in stand_ins(workspace, port):
        assert old in text, f"stand-in {old!r} no longer matches README.md"
    for old, new in stand_ins(workspace, port):
        text = text.replace(old, new)
    env = dict(
        os.environ,
        DEEPGAZE_HUB_CACHE=str(tmp_path / "cache"),
        TORCH_HOME=str(tmp_path / "torch"),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    blocks = readme_blocks(text)
    assert len(blocks) >= 15
    skipped = [b for b in blocks if b.skip]
    assert all(b.skip in ALLOWED_SKIPS for b in skipped), [b.skip for b in skipped]
    for reason in ALLOWED_SKIPS:
        covering = re.search(r"tests/\S+\.py", reason)
        assert covering is None or (ROOT / covering.group(0)).is_file()
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    servers: list[subprocess.Popen] = []
    try:
        for block in blocks:
            if not block.skip:
                run_block(block, workspace, env, servers)
    finally:
        for server in servers:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
    # what the blocks promised exists
    assert (workspace / "deepgaze-demo" / "run" / "model" / "model.safetensors").is_file()
    assert (workspace / "predictions" / "photos" / "beach.npy").is_file()
    assert (workspace / "runs" / "my-recipe" / "model" / "crossval.json").is_file()
    assert (workspace / "runs" / "ddp" / "model" / "model.safetensors").is_file()
    assert (workspace / "runs" / "deepgaze2-vgg19" / "model" / "config.json").is_file()
    assert (workspace / "overlay.png").is_file() and (workspace / "log_density.npy").is_file()
