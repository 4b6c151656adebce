"""Passes: ``new_graph, info = pass_(graph, config)``; a pass never mutates its inputs.

The registry maps the names used in ``[passes.<name>]`` tables to a ``PassSpec``:
the function and the schema of its table. A new pass is one module that
decorates its function with ``register_pass`` plus one import line below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bitsmith.config import Table
from bitsmith.errors import BitsmithError, CandidateError, explain, unknown_name
from bitsmith.graph import Graph, trace

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


def parse_passes(passes: dict[str, Any], source: str = "the config") -> list[tuple[str, BaseModel]]:
    """Every ``[passes.<name>]`` table, validated, in file order (MASE's own output passes left out)."""
    return [(name, parse_pass(name, config, source)) for name, config in passes.items() if name not in MASE_ONLY]


def apply_passes(graph: Graph, passes: list[tuple[str, Any]]) -> tuple[Graph, dict[str, Any]]:
    """Apply ``(name, config)`` pairs in order; returns the last graph and each pass's info."""
    infos = {}
    for name, config in passes:
        graph, infos[name] = get_pass(name).fn(graph, config)
    return graph, infos


def rebuild_from_meta(model, meta: dict[str, Any], data) -> Any:
    """The transformed module a checkpoint's ``passes`` describe, ready for its state dict."""
    graph = trace(model, data.in_shape)
    passes = []
    for name, cfg in meta["passes"]:
        if name not in PASSES or not PASSES[name].transform:
            raise BitsmithError(f"checkpoint records pass {name!r}, which is not a transform pass "
                                f"({', '.join(n for n, s in PASSES.items() if s.transform)})")
        if name == "channel_multiply":
            cfg = {**cfg, "init": "random"}  # the weights come from the checkpoint
        passes.append((name, parse_pass(name, cfg, "the checkpoint")))
    graph, _ = apply_passes(graph, passes)
    return graph.gm


# Passes that MASE's published files name and that have no meaning here (MASE
# runs them for its own outputs); a file that has them still runs.
MASE_ONLY = frozenset({"save", "summarize_quantization", "profile_statistics", "report_graph",
                       "report_node_meta_param", "save_node_meta_param", "add_common_metadata",
                       "add_software_metadata", "add_hardware_metadata"})

# Importing the modules registers their passes.
from bitsmith.passes import analysis as _analysis  # noqa: E402,F401
from bitsmith.passes import channels as _channels  # noqa: E402,F401
from bitsmith.passes import quantize as _quantize  # noqa: E402,F401
from bitsmith.passes import report as _report  # noqa: E402,F401
from bitsmith.passes.analysis import analyze, count_bits, count_bops, count_flops, count_params  # noqa: E402
from bitsmith.passes.quantize import quant_table  # noqa: E402
from bitsmith.passes.report import render_report, report_pass  # noqa: E402

TRANSFORMS = tuple(n for n, s in PASSES.items() if s.transform)

__all__ = ["PASSES", "TRANSFORMS", "PassSpec", "analyze", "apply_passes", "count_bits", "count_bops",
           "count_flops", "count_params", "get_pass", "layer_tables", "parse_pass", "parse_passes",
           "quant_table", "rebuild_from_meta", "register_pass", "render_report", "report_pass"]
