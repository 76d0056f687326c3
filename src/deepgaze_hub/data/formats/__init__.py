"""Converters between `FixationDataset` and the formats users' data comes in.

One module per format: `pysaliency` (HDF5, import and export), `salicon` (per-image ``.mat``),
`mit1003` (pysaliency cache or the output of Judd's MATLAB code), `csv_table` (image folder +
CSV, import and export). Every importer writes its output atomically and applies an explicit
policy to fixations outside their image (see `deepgaze_hub.data.fixations`).
"""

from .csv_table import CsvColumns, export_csv, import_csv
from .mit1003 import import_mit1003
from .pysaliency import export_pysaliency, import_pysaliency
from .salicon import import_salicon

__all__ = [
    "CsvColumns",
    "export_csv",
    "export_pysaliency",
    "import_csv",
    "import_mit1003",
    "import_pysaliency",
    "import_salicon",
]
