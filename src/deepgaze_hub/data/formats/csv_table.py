"""A folder of images plus a CSV table with one row per fixation: import and export.

Default columns (rename any with `CsvColumns`, or ``--column FIELD=HEADER`` on the command line):

=============  ========  ===========================================================================
column         required  meaning
=============  ========  ===========================================================================
``image``      yes       image file name, relative to the image folder (subfolders allowed)
``x``          yes       column in pixels, 0-based (``one_based=True`` subtracts 1)
``y``          yes       row in pixels, 0-based (``one_based=True`` subtracts 1)
``observer``   yes*      observer label (number or text); *set it to None for single-observer data
``t``          no        fixation onset, any unit (``time_unit`` records which); empty = unknown
``duration``   no        fixation duration, same unit; empty = unknown
``scanpath``   no        viewing-sequence label (integer); empty = not part of one
``order``      no        0-based position in the sequence; empty = not part of one
=============  ========  ===========================================================================

Any other column whose values are all numbers (or empty) is kept as an extra per-fixation field;
non-numeric extra columns are listed in the metadata under ``ignored``. The delimiter (comma,
semicolon or tab) is detected; a UTF-8 byte-order mark is skipped. Observer labels become ids
0..O-1 in sorted order (numerically when all labels are integers) and are stored as observer
names. Images are stored in sorted name order; images in the folder that no row mentions are not
imported (their number is recorded as ``unreferenced_images``).

Image paths must stay inside the image folder: an absolute path or one that climbs out of it
(``../secret.png``) is refused, naming the row, unless ``allow_outside_images`` is set. A NUL byte
anywhere in the table is refused (naming the line and column): it is never part of real data.

Rows that repeat an earlier row exactly (every imported column equal) are counted and the count is
stored as ``duplicate_count``. They are kept by default, because every recorded fixation counts in
the benchmark convention and two fixations of one observer on the same pixel without times are
indistinguishable from a repeated row; ``drop_duplicates=True`` removes the repeats (keeping the
first) and records ``duplicates = "dropped"``.

Export writes ``FOLDER/images/<name>`` (the embedded bytes) and ``FOLDER/fixations.csv`` with all
columns above plus extras; floats are written in Python's shortest round-trip form, so importing
the export gives back the identical dataset.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path, PurePath

import numpy as np

from ...errors import DatasetError
from ...io.atomic import atomic_open, atomic_write_bytes
from ...io.images import IMAGE_SUFFIXES
from ..dataset import FixationDataset
from ..fixations import Fixations, duplicate_mask
from ..stimuli import displayed_size
from .common import write_imported


@dataclass(frozen=True)
class CsvColumns:
    """Header names of the fixation fields; None means the field is not in the table."""

    image: str = "image"
    x: str = "x"
    y: str = "y"
    observer: str | None = "observer"
    t: str | None = "t"
    duration: str | None = "duration"
    scanpath: str | None = "scanpath"
    order: str | None = "order"

    @classmethod
    def from_pairs(cls, pairs: list[str]) -> CsvColumns:
        """Build from ``FIELD=HEADER`` strings (``FIELD=`` for a field the table lacks)."""
        known = {f.name for f in fields(cls)}
        values = {}
        for pair in pairs:
            field_name, sep, header = pair.partition("=")
            if not sep or field_name not in known:
                raise DatasetError(f"--column takes FIELD=HEADER with FIELD one of {sorted(known)}, got {pair!r}")
            values[field_name] = header or None
        for required in ("image", "x", "y"):
            if values.get(required, "") is None:
                raise DatasetError(f"the {required!r} column cannot be left out")
        return cls(**values)


def import_csv(
    table: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    columns: CsvColumns = CsvColumns(),
    one_based: bool = False,
    outside: str = "drop",
    time_unit: str = "unknown",
    name: str | None = None,
    allow_outside_images: bool = False,
    drop_duplicates: bool = False,
    progress: bool = False,
) -> FixationDataset:
    """Convert a fixation table and its image folder into a dataset at ``out`` (see module docstring)."""
    table, image_dir = Path(table), Path(images)
    if not image_dir.is_dir():
        raise DatasetError(f"{table}: the image folder {image_dir} does not exist")
    header, rows, lines = _read_table(table)
    required = [columns.image, columns.x, columns.y] + ([columns.observer] if columns.observer else [])
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{table}: missing columns {missing} (the header has {header}); name yours with --column FIELD=HEADER")
    optional = {f: getattr(columns, f) for f in ("t", "duration", "scanpath", "order") if getattr(columns, f) in header}
    standard = set(required) | set(optional.values())

    names, image = _images(table, image_dir, rows, lines, columns.image, allow_outside_images)
    shift = 1.0 if one_based else 0.0
    x = _numbers(table, rows, lines, columns.x, required=True) - shift
    y = _numbers(table, rows, lines, columns.y, required=True) - shift
    observer, observer_names = _labels(table, rows, lines, columns.observer)
    values = {f: _numbers(table, rows, lines, header_name, required=False) for f, header_name in optional.items()}
    for f in ("scanpath", "order"):
        if f in values:
            values[f] = _whole(table, rows, lines, optional[f], values[f])
    extra, ignored = _extra_columns(table, rows, lines, [c for c in header if c not in standard])
    fixations = Fixations.build(image=image, x=x, y=y, observer=observer, extra=extra, **values)
    repeats = duplicate_mask(fixations)
    if drop_duplicates:
        fixations = fixations[~repeats]
    sizes = np.array([displayed_size(image_dir / n, str(image_dir / n)) for n in names], np.int64).reshape(-1, 2)
    metadata = {
        "name": name or table.stem, "time_unit": time_unit, "unreferenced_images": _unreferenced(image_dir, names),
        "duplicate_count": int(repeats.sum()), "duplicates": "dropped" if drop_duplicates else "kept",
    }
    if ignored:
        metadata["ignored"] = ignored
    return write_imported(
        out, images=[image_dir / n for n in names], image_names=names, image_sizes=sizes, fixations=fixations,
        outside=outside, source=f"CSV {table}", metadata=metadata, observer_names=observer_names, progress=progress,
    )


def _images(table: Path, image_dir: Path, rows, lines, column: str, allow_outside: bool) -> tuple[list[str], np.ndarray]:
    """The sorted distinct image names of the table and the (F,) image index of each row."""
    names = sorted({row[column] for row in rows})
    for image_name in names:
        line = lines[next(i for i, row in enumerate(rows) if row[column] == image_name)]
        relative = PurePath(image_name)
        if not allow_outside and (relative.is_absolute() or os.path.normpath(relative).split(os.sep)[0] == ".."):
            problem = "is an absolute path, not one relative to" if relative.is_absolute() else "leads out of"
            raise DatasetError(
                f"{table}, line {line}: image {image_name!r} {problem} the image folder {image_dir}; move it into "
                "the folder, or pass --allow-outside-images (allow_outside_images=True) to import it anyway"
            )
        if not (image_dir / image_name).is_file():
            raise DatasetError(f"{table}, line {line}: image {image_name!r} is not a file in {image_dir}")
    index_of = {image_name: i for i, image_name in enumerate(names)}
    return names, np.array([index_of[row[column]] for row in rows], dtype=np.int64)


def _extra_columns(table: Path, rows, lines, columns: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Numeric further columns as extra fields; the names of the others (not imported)."""
    extra, ignored = {}, []
    for column in columns:
        try:
            extra[column] = _numbers(table, rows, lines, column, required=False)
        except DatasetError:
            ignored.append(column)
    return extra, ignored


