"""Data set registry: name -> loader returning in-memory train/val/test tensors.

Batches are slices of these tensors; no DataLoader is involved, which keeps a
search trial's cost close to the bare PyTorch cost of what it measures.
"""

from __future__ import annotations

# Importing the data set modules registers their data sets.
from bitsmith.data import digits as _digits  # noqa: F401
from bitsmith.data import jsc as _jsc  # noqa: F401
from bitsmith.data import table as _table  # noqa: F401
from bitsmith.data._base import DataSplits, Split
from bitsmith.data.registry import DATASETS, register_dataset
from bitsmith.errors import BitsmithError, unknown_name


def get_dataset(name: str, data_path: str | None = None, label_column: str | None = None) -> DataSplits:
    """Load a registered data set (from its processed cache when it has one).

    ``label_column`` names the label column of a data set that reads the user's own table.
    """
    if name not in DATASETS:
        raise unknown_name("data set", name, DATASETS)
    loader = DATASETS[name]
    if data_path and not getattr(loader, "reads_file", False):
        readers = sorted(n for n, f in DATASETS.items() if getattr(f, "reads_file", False))
        raise BitsmithError(f"data set {name!r} reads no file; drop --data-path / data_path "
                            f"(data sets that read a file: {', '.join(readers) or 'none'})")
    takes_label = getattr(loader, "takes_label_column", False)
    if label_column is not None and not takes_label:
        takers = sorted(n for n, f in DATASETS.items() if getattr(f, "takes_label_column", False))
        raise BitsmithError(f"data set {name!r} has its own labels; drop --label-column / label_column "
                            f"(data sets that take one: {', '.join(takers) or 'none'})")
    return loader(data_path=data_path, **({"label_column": label_column} if takes_label else {}))


__all__ = ["DATASETS", "DataSplits", "Split", "get_dataset", "register_dataset"]
