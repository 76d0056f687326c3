"""``deepgaze-hub data ...`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datafiles import (
    random_image,
    write_file_stimuli,
    write_fixation_trains,
    write_salicon_mat,
)

from deepgaze_hub.baselines import CenterBiasModel
from deepgaze_hub.cli import main
from deepgaze_hub.data import FixationDataset


@pytest.fixture
def synthetic(tmp_path, capsys):
    out = tmp_path / "syn.h5"
    assert main(["data", "synthetic", "--out", str(out), "--images", "6", "--size", "24x32", "--observers", "3", "--fixations", "4-6", "--seed", "2"]) == 0
    capsys.readouterr()
    return out


def test_synthetic_info_folds_and_refusing_to_overwrite(synthetic, tmp_path, capsys):
    assert main(["data", "info", str(synthetic), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 6 and info["true densities"] and info["observers"] == 3 and info["image sizes (HxW)"] == {"24x32": 6}
    assert main(["data", "info", str(synthetic)]) == 0 and "fixations per image" in capsys.readouterr().out
    assert main(["data", "folds", str(synthetic), "--k", "3", "--out", str(tmp_path / "folds.csv")]) == 0
    assert capsys.readouterr().out.count("fold ") == 3
    rows = (tmp_path / "folds.csv").read_text().splitlines()
    assert rows[0] == "image,id,fold" and len(rows) == 7
    assert main(["data", "synthetic", "--out", str(synthetic), "--images", "2"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_export_and_import_csv_and_pysaliency(synthetic, tmp_path, capsys):
    original = FixationDataset.open(synthetic)
    assert main(["data", "export", "csv", str(synthetic), "--out", str(tmp_path / "csv")]) == 0
    assert main(["data", "import", "csv", str(tmp_path / "csv" / "fixations.csv"), "--images", str(tmp_path / "csv" / "images"), "--out", str(tmp_path / "a.h5"), "--time-unit", "s"]) == 0
    assert "wrote" in capsys.readouterr().err
    assert FixationDataset.open(tmp_path / "a.h5").fixations.equals(original.fixations)
    assert main(["data", "export", "pysaliency", str(synthetic), "--stimuli", str(tmp_path / "p" / "stimuli.hdf5"), "--fixations", str(tmp_path / "p" / "fixations.hdf5")]) == 0
    assert "FixationTrains" in capsys.readouterr().err
    assert main(["data", "import", "pysaliency", "--stimuli", str(tmp_path / "p" / "stimuli.hdf5"), "--fixations", str(tmp_path / "p" / "fixations.hdf5"), "--out", str(tmp_path / "b.h5")]) == 0
    assert FixationDataset.open(tmp_path / "b.h5").image_ids == original.image_ids


def test_import_salicon_and_mit1003_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "salicon"
    random_image(root / "images" / "val" / "COCO_val2014_1.jpg", 20, 30, seed=0)
    write_salicon_mat(root / "fixations" / "val" / "COCO_val2014_1.mat", [{"fixations": [[1, 1], [31, 2]], "location": [[2, 2]], "timestamp": [[5]]}])
    assert main(["data", "import", "salicon", str(root), "--split", "val", "--out", str(tmp_path / "s.h5"), "--outside", "clip"]) == 0
    assert "1 outside their image (clip)" in capsys.readouterr().err
    mit = tmp_path / "mit" / "MIT1003"
    random_image(mit / "stimuli" / "a.jpeg", 20, 30, seed=1)
    write_file_stimuli(mit / "stimuli.hdf5", ["stimuli/a.jpeg"], [(20, 30, 3)])
    write_fixation_trains(mit / "fixations.hdf5", [{"xs": [1.0], "ys": [2.0], "ts": [0.0], "n": 0, "subject": 0, "durations": [0.1]}])
    assert main(["data", "import", "mit1003", str(tmp_path / "mit"), "--out", str(tmp_path / "m.h5")]) == 0
    assert len(FixationDataset.open(tmp_path / "m.h5").fixations) == 1


def test_baselines_command_writes_model_and_template(synthetic, tmp_path, capsys):
    args = ["data", "baselines", str(synthetic), "--out", str(tmp_path / "cb.npz"), "--template", str(tmp_path / "t.npy"), "--shape", "16x20", "--gold"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "leave-one-image-out log-likelihood" in out and "gold standard" in out and "bits/fixation" in out
    template = np.load(tmp_path / "t.npy")
    assert template.shape == (16, 20) and template.dtype == np.float32 and abs(np.exp(template.astype(float)).sum() - 1) < 1e-5
    assert CenterBiasModel.load(tmp_path / "cb.npz").histogram.sum() == len(FixationDataset.open(synthetic).fixations)
    assert main(["data", "baselines", str(synthetic), "--fold", "0", "--k", "3"]) == 0


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    (tmp_path / "fix.csv").write_text("image,x\n")
    (tmp_path / "img").mkdir()
    status = main(["data", "import", "csv", str(tmp_path / "fix.csv"), "--images", str(tmp_path / "img"), "--out", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert status == 1 and "deepgaze-hub data: error:" in err and "fix.csv" in err and "Traceback" not in err
    assert main(["data", "info", str(tmp_path / "missing.h5")]) == 1
    assert "missing.h5: no such dataset file" in capsys.readouterr().err
    assert main(["data", "synthetic", "--out", str(tmp_path / "x.h5"), "--size", "big"]) == 2  # a usage error
    assert "argument --size: takes two whole numbers separated by 'x', got 'big'" in capsys.readouterr().err


def test_default_prints_the_cached_path(tmp_path, capsys):
    assert main(["data", "default", "--cache-dir", str(tmp_path)]) == 0
    path = capsys.readouterr().out.strip()
    assert path.startswith(str(tmp_path)) and len(FixationDataset.open(path)) == 40