def _unreferenced(image_dir: Path, names: list[str]) -> int:
    """How many image files under ``image_dir`` no row of the table mentions."""
    referenced = {os.path.normpath(n) for n in names}
    return sum(
        1 for p in image_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and os.path.normpath(p.relative_to(image_dir)) not in referenced
    )


def export_csv(dataset: FixationDataset, folder: str | os.PathLike) -> Path:
    """Write ``folder/images/*`` and ``folder/fixations.csv``; returns the CSV path."""
    folder = Path(folder)
    for i, image_name in enumerate(dataset.image_names):
        relative = Path(image_name)
        if relative.is_absolute() or ".." in relative.parts:
            raise DatasetError(f"{dataset.path}: image name {image_name!r} is not a relative path; cannot export it")
        atomic_write_bytes(folder / "images" / relative, dataset.image_bytes(i))
    fix = dataset.fixations
    names = dataset.observer_names
    header = ["image", "x", "y", "observer", "t", "duration", "scanpath", "order", *fix.extra]
    path = folder / "fixations.csv"
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for k in range(len(fix)):
            observer = int(fix.observer[k])
            writer.writerow(
                [
                    dataset.image_names[fix.image[k]],
                    _float_text(fix.x[k]),
                    _float_text(fix.y[k]),
                    names[observer] if names is not None else observer,
                    _float_text(fix.t[k]),
                    _float_text(fix.duration[k]),
                    int(fix.scanpath[k]) if fix.scanpath[k] >= 0 else "",
                    int(fix.order[k]) if fix.order[k] >= 0 else "",
                    *(_float_text(values[k]) for values in fix.extra.values()),
                ]
            )
    return path


