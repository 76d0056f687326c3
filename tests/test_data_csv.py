"""Importing a folder of images + a CSV of fixations, exporting it again, and bad tables."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import random_image

from deepgaze_hub.data import CsvColumns, export_csv, import_csv
from deepgaze_hub.errors import DatasetError


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "photos"
    random_image(images / "b.png", 20, 30, seed=1)
    random_image(images / "sub" / "a.jpg", 25, 15, seed=2)
    random_image(images / "unused.png", 5, 5, seed=3)
    return images


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_default_columns(folder, tmp_path):
    table = write(
        tmp_path / "fix.csv",
        "image,x,y,observer,t,duration,scanpath,order,pupil,comment\n"
        "b.png,1.5,2.5,s02,100,250,0,0,3.1,first\n"
        "sub/a.jpg,14.99,0,s01,,,,,2.0,\n"
        "b.png,29.5,19.5,s02,350,200,0,1,,second\n"
        "b.png,30,3,s01,10,20,,,1.0,outside\n",
    )
    ds = import_csv(table, folder, tmp_path / "out.h5", time_unit="ms")
    assert ds.image_names == ["b.png", "sub/a.jpg"]  # sorted, only referenced images
    assert ds.metadata["unreferenced_images"] == 1 and ds.metadata["outside_count"] == 1
    assert ds.metadata["ignored"] == ["comment"] and ds.metadata["time_unit"] == "ms"
    assert ds.observer_names == ["s01", "s02"]
    fix = ds.fixations
    np.testing.assert_array_equal(fix.image, [0, 0, 1])
    np.testing.assert_array_equal(fix.x, [1.5, 29.5, 14.99])
    np.testing.assert_array_equal(fix.observer, [1, 1, 0])
    np.testing.assert_array_equal(fix.t, [100, 350, np.nan])
    np.testing.assert_array_equal(fix.scanpath, [0, 0, -1])
    np.testing.assert_array_equal(fix.order, [0, 1, -1])
    np.testing.assert_array_equal(fix.extra["pupil"], [3.1, np.nan, 2.0])


def test_custom_columns_semicolons_one_based_and_numeric_observers(folder, tmp_path):
    table = write(tmp_path / "fix.csv", "\ufeffstim;col;row;subj\nb.png;1;1;10\nb.png;30;20;2\nsub/a.jpg;2;3;10\n")
    columns = CsvColumns.from_pairs(["image=stim", "x=col", "y=row", "observer=subj"])
    ds = import_csv(table, folder, tmp_path / "out.h5", columns=columns, one_based=True)
    fix = ds.fixations
    np.testing.assert_array_equal(fix.x, [0.0, 29.0, 1.0])
    np.testing.assert_array_equal(fix.y, [0.0, 19.0, 2.0])
    assert ds.observer_names == ["2", "10"]  # numeric labels sort numerically
    np.testing.assert_array_equal(fix.observer, [1, 0, 1])
    single = import_csv(table, folder, tmp_path / "single.h5", columns=CsvColumns.from_pairs(["image=stim", "x=col", "y=row", "observer="]))
    assert single.num_observers == 1 and single.observer_names is None
    np.testing.assert_array_equal(single.fixations.extra["subj"], [10, 10])  # another numeric column; x=30 dropped (0-based)


def test_import_export_import_is_lossless(folder, tmp_path):
    table = write(
        tmp_path / "fix.csv",
        "image,x,y,observer,t,duration,scanpath,order,pupil\n"
        "b.png,0.1,0.2,anna,0.123456789,0.25,3,0,1e-3\n"
        "b.png,0.30000000000000004,7,anna,1,,3,1,\n"
        "sub/a.jpg,3,4,bo,,,,,2\n",
    )
    first = import_csv(table, folder, tmp_path / "first.h5")
    csv_path = export_csv(first, tmp_path / "export")
    assert (tmp_path / "export" / "images" / "sub" / "a.jpg").read_bytes() == (folder / "sub" / "a.jpg").read_bytes()
    second = import_csv(csv_path, tmp_path / "export" / "images", tmp_path / "second.h5")
    assert second.image_ids == first.image_ids and second.image_names == first.image_names
    assert second.fixations.equals(first.fixations) and second.observer_names == first.observer_names
    assert second.fixations.x[1] == 0.30000000000000004


def test_synthetic_dataset_round_trips_through_csv(tmp_path):
    from deepgaze_hub.data import make_synthetic_dataset

    first = make_synthetic_dataset(tmp_path / "syn.h5", 2, size=(20, 24), num_observers=3, seed=1)
    export_csv(first, tmp_path / "csv")
    second = import_csv(tmp_path / "csv" / "fixations.csv", tmp_path / "csv" / "images", tmp_path / "again.h5", time_unit="s")
    assert second.image_ids == first.image_ids and second.fixations.equals(first.fixations)


@pytest.mark.parametrize(
    "text, message",
    [
        ("image,x,y\nb.png,1,2\n", r"fix.csv: missing columns \['observer'\] \(the header has \['image', 'x', 'y'\]\)"),
        ("image,x,y,observer\nb.png,1,2,a\nmissing.png,1,2,a\n", r"fix.csv, line 3: image 'missing.png' is not a file in"),
        ("image,x,y,observer\nb.png,1,2,a\nb.png,one,2,a\n", r"fix.csv, line 3: column 'x' holds 'one', not a number"),
        ("image,x,y,observer\nb.png,1,,a\n", r"fix.csv, line 2: column 'y' holds '', not a number"),
        ("image,x,y,observer\nb.png,1,2\n", r"fix.csv, line 2: the row has fewer fields than the header"),
        ("image,x,y,observer,order\nb.png,1,2,a,1.5\n", r"fix.csv, line 2: column 'order' holds '1.5', not a whole number"),
        ("image,x,y,observer\nb.png,1,2,\n", r"fix.csv, line 2: the observer column 'observer' is empty"),
        ("image,x,y,observer\n", r"fix.csv: the table has a header but no rows"),
        ("", r"fix.csv: the file is empty"),
        ("image,x,y,observer\nb.png,1,2,a\nb.png,1,2,a\nb.png,1,2,a,extra\n", r"line 4: the row has more fields"),
    ],
)
def test_malformed_tables(folder, tmp_path, text, message):
    table = write(tmp_path / "fix.csv", text)
    with pytest.raises(DatasetError, match=message):
        import_csv(table, folder, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists() and not list(tmp_path.glob("*.partial"))


def test_bad_column_options():
    with pytest.raises(DatasetError, match="FIELD=HEADER"):
        CsvColumns.from_pairs(["colour=c"])
    with pytest.raises(DatasetError, match="'x' column cannot be left out"):
        CsvColumns.from_pairs(["x="])
