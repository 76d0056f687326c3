"""``deepgaze-hub predict`` end to end on a folder with a bad file in it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.cli import main
from deepgaze_hub.io.images import load_image
from deepgaze_hub.visualization import density_overlay


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = DeepGaze(
        DeepGazeConfig(
            backbone=BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"], channels=None),
            num_members=2,
        )
    )
    directory = tmp_path_factory.mktemp("model")
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((rng.random((70, 100)) * 255).astype(np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image, not picked up")
    return folder


def test_predict_writes_npy_and_png_skips_bad_files_and_resumes(model_dir, images, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["predict", str(images), "--model", str(model_dir), "--out", str(out)])
    assert status == 1  # one image failed
    err = capsys.readouterr().err
    assert "broken.png" in err and "wrote 2 of 3" in err
    a = np.load(out / "photos" / "a.npy")
    assert a.shape == (90, 120) and a.dtype == np.float32
    assert abs(np.exp(a.astype(np.float64)).sum() - 1) < 1e-4
    expected = DeepGaze.from_pretrained(model_dir).predict(images / "a.png").numpy()
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)
    assert Image.open(out / "photos" / "sub" / "b.png").size == (100, 70)
    assert not list(out.rglob("*.partial")) and not (out / "photos" / "broken.npy").exists()

    before = (out / "photos" / "a.npy").stat().st_mtime_ns
    status = main(["predict", str(images), "--model", str(model_dir), "--out", str(out), "--format", "npy,png"])
    assert status == 1 and "2 already done" in capsys.readouterr().err
    assert (out / "photos" / "a.npy").stat().st_mtime_ns == before


def test_overlays_are_the_overlay_of_the_image_and_its_density(model_dir, tmp_path):
    """Each PNG holds exactly density_overlay(image, .npy): 8-bit RGB and grayscale inputs (drawn on
    the decoded bytes) and a 16-bit one (rounded from its float pixels)."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "inputs"
    folder.mkdir()
    rgb = (rng.random((50, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.jpg")
    Image.fromarray((rng.random((70, 90)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--model", str(model_dir), "--out", str(out)]) == 0
    for image in sorted(folder.iterdir()):
        written = Image.open(out / "inputs" / f"{image.stem}.png")
        assert written.format == "PNG" and written.mode == "RGB"
        expected = density_overlay(load_image(image), np.load(out / "inputs" / f"{image.stem}.npy"))
        np.testing.assert_array_equal(np.asarray(written), np.asarray(expected))


def test_single_file_and_npy_only(model_dir, images, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(images / "a.png"), "--model", str(model_dir), "--out", str(out), "--format", "npy"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"]


def test_bad_arguments_are_errors_not_tracebacks(model_dir, images, tmp_path, capsys):
    # usage errors (argparse): 2
    assert main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path), "--format", "gif"]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--device", "foo"]) == 2
    assert "unknown device 'foo'" in capsys.readouterr().err
    assert main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--max-pixels", "0"]) == 2
    assert "--max-pixels" in capsys.readouterr().err
    # runtime errors: 1, one line, no traceback
    assert main(["predict", str(images / "a.png"), "--model", str(tmp_path / "nomodel"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "nomodel" in err and "error:" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("mine")
    assert main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "afile")]) == 1
    err = capsys.readouterr().err
    assert "--out" in err and "existing file" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(model_dir, images, tmp_path, capsys):
    assert main(["predict", str(images), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda: CUDA is not available" in err and "--device cpu" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
