"""The data set registry: name -> loader ``(data_path=None) -> DataSplits``; data set modules register here."""

from __future__ import annotations

from collections.abc import Callable

from bitsmith.data._base import DataSplits

DATASETS: dict[str, Callable[..., DataSplits]] = {}


def register_dataset(name: str, reads_file: bool = False) -> Callable:
    """Decorator: make ``loader(data_path=None) -> DataSplits`` known as ``name``.

    ``reads_file``: whether the loader reads a local file given as ``data_path``.
    """

    def add(loader: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        loader.reads_file = reads_file  # on the loader itself, so it cannot drift from the registry
        DATASETS[name] = loader
        return loader

    return add
