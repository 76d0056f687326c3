"""Fixation data: one dataset format, importers, synthetic data with a known truth, and splits.

* `FixationDataset` (``dataset``): images + fixations in one versioned HDF5 file; lazy,
  DataLoader-safe reading; atomic writing (`FixationDataset.create`).
* `Fixations` (``fixations``): the per-fixation record, validation and the outside-image policy.
* ``formats``: import from pysaliency, SALICON, MIT1003 and CSV; export to pysaliency and CSV.
* ``layout``: the checks every value read from a dataset file goes through before it is used.
* ``synthetic``: scenes with an exactly known fixation density; `default_dataset` (``embedded``)
  is a small instance generated on first use. `open_dataset` is the one way to open what a user
  named: `EMBEDDED` (``"embedded"``) for the default dataset, else a dataset file.
* ``splits``: image-wise k-fold assignments keyed on content ids.
"""

from .dataset import FixationDataset
from .embedded import EMBEDDED, default_dataset, embedded_dataset_path, open_dataset
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
from .layout import FORMAT_VERSION
from .splits import image_set_digest, kfold_assignments, kfold_split
from .synthetic import make_synthetic_dataset

__all__ = [
    "EMBEDDED",
    "FORMAT_VERSION",
    "OUTSIDE_POLICIES",
    "CsvColumns",
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
    "open_dataset",
]
