"""Passes: ``new_graph, info = pass_(graph, config)``; a pass never mutates its inputs.

The registry maps the names used in ``[passes.<name>]`` tables to functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bitsmith.errors import BitsmithError, unknown_name
from bitsmith.graph import Graph, trace
from bitsmith.passes.analysis import analyze, count_bits, count_bops, count_flops, count_params
from bitsmith.passes.channels import channel_multiply_pass
from bitsmith.passes.quantize import quant_table, quantize_pass
from bitsmith.passes.report import render_report, report_pass

PassFn = Callable[[Graph, dict[str, Any]], tuple[Graph, dict[str, Any]]]

PASSES: dict[str, PassFn] = {
    "quantize": quantize_pass,
    "channel_multiply": channel_multiply_pass,
    "report": report_pass,
    "params": count_params,
    "flops": count_flops,
    "bits": count_bits,
    "bops": count_bops,
}
TRANSFORMS = ("quantize", "channel_multiply")


def get_pass(name: str) -> PassFn:
    if name not in PASSES:
        raise unknown_name("pass", name, PASSES, "in [passes]")
    return PASSES[name]


def apply_passes(graph: Graph, passes: list[tuple[str, dict[str, Any]]]) -> tuple[Graph, dict[str, Any]]:
    """Apply ``(name, config)`` pairs in order; returns the last graph and each pass's info."""
    infos = {}
    for name, config in passes:
        if not isinstance(config, dict):
            raise BitsmithError(f"[passes.{name}] must be a table, not {config!r}")
        graph, infos[name] = get_pass(name)(graph, config)
    return graph, infos


def rebuild_from_meta(model, meta: dict[str, Any], data) -> Any:
    """The transformed module a checkpoint's ``passes`` describe, ready for its state dict."""
    graph = trace(model, data.in_shape)
    passes = [(name, {**cfg, "init": "random"} if name == "channel_multiply" else cfg)
              for name, cfg in meta["passes"]]
    graph, _ = apply_passes(graph, passes)
    return graph.gm


__all__ = ["PASSES", "TRANSFORMS", "analyze", "apply_passes", "get_pass", "quant_table", "rebuild_from_meta",
           "render_report"]
