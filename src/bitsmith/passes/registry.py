"""The pass registry: the names used in ``[passes.<name>]`` tables -> ``PassSpec`` (function and schema).

Pass modules register themselves here with ``register_pass``; ``passes/__init__``
imports them, so that importing ``bitsmith.passes`` knows every pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bitsmith.errors import BitsmithError, CandidateError, explain, unknown_name
from bitsmith.graph import Graph
from bitsmith.schema import Table

PassFn = Callable[[Graph, Any], tuple[Graph, dict[str, Any]]]


@dataclass(frozen=True)
class PassSpec:
    """One pass: its function and its table's schema.

    ``settings`` holds the pass's own keys (``by``, ``init``, ...). A transform
    pass also has ``layer``, the schema of each per-layer
    ``[passes.<name>.<key>.config]`` table; search spaces derive their choice
    tables from it.
    """

    name: str
    fn: PassFn
    settings: type[Table]
    layer: type[Table] | None = None
    unsupported: Callable[[str, dict[str, Any]], str] = lambda where, given: ""  # keys accepted, not implemented

    @property
    def transform(self) -> bool:
        return self.layer is not None

    @property
    def table(self) -> type[Table]:
        """The whole ``[passes.<name>]`` table: settings plus per-layer entries."""
        return _tables(self)


PASSES: dict[str, PassSpec] = {}


class NoSettings(Table):
    """The table of a pass with no settings of its own."""


def register_pass(name: str, settings: type[Table], layer: type[Table] | None = None,
                  unsupported: Callable[[str, dict[str, Any]], str] | None = None) -> Callable[[PassFn], PassFn]:
    """Decorator: make ``fn(graph, config)`` the pass ``name``, its table checked by the schemas given.

    ``unsupported(where, given)`` says which keys of a per-layer table are accepted but ignored.
    """

    def add(fn: PassFn) -> PassFn:
        PASSES[name] = PassSpec(name, fn, settings, layer, *([unsupported] if unsupported else []))
        return fn

    return add


@functools.cache
def _tables(spec: PassSpec) -> type[Table]:
    if spec.layer is None:
        return spec.settings
    entry = create_model(f"{spec.layer.__name__}Entry", __base__=Table, config=(spec.layer, ...))
    return type(f"{spec.settings.__name__}Table", (spec.settings,), {
        "__annotations__": {"__pydantic_extra__": dict[str, entry]},
        "model_config": ConfigDict(extra="allow"),
        "__module__": spec.settings.__module__})


def layer_tables(table: BaseModel) -> dict[str, Any]:
    """The per-layer ``config`` tables of a validated pass table, by key."""
    return {key: entry.config for key, entry in (table.model_extra or {}).items()}


def get_pass(name: str) -> PassSpec:
    if name not in PASSES:
        raise unknown_name("pass", name, PASSES, "in [passes]")
    return PASSES[name]


def parse_pass(name: str, config: Any, source: str = "the config") -> BaseModel:
    """The validated ``[passes.<name>]`` table.

    What fails only in combination (a model validator's ValueError: every value
    is valid alone) is a ``CandidateError``, so a search prunes it; a transform
    stops on it all the same.
    """
    spec = get_pass(name)
    if isinstance(config, spec.table):
        return config
    try:
        return spec.table.model_validate(config)
    except ValidationError as e:
        combination = all(err["type"] == "value_error" for err in e.errors())
        raise (CandidateError if combination else BitsmithError)(
            explain(e, spec.table, ("passes", name), source)) from None
