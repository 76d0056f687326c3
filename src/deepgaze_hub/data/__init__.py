"""Fixation data: one dataset format, importers, synthetic data with a known truth, and splits.

* `FixationDataset` (``dataset``): images + fixations in one versioned HDF5 file; lazy,
  DataLoader-safe reading; atomic writing (`FixationDataset.create`).
* `Fixations` (``fixations``): the per-fixation record, validation and the outside-image policy.
* ``formats``: import from pysaliency, SALICON, MIT1003 and CSV; export to pysaliency and CSV.
* ``synthetic``: scenes with an exactly known fixation density; `default_dataset` (``embedded``)
  is a small instance generated on first use.
* ``splits``: image-wise k-fold assignments keyed on content ids.
"""

from .dataset import FORMAT_VERSION, FixationDataset
from .embedded import default_dataset, embedded_dataset_path
from .errors import DatasetError
from .fixations import OUTSIDE_POLICIES, Fixations
from .formats import (
    CsvColumns,
    export_csv,
    export_pysaliency,
    import_csv,
    import_mit1003,
    import_pysaliency,
    import_salicon,
)
from .splits import image_set_digest, kfold_assignments, kfold_split
from .synthetic import make_synthetic_dataset

__all__ = [
    "FORMAT_VERSION",
    "OUTSIDE_POLICIES",
    "CsvColumns",
    "DatasetError",
    "FixationDataset",
    "Fixations",
    "default_dataset",
    "embedded_dataset_path",
    "export_csv",
    "export_pysaliency",
    "import_csv",
    "import_mit1003",
    "import_pysaliency",
    "import_salicon",
    "image_set_digest",
    "kfold_assignments",
    "kfold_split",
    "make_synthetic_dataset",
]
