"""`EvaluationReport`: the metric table of a model and its baselines on a dataset, and its files.

A report has one **row** per model scored (``"model"``, ``"centre bias"``, ``"gold standard"``,
``"truth"``) and one **column** per score (`COLUMNS`). Two tables hold the same columns:

* `EvaluationReport.rows`: each score with the benchmark's averaging: IG, LL and explained IG
  over all fixations, every other metric per image, then over images;
* `EvaluationReport.rows_over_images`: every score per image, then averaged over images (for AUC,
  sAUC, NSS, CC, KLDiv and SIM the same numbers).

Units: IG in bits per fixation, LL in nats per fixation, KLDiv in nats per image, explained IG as
a fraction (1.0 = the gold standard; shown in percent), the rest unitless.

`write_report` writes ``report.json`` (everything, NaN written as ``null``), ``report.md`` (the
table), ``per_image.csv`` (one row per image) and ``ig_per_image.png`` (the model's per-image IG
against the gold standard's, as in the DeepGaze II paper's Figure 4; only with a gold standard).
Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path, atomic_write_text
from ..visualization.figures import scatter_figure
from ..visualization.png import save_png
from .crossval import CrossvalInfo



class _Key(str, Enum):
    """An enum whose members are their string values (what report.json uses), on every Python >= 3.10."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Column(_Key):
    """The report's columns, in table order. Code names a column by its member; the value is the
    column's key in ``report.json`` and its label in the table."""

    IG_VS_UNIFORM = "IG vs uniform"
    IG_VS_CENTRE_BIAS = "IG vs centre bias"
    LL = "LL"
    AUC = "AUC"
    SAUC = "sAUC"
    NSS = "NSS"
    CC = "CC"
    KLDIV = "KLDiv"
    SIM = "SIM"
    EXPLAINED_IG = "explained IG"


class Row(_Key):
    """The report's rows (models scored), in table order; the value is the key in ``report.json``."""

    MODEL = "model"
    CENTRE_BIAS = "centre bias"
    GOLD_STANDARD = "gold standard"
    TRUTH = "truth"


#: The report's columns, in table order.
COLUMNS = tuple(Column)
#: Units of the columns that have one.
COLUMN_UNITS = {
    Column.IG_VS_UNIFORM: "bits/fix",
    Column.IG_VS_CENTRE_BIAS: "bits/fix",
    Column.LL: "nats/fix",
    Column.KLDIV: "nats",
    Column.EXPLAINED_IG: "fraction",
}
#: Row order of the table.
ROWS = tuple(Row)
REPORT_FORMAT = "deepgaze-hub evaluation report"
REPORT_VERSION = 1


