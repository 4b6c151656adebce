"""The ``luts`` analysis pass: LUTs, adder depth and latency of each layer, from its integer weights.

``[passes.luts]`` (and the search's ``[search.strategy.hw_runner.luts]``) take the same table,
``LutsSettings``. What is counted is said in ``bitsmith.cost.network``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field

from bitsmith.cost.network import CostSettings, NetworkCost, NotDefined, layer_rows, network_cost
from bitsmith.graph import Graph
from bitsmith.passes.registry import parse_pass, register_pass
from bitsmith.schema import Table


class LutsSettings(Table):
    """How layers are solved and latency is counted; the defaults give hls4ml 1.3's own cost."""

    hard_dc: int = Field(2, ge=-1)  # extra adder levels the solver may spend to save adders (-1: no limit)
    search_all_decompose_dc: bool = True  # false: faster, and the cost may differ by a few percent
    adder_levels_per_cycle: int = Field(4, ge=1)  # the pipelining rule of latency_cycles
    timeout_s: float = Field(60.0, gt=0, allow_inf_nan=False)  # per layer
    workers: int = Field(1, ge=1, le=64)  # solver processes per bitsmith process
    cache_dir: str | None = None  # default: $BITSMITH_CACHE, else the user cache directory (its da/)
    cache: bool = True  # false: solve every layer every time (nothing kept, not even in memory)

    def cost_settings(self) -> CostSettings:
        base = CostSettings(self.hard_dc, self.search_all_decompose_dc, self.adder_levels_per_cycle,
                            self.timeout_s, self.workers)
        if not self.cache:
            return replace(base, cache_dir=None, cache=False)
        if self.cache_dir is not None:
            return replace(base, cache_dir=Path(self.cache_dir).expanduser() / "da")
        return base

    def result_settings(self) -> dict[str, Any]:
        """The settings the figures depend on (not where they are cached or how fast they come)."""
        return self.model_dump(include={"hard_dc", "search_all_decompose_dc", "adder_levels_per_cycle"})


def summary(cost: NetworkCost) -> dict[str, Any]:
    return {**cost.metrics(), "layers": layer_rows(cost), "seconds": cost.seconds, "solved": cost.solved}


@register_pass("luts", LutsSettings)
def count_luts(graph: Graph, config: Any = None) -> tuple[Graph, dict[str, Any]]:
    """LUTs (adder bits), adder depth and latency in cycles, per layer and in total; ``not_defined`` says
    why there are none (a layer not in fixed point)."""
    settings = parse_pass("luts", config or {})
    try:
        cost = network_cost(graph, settings.cost_settings())
    except NotDefined as e:
        return graph, {"not_defined": str(e)}
    return graph, summary(cost)


def short(fmt: str) -> str:
    """``ufixed<7,3>`` -> ``u<7,3>``, ``fixed<8,4>`` -> ``s<8,4>``: the table's narrow spelling."""
    return ("u" if fmt.startswith("u") else "s") + fmt[fmt.index("<"):] if "<" in fmt else fmt


def render_luts(rows: list[dict[str, Any]], console, title: str = "LUTs from the weights (da4ml)") -> None:
    """The per-layer table, within 80 columns; rows with a ``trial`` key get a trial column (a study's best)."""
    from rich import box
    from rich.table import Table as RichTable

    trials = any("trial" in r for r in rows)
    table = RichTable(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1, 0, 0))
    cols = (["#"] if trials else []) + ["layer", "shape", "input", "weight", "nonzero", "kernel", "requant",
                                            "depth", "cyc"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("layer", "input", "weight") else "right", no_wrap=True)
    previous = None
    for r in rows:
        cells = [r["layer"], f"{r['inputs']}x{r['outputs']}", short(r["input"]), short(r["weight"]),
                 f"{r['nonzero'] * 100:.0f}%", f"{r['kernel_luts']:,.0f}", f"{r['requant_luts']:,.0f}",
                 f"{r['adder_depth']:g}", str(r["cycles"])]
        if trials:
            cells.insert(0, "" if r.get("trial") == previous else str(r.get("trial", "")))
            previous = r.get("trial")
        table.add_row(*cells)
    console.print(table)
    notes = ["kernel: LUTs of x @ W + b (hls4ml's da_kernel_cost); requant: LUTs rounding into",
             "the next format; depth: adder levels; cyc: cycles; s/u<w,i>: ap_[u]fixed<w,i>"]
    for line in notes + (["#: the trial number"] if trials else []):
        console.print(line, style="dim", markup=False, highlight=False)


def print_luts(info: dict[str, Any], notes, console) -> None:
    """The pass's per-layer table and totals, or a warning (``notes``) saying why the design has none."""
    if "not_defined" in info:
        notes.warn(f"no LUT figures: {info['not_defined']}")
        return
    render_luts(info["layers"], console)
    console.print(f"luts={info['luts']:,.0f} adder_depth={info['adder_depth']:g} "
                  f"latency_cycles={info['latency_cycles']:g} ({info['solved']} layer(s) solved, the rest "
                  f"cached; {info['seconds']:.2f} s)", highlight=False)
