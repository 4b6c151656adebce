"""hls4ml's distributed-arithmetic strategy: what it needs of a plan, and the per-layer costs hls4ml stores.

hls4ml 1.3 has da4ml solve each Linear as a constant adder graph and stores the kernel's cost as the layer's
``da_kernel_cost``; bitsmith's luts metric computes the same figure (``cost.network``), and the export records
hls4ml's own beside it. hls4ml reads its solver option ``hard_dc`` from the ``DA_HARD_DC`` environment variable.
"""

from __future__ import annotations

import os

from bitsmith.cost import _da4ml
from bitsmith.errors import BitsmithError
from bitsmith.export.plan import Plan

STRATEGIES = ("latency", "distributed_arithmetic")
DA = "distributed_arithmetic"
DA_MISSING = "hls4ml's distributed_arithmetic strategy needs da4ml: pip install 'bitsmith[da]'"


def check_strategy(plan: Plan, strategy: str) -> None:
    if strategy != DA:
        return
    if _da4ml.version() is None:
        raise BitsmithError(DA_MISSING)
    floats = [s.name for s in plan.steps if s.kind == "linear" and not s.quantized]
    if floats:
        raise BitsmithError(f"hls4ml's distributed_arithmetic strategy builds each Linear from its fixed-point "
                            f"formats, and {', '.join(floats)} {'is' if len(floats) == 1 else 'are'} not "
                            f"quantized; quantize every Linear or use --strategy latency")


def hard_dc() -> int | str:
    """hls4ml's solver option, read as hls4ml reads it (its DA_HARD_DC environment variable)."""
    value = os.environ.get("DA_HARD_DC", str(_da4ml.OPTIONS["hard_dc"]))
    try:
        return int(value)
    except ValueError:
        return value


def da_costs(hls_model, layers: list, hls_name: dict[str, str]) -> dict[str, float]:
    """{step: da_kernel_cost} of every Linear, as hls4ml's DA pass stored it while converting."""
    present = {layer.name: layer for layer in hls_model.get_layers()}
    costs, missing = {}, []
    for layer in layers:
        if layer.kind != "linear":
            continue
        cost = present[hls_name[layer.name]].get_attr("da_kernel_cost")
        if cost is None:
            missing.append(layer.name)
        else:
            costs[layer.name] = float(cost)
    if missing:
        raise BitsmithError(f"hls4ml generated no distributed-arithmetic kernel for {', '.join(missing)}")
    return costs