def _read_table(table: Path) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """Header, rows (stripped strings) and the line number each row ends on."""
    try:
        text = table.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"{table}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{table}: cannot read it as UTF-8 text ({error})") from None
    if not text.strip():
        raise DatasetError(f"{table}: the file is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip() for h in (reader.fieldnames or [])]
    if len(set(header)) != len(header):
        raise DatasetError(f"{table}: repeated column names in the header {header}")
    reader.fieldnames = header
    _refuse_nul(table, 1, dict(zip(header, header)))
    rows, lines = [], []
    try:
        for row in reader:
            if None in row or any(value is None for value in row.values()):
                raise DatasetError(f"{table}, line {reader.line_num}: the row has {'more' if None in row else 'fewer'} fields than the header")
            _refuse_nul(table, reader.line_num, row)
            rows.append({key: value.strip() for key, value in row.items()})
            lines.append(reader.line_num)
    except csv.Error as error:  # e.g. an unterminated quote
        raise DatasetError(f"{table}, line {reader.line_num}: not a valid CSV row ({error})") from None
    if not rows:
        raise DatasetError(f"{table}: the table has a header but no rows")
    return header, rows, lines


def _refuse_nul(table: Path, line: int, row: dict[str, str]) -> None:
    for column, value in row.items():
        if "\0" in value:
            raise DatasetError(
                f"{table}, line {line}, column {column!r}: contains a NUL byte ({value!r}); "
                "the file is binary or damaged, not a CSV table"
            )


def _numbers(table: Path, rows: list[dict[str, str]], lines: list[int], column: str, *, required: bool) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        text = row[column]
        if not text and not required:
            out[i] = np.nan
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise DatasetError(f"{table}, line {lines[i]}: column {column!r} holds {text!r}, not a number") from None
    return out


def _whole(table: Path, rows, lines, column: str, values: np.ndarray) -> np.ndarray:
    bad = ~np.isnan(values) & ((values != np.round(values)) | (values < 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{table}, line {lines[i]}: column {column!r} holds {rows[i][column]!r}, not a whole number >= 0")
    return np.where(np.isnan(values), -1, values).astype(np.int64)


def _labels(table: Path, rows, lines, column: str | None) -> tuple[np.ndarray, list[str] | None]:
    if column is None:
        return np.zeros(len(rows), np.int64), None
    labels = [row[column] for row in rows]
    empty = [i for i, label in enumerate(labels) if not label]
    if empty:
        raise DatasetError(f"{table}, line {lines[empty[0]]}: the observer column {column!r} is empty")
    unique = set(labels)
    numeric = all(label.lstrip("-").isdigit() for label in unique)
    ordered = sorted(unique, key=int) if numeric else sorted(unique)
    id_of = {label: i for i, label in enumerate(ordered)}
    return np.array([id_of[label] for label in labels], np.int64), ordered


def _float_text(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))
