"""Passes: ``new_graph, info = pass_(graph, config)``; a pass never mutates its inputs.

The registry (``registry.py``) maps the names used in ``[passes.<name>]`` tables
to a ``PassSpec``: the function and the schema of its table. A new pass is one
module that decorates its function with ``register_pass`` plus one import line
below.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph, trace

# Importing the pass modules registers their passes (in this order: it is the order they are listed in).
from bitsmith.passes import analysis as _analysis  # noqa: F401
from bitsmith.passes import channels as _channels  # noqa: F401
from bitsmith.passes import fold as _fold  # noqa: F401
from bitsmith.passes import luts as _luts  # noqa: F401
from bitsmith.passes import quantize as _quantize  # noqa: F401
from bitsmith.passes import report as _report  # noqa: F401
from bitsmith.passes.analysis import analyze, count_bits, count_bops, count_flops, count_params
from bitsmith.passes.quantize import quant_table
from bitsmith.passes.registry import PASSES, NoSettings, PassSpec, get_pass, layer_tables, parse_pass, register_pass
from bitsmith.passes.report import render_report, report_pass


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

TRANSFORMS = tuple(n for n, s in PASSES.items() if s.transform)

__all__ = ["PASSES", "TRANSFORMS", "NoSettings", "PassSpec", "analyze", "apply_passes", "count_bits", "count_bops",
           "count_flops", "count_params", "get_pass", "layer_tables", "parse_pass", "parse_passes",
           "quant_table", "rebuild_from_meta", "register_pass", "render_report", "report_pass"]
