"""Hostile or damaged inputs: tampered dataset files, bad CSV tables, odd output paths (issue 12)."""

from __future__ import annotations

import io
import json
import shutil

import h5py
import numpy as np
import pytest
from datafiles import random_image
from PIL import Image

from deepgaze_hub.cli import main
from deepgaze_hub.data import EMBEDDED, FixationDataset, Fixations, import_csv, open_dataset
from deepgaze_hub.data.fixations import duplicate_mask
from deepgaze_hub.errors import DatasetError


def png_bytes(height: int, width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def dataset_file(tmp_path):
    fixations = Fixations.build(image=[0, 0, 1], x=[1.0, 2.5, 3.0], y=[4.0, 1.0, 2.0], observer=[0, 1, 0])
    FixationDataset.create(
        tmp_path / "d.h5", images=[png_bytes(10, 16, 0), png_bytes(12, 20, 1)], fixations=fixations,
        image_names=["a.png", "b.png"], true_log_densities=[np.full((10, 16), -np.log(160)), np.full((12, 20), -np.log(240))],
    )
    return tmp_path / "d.h5"


def tampered(path, change):
    copy = path.with_name("tampered.h5")
    shutil.copy(path, copy)
    with h5py.File(copy, "r+") as f:
        change(f)
    return copy


# -- open_dataset ---------------------------------------------------------------------------------
def test_open_dataset_takes_the_embedded_name_or_a_file(synthetic_dataset, dataset_file, tmp_path):
    cache = synthetic_dataset.path.parent.parent  # <cache>/datasets/<file>
    assert open_dataset(EMBEDDED, cache_dir=cache).path == synthetic_dataset.path
    assert open_dataset(dataset_file).image_names == ["a.png", "b.png"]
    assert open_dataset(str(dataset_file)).path == dataset_file
    with pytest.raises(DatasetError, match=r"missing\.h5: no such dataset file.*'embedded'"):
        open_dataset(tmp_path / "missing.h5")
    with pytest.raises(DatasetError, match="is a folder, not a dataset file"):
        open_dataset(tmp_path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="junk.h5: cannot read the dataset"):
        open_dataset(tmp_path / "junk.h5")


# -- image sizes (#5) -----------------------------------------------------------------------------
def test_a_tampered_image_size_is_refused_before_anything_is_allocated(dataset_file, capsys):
    def huge(f):
        f["images/size"][0] = [100000, 100000]

    with pytest.raises(DatasetError, match=r"tampered.h5: image 0 \(a.png\): images/size is 100000 x 100000 .*sides must be 1..65535"):
        FixationDataset.open(tampered(dataset_file, huge))

    def wrong(f):
        f["images/size"][1] = [24, 20]

    path = tampered(dataset_file, wrong)
    with pytest.raises(DatasetError, match=r"image 1 \(b.png\): images/size says 24 x 20 .* the stored image is 12 x 20"):
        FixationDataset.open(path)
    assert main(["data", "info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "image 1 (b.png)" in err and "stored image is 12 x 20" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_transposed_size_is_caught_when_the_image_is_decoded(dataset_file):
    def transpose(f):  # same area, so nothing large is allocated; EXIF orientation is read at decode time
        f["images/size"][1] = [20, 12]
        del f["truth/1"]
        f.create_dataset("truth/1", data=np.full((20, 12), -np.log(240), np.float32))

    dataset = FixationDataset.open(tampered(dataset_file, transpose))
    assert dataset.load_image(0).shape == (3, 10, 16)
    with pytest.raises(DatasetError, match=r"tampered.h5: image 1 \(b.png\): decodes to \(12, 20\) \(H, W\), the dataset says \(20, 12\)"):
        dataset.load_image(1)


def test_truth_of_the_wrong_shape_is_refused(dataset_file):
    def reshape(f):
        del f["truth/1"]
        f.create_dataset("truth/1", data=np.zeros((3, 3), np.float32))

    with pytest.raises(DatasetError, match=r"image 1 \(b.png\): truth/1 has shape \(3, 3\)"):
        FixationDataset.open(tampered(dataset_file, reshape))


# -- every declared value is checked (#10) --------------------------------------------------------
def _set_attr(name, value):
    def change(f):
        f.attrs[name] = value
    return change


def _replace(name, **options):
    def change(f):
        del f[name]
        f.create_dataset(name, **options)
    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set_attr("format_version", "1"), r"format_version must be a whole number 1..1, got '1'"),
        (_set_attr("format_version", np.bool_(True)), r"format_version must be a whole number"),
        (_set_attr("format_version", 0), r"format_version must be a whole number 1..1, got 0"),
        (_set_attr("format_version", 7), r"format version 7 is newer"),
        (_set_attr("format", 3), r"not a deepgaze-hub fixation dataset \(format attribute '3'\)"),
        (_set_attr("metadata", "{not json"), r"attribute metadata is not valid JSON"),
        (_set_attr("metadata", "[1, 2]"), r"attribute metadata must be a JSON object, got list"),
        (_set_attr("metadata", json.dumps({"name": 5})), r"metadata field 'name' must be a string, got 5"),
        (_set_attr("metadata", json.dumps({"outside_count": -3})), r"metadata field 'outside_count' must be a whole number >= 0"),
        (_set_attr("metadata", "x" * (2 << 20)), r"attribute metadata must be a JSON text of at most 1048576 bytes"),
        (_replace("fixations/x", shape=(10**9,), dtype=np.float64, chunks=(4096,)), r"'fixations/x' must have shape \(3,\), got shape \(1000000000,\)"),
        (_replace("images/size", data=np.array([[10.0, 16.0], [12.0, 20.0]])), r"'images/size' must hold integers, got float64"),
        (_replace("fixations/offsets", data=np.array([0, 2])), r"'fixations/offsets' must have shape \(3,\)"),
        (_replace("images/name", data=np.array([1, 2])), r"'images/name' must hold strings"),
    ],
)
def test_every_declared_value_is_checked(dataset_file, change, message):
    with pytest.raises(DatasetError, match=message) as error:
        FixationDataset.open(tampered(dataset_file, change))
    assert "tampered.h5" in str(error.value)


