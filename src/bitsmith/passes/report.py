"""The report pass: the fx graph, node counts per op, and a per-layer table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bitsmith.graph import Graph
from bitsmith.passes.analysis import analyze
from bitsmith.passes.registry import NoSettings, register_pass

OPS = ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output")


@register_pass("report", NoSettings)
def report_pass(graph: Graph, config: dict | None = None) -> tuple[Graph, dict[str, Any]]:
    """A machine-readable report; ``render_report`` turns it into text."""
    counts = Counter(info.op for info in graph.nodes.values())
    a = analyze(graph)
    layers = []
    for name, info in graph.nodes.items():
        if info.op != "call_module":
            continue
        row = a["nodes"][name]
        layers.append({"node": name, "type": info.module_type, "in_shape": list(info.in_shapes[0]) if info.in_shapes else [],
                       "out_shape": list(info.out_shape or ()), "params": info.params, "macs": row["macs"],
                       "bops": row["bops"], "format": (info.quant or {}).get("name", "float")})
    return graph, {"fx_graph": str(graph.gm.graph), "op_counts": {op: counts.get(op, 0) for op in OPS},
                   "layers": layers, "totals": a["totals"]}


def render_report(info: dict[str, Any], console) -> None:
    """Print a report dict to a rich console."""
    from rich.table import Table

    console.print("[bold]fx graph[/bold]")
    console.print(info["fx_graph"], markup=False, highlight=False)
    console.print("nodes per op: " + ", ".join(f"{k}={v}" for k, v in info["op_counts"].items()), highlight=False)
    table = Table(title="layers", title_justify="left")
    for col in ("node", "type", "in", "out", "params", "MACs", "BOPs", "format"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "BOPs") else "left")
    for r in info["layers"]:
        table.add_row(r["node"], r["type"], "x".join(map(str, r["in_shape"])), "x".join(map(str, r["out_shape"])),
                      f"{r['params']:,}", f"{r['macs']:,}", f"{r['bops']:,}", r["format"])
    console.print(table)
    t = info["totals"]
    console.print(f"totals: params={t['params']:,} MACs={t['macs']:,} FLOPs={t['flops']:,} BOPs={t['bops']:,} "
                  f"size={t['model_size']:,.1f} B average_bitwidth={t['average_bitwidth']:.2f}", highlight=False)
