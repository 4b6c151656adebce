"""The data set registry: name -> loader ``(data_path=None) -> DataSplits``; data set modules register here."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from bitsmith.data._base import DataSplits

DATASETS: dict[str, Callable[..., DataSplits]] = {}
# name -> one line for `bitsmith datasets`; kept by name, as one loader may serve several names.
DESCRIPTIONS: dict[str, str] = {}


def register_dataset(name: str, reads_file: bool = False, description: str | None = None) -> Callable:
    """Decorator: make ``loader(data_path=None) -> DataSplits`` known as ``name``.

    ``reads_file``: whether the loader reads a local file given as ``data_path``.
    ``description``: one line saying what the data set is (default: the loader's docstring's first line).
    A loader that takes a ``label_column`` argument is given the ``label_column`` setting, one that takes
    ``val_size`` the validation share (a loader without it keeps the default recipe's split).
    """

    def add(loader: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        loader.reads_file = reads_file  # on the loader itself, so it cannot drift from the registry
        # from the signature, so a loader cannot claim an argument it does not take
        loader.takes_label_column = "label_column" in inspect.signature(loader).parameters
        loader.takes_val_size = "val_size" in inspect.signature(loader).parameters
        DATASETS[name] = loader
        DESCRIPTIONS[name] = description or (loader.__doc__ or "").strip().split("\n", 1)[0].strip()
        return loader

    return add