def test_arrays_declaring_more_values_than_the_file_stores_are_refused(dataset_file):
    def inflate(f):
        for name in ("image", "x", "y", "observer", "t", "duration", "scanpath", "order"):
            del f[f"fixations/{name}"]
            f.create_dataset(f"fixations/{name}", shape=(10**9,), dtype=np.int64 if name in ("image", "observer", "scanpath", "order") else np.float64, chunks=(1 << 16,))

    with pytest.raises(DatasetError, match=r"'fixations/image' declares 1000000000 values .* stores only 0 bytes"):
        FixationDataset.open(tampered(dataset_file, inflate))


# -- CSV import (#6, #8, #9) and output paths (#7) --------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    random_image(tmp_path / "photos" / "b.png", 20, 30, seed=1)
    random_image(tmp_path / "photos" / "sub" / "a.png", 25, 15, seed=2)
    random_image(tmp_path / "secret.png", 20, 30, seed=3)
    return tmp_path / "photos"


def test_a_nul_byte_in_the_table_is_refused_naming_line_and_column(folder, tmp_path):
    table = tmp_path / "fix.csv"
    table.write_text("image,x,y,observer\nb.png,1,2,s1\nb.png,3,4,s\x002\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"fix.csv, line 3, column 'observer': contains a NUL byte"):
        import_csv(table, folder, tmp_path / "out.h5")
    table.write_text("image,x,y,obs\x00erver\nb.png,1,2,s1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"fix.csv, line 1, column .*contains a NUL byte"):
        import_csv(table, folder, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_a_nul_in_a_stored_name_is_refused(tmp_path):
    fixations = Fixations.build(image=[0], x=[1.0], y=[1.0])
    with pytest.raises(DatasetError, match="observer name 0 .* contains a NUL character"):
        FixationDataset.create(tmp_path / "o.h5", images=[png_bytes(4, 4, 0)], fixations=fixations, observer_names=["a\x00"])
    with pytest.raises(DatasetError, match="image name 'a\\\\x00.png' of image 0 contains a NUL character"):
        FixationDataset.create(tmp_path / "o.h5", images=[png_bytes(4, 4, 0)], fixations=fixations, image_names=["a\x00.png"])


@pytest.mark.parametrize("outside", ["../secret.png", "sub/../../secret.png", "ABSOLUTE"])
def test_image_paths_leading_out_of_the_folder_are_refused_unless_allowed(folder, tmp_path, outside):
    name = str(tmp_path / "secret.png") if outside == "ABSOLUTE" else outside
    table = tmp_path / "fix.csv"
    table.write_text(f"image,x,y,observer\nb.png,1,2,s1\n{name},3,4,s1\n", encoding="utf-8")
    problem = "is an absolute path" if outside == "ABSOLUTE" else "leads out of the image folder"
    with pytest.raises(DatasetError, match=rf"fix.csv, line 3: image .*{problem}.*--allow-outside-images"):
        import_csv(table, folder, tmp_path / "out.h5")
    ds = import_csv(table, folder, tmp_path / "out.h5", allow_outside_images=True)
    assert len(ds) == 2 and name in ds.image_names
    assert ds.metadata["unreferenced_images"] == 1  # sub/a.png; the outside image is not counted as -1


def test_duplicate_rows_are_counted_kept_by_default_or_dropped(folder, tmp_path, capsys):
    table = tmp_path / "fix.csv"
    table.write_text("image,x,y,observer,t\nb.png,1,2,s1,\nb.png,1,2,s1,\nb.png,1,2,s2,\nb.png,1,2,s1,\nb.png,1,2,s1,5\n", encoding="utf-8")
    kept = import_csv(table, folder, tmp_path / "kept.h5")
    assert len(kept.fixations) == 5 and kept.metadata["duplicate_count"] == 2 and kept.metadata["duplicates"] == "kept"
    dropped = import_csv(table, folder, tmp_path / "dropped.h5", drop_duplicates=True)
    assert len(dropped.fixations) == 3 and dropped.metadata["duplicate_count"] == 2 and dropped.metadata["duplicates"] == "dropped"
    assert main(["data", "import", "csv", str(table), "--images", str(folder), "--out", str(tmp_path / "cli.h5"), "--drop-duplicates"]) == 0
    assert "2 rows repeat an earlier row exactly (dropped)" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "kept.h5"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicate fixations"] == 2


def test_duplicate_mask_compares_every_field_and_nan_equal():
    fixations = Fixations.build(
        image=[0, 0, 0, 0, 1], x=[1.0, 1.0, 1.0, 1.0, 1.0], y=[2.0, 2.0, 2.0, 2.0, 2.0],
        t=[np.nan, np.nan, 3.0, np.nan, np.nan], extra={"pupil": [1.0, 1.0, 1.0, 2.0, 1.0]},
    )
    np.testing.assert_array_equal(duplicate_mask(fixations), [False, True, False, False, False])
    assert not duplicate_mask(Fixations.empty()).any()


def test_an_existing_folder_as_output_is_a_one_line_error(folder, tmp_path, capsys):
    table = tmp_path / "fix.csv"
    table.write_text("image,x,y,observer\nb.png,1,2,s1\n", encoding="utf-8")
    (tmp_path / "outdir").mkdir()
    for extra in ([], ["--overwrite"]):
        assert main(["data", "import", "csv", str(table), "--images", str(folder), "--out", str(tmp_path / "outdir"), *extra]) == 1
        err = capsys.readouterr().err
        assert "outdir is a folder; --out takes the dataset file to write" in err and "Traceback" not in err
    with pytest.raises(DatasetError, match="is a folder; give the dataset file to write"):
        import_csv(table, folder, tmp_path / "outdir")
    assert (tmp_path / "outdir").is_dir() and not any((tmp_path / "outdir").iterdir())
