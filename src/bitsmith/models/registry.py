"""The model registry: name -> factory ``(in_shape, n_classes) -> nn.Module``; model modules register here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: make ``factory(in_shape, n_classes)`` known as ``name``."""

    def add(factory):
        MODELS[name] = factory
        return factory

    return add
