"""Data set registry: name -> loader returning in-memory train/val/test tensors.

Batches are slices of these tensors; no DataLoader is involved, which keeps a
search trial's cost close to the bare PyTorch cost of what it measures.
"""

from __future__ import annotations

# Importing the data set modules registers their data sets.
from bitsmith.data import digits as _digits  # noqa: F401
from bitsmith.data import jsc as _jsc  # noqa: F401
from bitsmith.data import table as _table  # noqa: F401
from bitsmith.data._base import VAL_SIZE, DataSplits, Split, recipe, split_sizes
from bitsmith.data.registry import DATASETS, register_dataset
from bitsmith.errors import BitsmithError, unknown_name


def get_dataset(name: str, data_path: str | None = None, label_column: str | None = None,
                val_size: float = VAL_SIZE) -> DataSplits:
    """Load a registered data set (from its processed cache when it has one).

    ``label_column`` names the label column of a data set that reads the user's own table; ``val_size`` is
    the share of the training part kept as the validation split.
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
    takes_val_size = getattr(loader, "takes_val_size", False)
    if val_size != VAL_SIZE and not takes_val_size:  # a user's loader that splits its own way
        raise BitsmithError(f"data set {name!r} makes its own validation split; drop --val-size / val_size")
    return loader(data_path=data_path, **({"label_column": label_column} if takes_label else {}),
                  **({"val_size": val_size} if takes_val_size else {}))


def checkpoint_val_size(trained: dict | None, val_size: float, given: bool) -> dict[str, float]:
    """The val_size to split a checkpoint's data with, as a settings update: the one it was trained with
    (``trained``: the settings it records; None when it records none), unless one is ``given``. A larger
    one is refused: its validation split would hold rows the model learned from, and flatter it (the
    validation rows of a smaller share are among those of a larger one, the seed being the same)."""
    if trained is None:
        return {}
    was = trained.get("val_size", VAL_SIZE)  # checkpoints made before the setting were all split at VAL_SIZE
    if isinstance(was, bool) or not isinstance(was, (int, float)) or not 0 < was < 1:
        raise BitsmithError(f"the checkpoint's settings hold val_size = {was!r}, not a share of the rows; it was "
                            "edited or damaged: load another checkpoint")
    if given and val_size > was:
        raise BitsmithError(f"the checkpoint was trained with val_size = {was}: a validation split of {val_size} "
                            f"holds rows it learned from; train with --val-size {val_size} first, or choose on "
                            f"val_size <= {was}")
    return {} if given or was == val_size else {"val_size": float(was)}


__all__ = ["DATASETS", "VAL_SIZE", "DataSplits", "Split", "checkpoint_val_size", "get_dataset", "recipe",
           "register_dataset", "split_sizes"]
