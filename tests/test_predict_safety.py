"""``deepgaze-hub predict`` never loses the user's data and never stops a folder run for one image."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.cli import main
from deepgaze_hub.io.atomic import atomic_path, is_partial_name, remove_stale_partials
from deepgaze_hub.model.backbone import FeatureExtractor

from test_io_images_limits import write_solid_png


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = DeepGazeConfig(
        backbone=BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None)
    )
    directory = tmp_path_factory.mktemp("model")
    DeepGaze(config).save_pretrained(directory)
    return str(directory)


@pytest.fixture
def imgs(tmp_path, monkeypatch):
    """A folder imgs/ with a.png and b.png, the working directory being its parent."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    (tmp_path / "imgs").mkdir()
    for name in ("a", "b"):
        Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "imgs" / f"{name}.png")
    return tmp_path / "imgs"


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("formats", ["npy,png", "png"])
def test_out_dot_never_overwrites_or_skips_the_inputs(model_dir, imgs, capsys, formats):
    before = _snapshot(imgs)
    assert main(["predict", "imgs", "--model", model_dir, "--out", ".", "--format", formats]) == 1
    err = capsys.readouterr().err
    assert "inside the output folder" in err and "already done" not in err and "Traceback" not in err
    assert _snapshot(imgs) == before  # nothing written, nothing replaced


def test_an_output_landing_on_an_input_file_is_refused(model_dir, imgs, capsys):
    before = _snapshot(imgs)
    status = main(["predict", "imgs/a.png", "imgs/b.png", "--model", model_dir, "--out", "imgs", "--format", "png"])
    assert status == 1
    err = capsys.readouterr().err
    assert "would overwrite the input image imgs/a.png" in err and "already done" not in err
    assert _snapshot(imgs) == before
    # the same files with the .npy output only are fine: nothing collides
    assert main(["predict", "imgs/a.png", "--model", model_dir, "--out", "imgs", "--format", "npy"]) == 0
    after = _snapshot(imgs)
    assert (imgs / "a.npy").is_file() and all(after[name] == data for name, data in before.items())


def test_an_output_folder_inside_the_input_folder_is_never_read(model_dir, imgs, capsys):
    for run in range(3):
        assert main(["predict", "imgs", "--model", model_dir, "--out", "imgs/preds"]) == 0
        err = capsys.readouterr().err
        assert f"2 images, {0 if run == 0 else 2} already done" in err
    outputs = sorted(str(p.relative_to(imgs)) for p in imgs.rglob("*") if p.is_file())
    assert outputs == ["a.png", "b.png", "preds/imgs/a.npy", "preds/imgs/a.png", "preds/imgs/b.npy", "preds/imgs/b.png"]


def test_partials_left_by_a_killed_run_are_removed_next_time(model_dir, imgs, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "imgs").mkdir(parents=True)
    stale = out / "imgs" / ".a.npy.0123456789ab.partial"
    fresh = out / "imgs" / ".b.npy.ba9876543210.partial"  # another writer's, still being written
    mine = [out / "notes.partial", out / "imgs" / ".a.npy.partial", imgs / ".a.png.0123456789ab.partial"]
    for path in (stale, fresh, *mine):
        path.write_bytes(b"half")
    old = time.time() - 3600
    for path in (stale, *mine):
        os.utime(path, (old, old))
    assert main(["predict", "imgs", "--model", model_dir, "--out", str(out)]) == 0
    assert "removed 1 unfinished files" in capsys.readouterr().err
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in mine)
    assert (out / "imgs" / "a.npy").is_file()


def test_partial_naming_and_removal(tmp_path):
    with atomic_path(tmp_path / "x.npy") as tmp:
        assert is_partial_name(tmp.name)
        os.utime(tmp, (0, 0))
        assert remove_stale_partials(tmp_path) == [tmp]
        tmp.write_bytes(b"again")  # the writer goes on; its rename still works
    assert (tmp_path / "x.npy").read_bytes() == b"again"
    assert not is_partial_name("x.partial") and not is_partial_name(".x.0123456789AB.partial")
    assert remove_stale_partials(tmp_path / "missing") == []


def test_refused_and_failed_images_never_stop_the_folder(model_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "z"):
        Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(photos / f"{name}.png")
    write_solid_png(photos / "huge.png", 12000, 12000)  # 144 Mpx, ~420 kB on disk
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(photos / "one.png")
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--model", model_dir, "--out", str(out), "--format", "npy"]) == 1
    err = capsys.readouterr().err
    assert f"{photos / 'huge.png'}: refused, 12000x12000 = 144.0 million pixels" in err
    assert f"{photos / 'one.png'}: an image of 1x1 pixels (width x height) is too small" in err
    assert "Tensor" not in err and "image #0" not in err and "wrote 2 of 4 images" in err
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["a.npy", "z.npy"]


def test_out_of_memory_is_said_and_the_run_goes_on(model_dir, tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, size in (("a", 60), ("big", 120), ("c", 60)):
        Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(photos / f"{name}.png")
    real_forward = FeatureExtractor.forward

    def forward(self, images):  # the big image exhausts memory
        if images.device.type != "meta" and images.shape[-1] > 50:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return real_forward(self, images)

    monkeypatch.setattr(FeatureExtractor, "forward", forward)
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--model", model_dir, "--out", str(out), "--format", "npy"]) == 1
    err = capsys.readouterr().err
    assert f"{photos / 'big.png'}: out of memory running the backbone squeezenet1_1 on an image of 120x120" in err
    assert "--max-pixels" in err and "too small" not in err
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["a.npy", "c.npy"]


def test_unreadable_folders_and_unwritable_outputs_are_one_line(model_dir, imgs, tmp_path, capsys, monkeypatch):
    (imgs / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    assert main(["predict", "imgs", "--model", model_dir, "--out", str(out), "--format", "npy"]) == 1
    err = capsys.readouterr().err
    assert "locked: cannot list the folder (Permission denied)" in err and "wrote 2 of 2" in err
    monkeypatch.setattr(os, "scandir", real_scandir)

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "imgs").write_text("a file where the output folder should be")
    assert main(["predict", str(imgs), "--model", model_dir, "--out", str(blocked), "--format", "npy"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot write" in err and "Traceback" not in err
