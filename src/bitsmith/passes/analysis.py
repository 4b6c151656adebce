"""Analysis passes: what a graph costs in parameters, operations and bits.

All figures are per sample (batch size 1), from the shapes that shape
propagation recorded. Float layers count 32 bits. FLOPs are what PyTorch's
``FlopCounterMode`` counts (2 per MAC); the rest of the arithmetic (bias adds,
normalisation, activations, pooling) is ``elementwise_ops``. BOPs are MACs x
weight bits x input bits. A signed w-bit input that a ReLU produces (w >= 2)
counts w - 1 bits, in BOPs and in the activation bits: its values are >= 0, so
they are exactly those of the unsigned (w - 1)-bit format (as the luts metric
and the exports count it).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bitsmith.cost.network import relu_fed
from bitsmith.graph import Graph, NodeInfo, numel
from bitsmith.passes.registry import NoSettings, parse_pass, register_pass
from bitsmith.quant import Fixed
from bitsmith.schema import Table

FLOAT_BITS = 32
_ELEMENTWISE = {"relu", "relu6", "leakyrelu", "sigmoid", "tanh", "gelu", "hardtanh", "silu"}
_NORM = {"batchnorm1d", "batchnorm2d", "layernorm"}
_POOL = {"maxpool2d", "avgpool2d", "adaptiveavgpool2d", "adaptivemaxpool2d", "maxpool1d", "avgpool1d"}


def node_macs(info: NodeInfo, module) -> int:
    """Multiply-accumulates of one node for one sample."""
    kind = info.kind
    if kind == "linear":
        return module.in_features * module.out_features * max(1, numel(info.out_shape) // module.out_features)
    if kind in ("conv1d", "conv2d"):
        per_out = (module.in_channels // module.groups) * numel(tuple(module.kernel_size))
        return per_out * numel(info.out_shape)
    return 0


def node_flops(macs: int) -> int:
    """FLOPs as PyTorch's ``FlopCounterMode`` counts them: 2 per MAC of Linear and Conv, no bias adds."""
    return 2 * macs


def node_elementwise_ops(info: NodeInfo, module, macs: int) -> int:
    """The work FLOPs leave out: bias adds, BatchNorm scale and shift, activations, pooling."""
    kind = info.kind
    out = numel(info.out_shape)
    if macs:
        return out if getattr(module, "bias", None) is not None else 0
    if kind in _NORM:
        return 2 * out  # scale and shift (statistics are folded at inference)
    if kind in _ELEMENTWISE:
        return out
    if kind in _POOL:
        return numel(info.in_shapes[0]) if info.in_shapes else out
    return 0


def _bits(fmt) -> int:
    return fmt.width if fmt is not None else FLOAT_BITS


def input_format(fmt: Fixed | None, after_relu: bool) -> Fixed | None:
    """The format an input in ``fmt`` is counted in: unsigned with one bit fewer when it is signed and a ReLU
    produces it (its sign bit is always 0); a 1-bit format stays as it is."""
    if fmt is not None and after_relu and fmt.signed and fmt.width >= 2:
        return Fixed(fmt.width - 1, fmt.frac, False)
    return fmt