@dataclass
class EvaluationReport:
    """The scores of a model and its baselines on one dataset (see the module docstring).

    Attributes:
        model_name: how the model is named in the table (its row key is always ``"model"``).
        dataset: ``name``, ``path``, ``images``, ``fixations``, ``observers``.
        scoring: how the model's densities were obtained, in words (cross-validated or full mixture).
        crossval: the folds (`CrossvalInfo`) when every image was scored by its held-out member,
            else None.
        rows: ``{Row: {Column: value}}`` with the benchmark's averaging.
        rows_over_images: the same with every score averaged over images.
        per_image: one dict per image: ``index``, ``id``, ``name``, ``fixations``, ``member`` (which
            member scored it, None for the full mixture), ``ig_model`` / ``ig_gold_standard`` /
            ``ig_truth`` (bits/fix vs the centre bias), ``ll_model`` (nats/fix), ``auc_model``,
            ``nss_model``, ``explained_ig_model`` (fraction); NaN where undefined (no fixations).
        settings: blur sigmas, the fitted centre bias and gold standard, averaging conventions.
        notes: sentences printed under the table.
        seconds: wall time of the evaluation.
        log_densities: the model's (H, W) log densities as scored, if the evaluation was asked to
            keep them (not part of `to_dict` or the files).
    """

    model_name: str
    dataset: dict[str, Any]
    scoring: str
    crossval: CrossvalInfo | None
    rows: dict[Row, dict[Column, float]]
    rows_over_images: dict[Row, dict[Column, float]]
    per_image: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log_densities: list | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """The report `to_dict` (or ``report.json``) holds; None values of scores become NaN."""

        def table(rows: dict[str, dict[str, float | None]]) -> dict[Row, dict[Column, float]]:
            return {
                Row(row): {Column(column): math.nan if value is None else float(value) for column, value in values.items()}
                for row, values in rows.items()
            }

        crossval = data.get("crossval")
        return cls(
            model_name=data["model"],
            dataset=data["dataset"],
            scoring=data["scoring"],
            crossval=CrossvalInfo(**crossval) if crossval else None,
            rows=table(data["rows"]),
            rows_over_images=table(data["rows_over_images"]),
            per_image=data["per_image"],
            settings=data.get("settings", {}),
            notes=data.get("notes", []),
            seconds=data.get("seconds") or 0.0,
        )

    def score(self, row: Row, column: Column) -> float | None:
        """One cell of the table (benchmark averaging), None if the row or column is absent."""
        return self.rows.get(row, {}).get(column)

    @property
    def truth_fraction(self) -> float | None:
        """IG of the model / IG of the true densities, both vs the centre bias (data with known
        truth only; None otherwise or when the truth's IG is 0)."""
        truth = self.score(Row.TRUTH, Column.IG_VS_CENTRE_BIAS)
        model = self.score(Row.MODEL, Column.IG_VS_CENTRE_BIAS)
        if not truth or model is None:
            return None
        return model / truth

    @property
    def columns(self) -> list[Column]:
        """The columns present (metrics not asked for are left out)."""
        present = {column for row in self.rows.values() for column in row}
        return [column for column in COLUMNS if column in present]

    @property
    def explained_information_gain(self) -> dict[str, float] | None:
        """The model's explained information gain as fractions, ``{"over_fixations", "over_images"}``.

        ``over_fixations``: IG(model) / IG(gold standard), both vs the centre bias and averaged
        over all fixations; ``over_images``: both averaged over images first. None without a gold standard.
        """
        if Column.EXPLAINED_IG not in self.rows.get(Row.MODEL, {}):
            return None
        return {
            "over_fixations": self.rows[Row.MODEL][Column.EXPLAINED_IG],
            "over_images": self.rows_over_images[Row.MODEL][Column.EXPLAINED_IG],
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (NaN and infinities become None)."""
        return _finite_or_none(
            {
                "format": REPORT_FORMAT,
                "format_version": REPORT_VERSION,
                "model": self.model_name,
                "dataset": self.dataset,
                "scoring": self.scoring,
                "crossval": None if self.crossval is None else self.crossval.to_dict(),
                "columns": self.columns,
                "units": {column: COLUMN_UNITS[column] for column in self.columns if column in COLUMN_UNITS},
                "rows": self.rows,
                "rows_over_images": self.rows_over_images,
                "explained_information_gain": self.explained_information_gain,
                "settings": self.settings,
                "notes": self.notes,
                "seconds": self.seconds,
                "per_image": self.per_image,
            }
        )

    def to_markdown(self) -> str:
        """The table with a heading, the explained information gain and the notes, as Markdown."""
        data = self.dataset
        columns = self.columns
        lines = [
            f"## {_cell(self.model_name)} on {_cell(str(data.get('name') or data.get('path')))}",
            "",
            (
                f"{data.get('images')} images, {data.get('fixations')} fixations, {data.get('observers')} observers. "
                f"Scoring: {self.scoring}."
            ),
            "",
            "| | " + " | ".join(_header(column) for column in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for name in [row for row in ROWS if row in self.rows]:
            label = self.model_name if name == Row.MODEL else str(name)
            values = self.rows[name]
            lines.append(f"| {_cell(label)} | " + " | ".join(_format(column, values.get(column)) for column in columns) + " |")
        explained = self.explained_information_gain
        if explained is not None:
            lines += [
                "",
                (
                    f"Explained information gain of {_cell(self.model_name)}: "
                    f"{_percent(explained['over_fixations'])} (IGs averaged over fixations), "
                    f"{_percent(explained['over_images'])} (averaged over images)."
                ),
            ]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        lines += ["", f"Evaluated in {self.seconds:.1f} s."]
        return "\n".join(lines)


def write_report(report: EvaluationReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the report's files into ``out_dir`` (created if needed), each atomically.

    Returns ``{"json": report.json, "markdown": report.md, "per_image": per_image.csv,
    "figure": ig_per_image.png}``; ``"figure"`` only when the report has a gold standard.
    """
    out = Path(out_dir)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "per_image": out / "per_image.csv"}
    atomic_write_text(paths["json"], json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], report.to_markdown() + "\n")
    atomic_write_text(paths["per_image"], per_image_csv(report.per_image))
    if Row.GOLD_STANDARD in report.rows:
        paths["figure"] = out / "ig_per_image.png"
        with atomic_path(paths["figure"]) as tmp:
            save_png(ig_figure(report), tmp)
    return paths


def per_image_csv(per_image: list[dict[str, Any]]) -> str:
    """The per-image results as CSV text, one row per image; undefined values are empty cells."""
    buffer = io.StringIO()
    if per_image:
        writer = csv.DictWriter(buffer, fieldnames=list(per_image[0]), lineterminator="\n")
        writer.writeheader()
        for entry in _finite_or_none(per_image):
            writer.writerow({key: "" if value is None else value for key, value in entry.items()})
    return buffer.getvalue()


def ig_figure(report: EvaluationReport):
    """Per-image IG vs the centre bias of the model (y) against the gold standard (x), as a PIL image."""
    return scatter_figure(
        [entry["ig_gold_standard"] for entry in report.per_image],
        [entry["ig_model"] for entry in report.per_image],
        xlabel="gold standard: IG vs centre bias (bits/fix)",
        ylabel=f"{report.model_name}: IG vs centre bias (bits/fix)",
        title=f"Information gain per image ({report.dataset.get('images')} images)",
    )


def _header(column: Column) -> str:
    unit = COLUMN_UNITS.get(column)
    return f"{column} ({unit})" if unit and unit != "fraction" else str(column)


def _format(column: Column, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column == Column.EXPLAINED_IG:
        return _percent(value)
    return f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value
