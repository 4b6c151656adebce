"""Model registry: name -> factory ``(in_shape, n_classes) -> nn.Module``.

A user's own model is named by import path, ``package.module:factory``, and
is called the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from bitsmith.errors import BitsmithError, unknown_name

# Importing the model modules registers their models.
from bitsmith.models import digits as _digits  # noqa: F401
from bitsmith.models import jsc as _jsc  # noqa: F401
from bitsmith.models.registry import MODELS, register_model


def _import_factory(path: str) -> Callable:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BitsmithError(f"cannot import model module {module_name!r} ({e}); "
                            "is it installed or on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BitsmithError(f"{module_name!r} has no callable {attr!r}; name a factory as package.module:function")
    return factory


def build_model(name: str, in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Construct a registered (or imported) model for the data set's sizes."""
    if ":" in name:
        factory = _import_factory(name)
    elif name in MODELS:
        factory = MODELS[name]
    else:
        raise unknown_name("model", name, MODELS, extra="a user's model is named package.module:factory")
    try:
        model = factory(tuple(in_shape), int(n_classes))
    except TypeError as e:  # a callable that is not a factory(in_shape, n_classes)
        if ":" not in name:
            raise
        raise BitsmithError(f"model factory {name!r} cannot be called as factory(in_shape, n_classes): {e}; "
                            "name a function that takes the input shape and the number of classes") from None
    if not isinstance(model, nn.Module):
        raise BitsmithError(f"model factory {name!r} returned {type(model).__name__}, not a torch nn.Module")
    return model


__all__ = ["MODELS", "build_model", "register_model"]
