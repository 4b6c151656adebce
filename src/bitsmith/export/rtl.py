"""``export --to verilog``: the steps around the RTL writer, its simulator and yosys, with what users see.

The solver settings come from the config's luts table (``[search.strategy.hw_runner.luts]``, else
``[passes.luts]``, else the defaults), so the kernels written are the solutions the metric costed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitsmith.cost.network import network_cost
from bitsmith.passes import parse_pass


def luts_table(settings) -> Any:
    """The config's luts settings: the search's runner table, else the pass's, else the defaults."""
    search = settings.search or {}
    table = (search.get("strategy", {}).get("hw_runner", {}).get("luts")
             or (settings.passes or {}).get("luts") or {})
    return parse_pass("luts", table, settings.source)


def write_rtl(plan, graph, output: Path, settings) -> dict[str, Any]:
    from bitsmith.export.verilog import write_verilog

    return write_verilog(plan, graph, Path(output), luts_table(settings).cost_settings().options())


def print_kernels(info: dict[str, Any], console) -> None:
    """Each Linear's kernel as written: da4ml's cost, which is the luts metric's kernel figure."""
    from rich.table import Table

    table = Table(title=f"Verilog: top module {info['top']}, combinational, {len(info['files'])} files",
                  title_justify="left")
    for col in ("layer", "module", "kernel LUTs (da4ml)"):
        table.add_column(col, justify="right" if "LUTs" in col else "left")
    for s in info["steps"]:
        if "da4ml_cost" in s:
            table.add_row(s["name"], s["module"], f"{s['da4ml_cost']:,.0f}")
    console.print(table)


def synthesize(output: Path, graph, settings, console, stage) -> dict[str, Any]:
    """yosys' LUTs per layer beside the luts metric's estimate: the kernel alone, and with the rounding around it
    (the layer's own input rounding and the ReLU after it, which the metric counts as ``requant``)."""
    from rich import box
    from rich.table import Table

    from bitsmith.export.synth import synth_yosys

    with stage(console, "mapping the Verilog to 7-series LUTs with yosys (minutes for large designs)"):
        result = synth_yosys(Path(output))
    estimate = {c.name: c for c in network_cost(graph, luts_table(settings).cost_settings()).layers}  # cached
    steps = list(result["steps"].items())
    table = Table(title="yosys: 7-series LUTs per layer, beside the luts metric", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for col in ("layer", "yosys kernel", "da4ml kernel", "yosys all", "metric all", "diff"):
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    rows = {}
    for i, (name, row) in enumerate(steps):
        if name not in estimate:
            continue
        glue_after = steps[i + 1][1]["glue_luts"] if i + 1 < len(steps) and steps[i + 1][1]["kind"] == "relu" else 0
        whole = row["luts"] + glue_after
        est = estimate[name]
        diff = (whole - est.luts) / est.luts if est.luts else 0.0
        rows[name] = {"yosys_kernel": row.get("kernel_luts", 0), "da4ml_kernel": est.kernel, "yosys": whole,
                      "estimate": est.luts}
        table.add_row(name, f"{row.get('kernel_luts', 0):,}", f"{est.kernel:,.0f}", f"{whole:,}",
                      f"{est.luts:,.0f}", f"{diff:+.1%}")
    console.print(table)
    console.print("all: the kernel with its input rounding and the ReLU after it (the metric's requant)",
                  style="dim", highlight=False)
    console.print(f"yosys: {result['luts']:,} LUTs and {result['carry4']:,} CARRY4 in all; the luts metric: "
                  f"{sum(e.luts for e in estimate.values()):,.0f} (adder bits; synthesis, not place and route; "
                  f"{result['flow']})", highlight=False)
    return {**result, "per_layer": rows}

