"""Data set registry: name -> loader returning in-memory train/val/test tensors.

Batches are slices of these tensors; no DataLoader is involved, which keeps a
search trial's cost close to the bare PyTorch cost of what it measures.
"""

from __future__ import annotations

from collections.abc import Callable

from bitsmith.data._base import DataSplits, Split
from bitsmith.errors import unknown_name

DATASETS: dict[str, Callable[..., DataSplits]] = {}


def register_dataset(name: str) -> Callable:
    """Decorator: make ``loader(data_path=None) -> DataSplits`` known as ``name``."""

    def add(loader: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        DATASETS[name] = loader
        return loader

    return add


def get_dataset(name: str, data_path: str | None = None) -> DataSplits:
    """Load a registered data set (from its processed cache when it has one)."""
    if name not in DATASETS:
        raise unknown_name("data set", name, DATASETS)
    return DATASETS[name](data_path=data_path)


# Importing the modules registers their data sets.
from bitsmith.data import digits as _digits  # noqa: E402,F401
from bitsmith.data import jsc as _jsc  # noqa: E402,F401

__all__ = ["DATASETS", "DataSplits", "Split", "get_dataset", "register_dataset"]
