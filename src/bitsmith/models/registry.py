"""The model registry: name -> factory ``(in_shape, n_classes) -> nn.Module``; model modules register here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {}
# name -> one line for `bitsmith models`
DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str | None = None) -> Callable:
    """Decorator: make ``factory(in_shape, n_classes)`` known as ``name``.

    ``description``: one line saying what the model is (default: the factory's docstring's first line).
    """

    def add(factory):
        MODELS[name] = factory
        DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().split("\n", 1)[0].strip()
        return factory

    return add