def analyze(graph: Graph) -> dict[str, Any]:
    """Every per-node and total figure the analysis passes report."""
    from bitsmith.quant import formats

    per_node: dict[str, dict[str, Any]] = {}
    tot = {"params": 0, "macs": 0, "flops": 0, "elementwise_ops": 0, "bops": 0, "weight_bits": 0,
           "bias_bits": 0, "other_param_bits": 0, "activation_bits": 0, "activation_elems": 0, "qweight_bits": 0,
           "qweight_elems": 0}
    fx_nodes = {n.name: n for n in graph.gm.graph.nodes}
    for name, info in graph.nodes.items():
        if info.op != "call_module":
            continue
        module = graph.gm.get_submodule(info.target)
        fmts = formats(module) or {}
        macs = node_macs(info, module)
        flops = node_flops(macs)
        w = getattr(module, "weight", None) if macs else None
        b = getattr(module, "bias", None) if macs else None
        w_bits = w.numel() * _bits(fmts.get("weight")) if w is not None else 0
        b_bits = b.numel() * _bits(fmts.get("bias")) if b is not None else 0
        other = (info.params - (w.numel() if w is not None else 0) - (b.numel() if b is not None else 0)) * FLOAT_BITS
        in_elems = numel(info.in_shapes[0]) if info.in_shapes else 0
        in_width = _bits(input_format(fmts.get("data_in"), relu_fed(graph, fx_nodes[name])))
        bops = macs * _bits(fmts.get("weight")) * in_width
        row = {"type": info.module_type, "params": info.params, "macs": macs, "flops": flops,
               "elementwise_ops": node_elementwise_ops(info, module, macs), "bops": bops,
               "weight_bits": w_bits, "bias_bits": b_bits, "other_param_bits": other,
               "activation_bits": in_elems * in_width, "data_in_width": in_width,
               "weight_width": _bits(fmts.get("weight")) if w is not None else None}
        per_node[name] = row
        for key in ("params", "macs", "flops", "elementwise_ops", "bops", "weight_bits", "bias_bits",
                    "other_param_bits", "activation_bits"):
            tot[key] += row[key]
        tot["activation_elems"] += in_elems
        if w is not None and "weight" in fmts:  # MASE's average: quantized weights only
            tot["qweight_bits"] += w_bits
            tot["qweight_elems"] += w.numel()
    param_bits = tot["weight_bits"] + tot["bias_bits"] + tot["other_param_bits"]
    avg_w = param_bits / tot["params"] if tot["params"] else float(FLOAT_BITS)
    avg_a = tot["activation_bits"] / tot["activation_elems"] if tot["activation_elems"] else float(FLOAT_BITS)
    totals = {
        "params": tot["params"], "macs": tot["macs"], "flops": tot["flops"],
        "elementwise_ops": tot["elementwise_ops"], "bops": tot["bops"],
        "weight_bits": tot["weight_bits"], "bias_bits": tot["bias_bits"], "param_bits": param_bits,
        "activation_bits": tot["activation_bits"],
        "model_size": param_bits / 8,  # bytes, bit-accurate
        "average_bitwidth": avg_w, "average_activation_bitwidth": avg_a,
        "average_linear_weight_bitwidth": (tot["qweight_bits"] / tot["qweight_elems"] if tot["qweight_elems"]
                                           else float(FLOAT_BITS)),
    }
    return {"nodes": per_node, "totals": totals}


def memory_density(average_bitwidth: float, compare_to: float = FLOAT_BITS) -> float:
    return compare_to / average_bitwidth


class BitsSettings(Table):
    """``[passes.bits]``: memory density is ``compare_to / average_bitwidth``."""

    compare_to: float = Field(FLOAT_BITS, gt=0, allow_inf_nan=False)


@register_pass("params", NoSettings)
def count_params(graph: Graph, config: dict | None = None) -> tuple[Graph, dict[str, Any]]:
    a = analyze(graph)
    return graph, {"params": a["totals"]["params"], "nodes": {k: v["params"] for k, v in a["nodes"].items()}}


@register_pass("flops", NoSettings)
def count_flops(graph: Graph, config: dict | None = None) -> tuple[Graph, dict[str, Any]]:
    """FLOPs as PyTorch counts them (2 x MACs), MACs, and the element-wise work FLOPs leave out."""
    a = analyze(graph)
    keys = ("flops", "macs", "elementwise_ops")
    return graph, {**{k: a["totals"][k] for k in keys},
                   "nodes": {k: {f: v[f] for f in keys} for k, v in a["nodes"].items()}}


@register_pass("bits", BitsSettings)
def count_bits(graph: Graph, config: Any = None) -> tuple[Graph, dict[str, Any]]:
    """Bit-accurate memory, average bit widths and memory density (``compare_to`` bits, default 32)."""
    compare_to = parse_pass("bits", config or {}).compare_to
    a = analyze(graph)
    t = a["totals"]
    keys = ("weight_bits", "bias_bits", "param_bits", "activation_bits", "model_size", "average_bitwidth",
            "average_activation_bitwidth")
    return graph, {**{k: t[k] for k in keys}, "memory_density": memory_density(t["average_bitwidth"], compare_to),
                   "nodes": {k: {f: v[f] for f in ("weight_bits", "bias_bits", "other_param_bits",
                                                   "activation_bits")} for k, v in a["nodes"].items()}}


@register_pass("bops", NoSettings)
def count_bops(graph: Graph, config: dict | None = None) -> tuple[Graph, dict[str, Any]]:
    a = analyze(graph)
    return graph, {"bops": a["totals"]["bops"], "nodes": {k: v["bops"] for k, v in a["nodes"].items()}}
