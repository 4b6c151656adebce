"""The widths report: how many bits each quantized Linear / Conv2d layer's weights really use, and how many are pruned.

Computed from the weight values after rounding to the layer's weight format (``quant.quantize``). A value on
the grid ``k / 2^frac`` lies on a coarser grid ``k' / 2^f'`` (``f' <= frac``) when ``k`` has trailing zero bits;
on its coarsest grid it needs ``bit_length(|k'|) + 1`` bits (magnitude and sign), and 0 when it is 0 (pruned).

* per output channel: the channel's coarsest grid (the one all its values lie on), and the bits of its largest
  value there; summarised as min / median / max over channels, with the count of all-zero channels;
* per weight: each weight on its own coarsest grid, averaged over all weights (zeros count 0).

Counting magnitude and sign, ``-2^m`` takes one bit more than two's complement needs; the figures say how
wide each channel's values are, whatever their sign. ``data_in`` is shown as the metrics count it: unsigned,
one bit fewer, when a ReLU produces the input (``analysis.input_format``).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from bitsmith.cost.network import KERNELS, relu_fed
from bitsmith.graph import Graph
from bitsmith.passes.analysis import input_format
from bitsmith.quant import Fixed, float_type, formats, quantize

NOTES = ("in/w/b: width/frac bits (u: unsigned, as counted after a ReLU); pruned: weights",
         "exactly 0; ch bits: min/median/max over output channels of the bits each needs",
         "on its coarsest grid; 0-ch: all-zero channels; bits/w: mean bits per weight")


def _bit_length(k: torch.Tensor) -> torch.Tensor:
    """``int.bit_length`` of non-negative int64 values (exact below 2^53, far beyond any format here)."""
    return torch.frexp(k.double())[1].long()


def _integers(weight: torch.Tensor, fmt: Fixed) -> torch.Tensor:
    """The weights as integers on ``fmt``'s grid, one row per output channel."""
    with torch.no_grad():
        q = quantize(weight.detach(), fmt).double()
    return torch.round(q * 2.0 ** fmt.frac).long().reshape(q.shape[0], -1)


def channel_bits(k: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Per row of integers ``k``: the bits of its largest magnitude on the row's coarsest grid (0: all zero);
    and per value, its bits on its own coarsest grid (0 for 0)."""
    mag = k.abs()
    if mag.shape[1] == 0:  # no inputs: nothing to count
        return [0] * mag.shape[0], mag
    nonzero = mag != 0
    tz = _bit_length(mag & -mag) - 1  # trailing zero bits; -1 for 0
    per_weight = torch.where(nonzero, _bit_length(mag >> tz.clamp(min=0)) + 1, 0)
    big = torch.iinfo(torch.int64).max
    shift = torch.where(nonzero, tz, big).min(dim=1).values  # the row's coarsest grid: its fewest trailing zeros
    top = mag.max(dim=1).values
    rows = torch.where(top != 0, _bit_length(top >> shift.clamp(0, 62)) + 1, 0)
    return [int(b) for b in rows], per_weight


def _fmt(fmt: Fixed | None) -> dict[str, Any] | None:
    return None if fmt is None else {"width": fmt.width, "frac": fmt.frac, "signed": fmt.signed}


def width_rows(graph: Graph) -> list[dict[str, Any]]:
    """One row per Linear / Conv2d with a weight format, in graph order (none for a float graph)."""
    rows = []
    for node in graph.gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = graph.gm.get_submodule(node.target)
        fmts = formats(module) or {}
        if not issubclass(float_type(module), KERNELS) or "weight" not in fmts:
            continue
        k = _integers(module.weight, fmts["weight"])
        per_channel, per_weight = channel_bits(k)
        zeros = int((k == 0).sum())
        after_relu = relu_fed(graph, node)
        rows.append({
            "node": node.name, "type": float_type(module).__name__, "weight": _fmt(fmts["weight"]),
            "data_in": _fmt(input_format(fmts.get("data_in"), after_relu)), "after_relu": after_relu,
            "bias": _fmt(fmts.get("bias")) if module.bias is not None else None,
            "weights": k.numel(), "zero_weights": zeros, "pruned": zeros / k.numel() if k.numel() else 0.0,
            "channels": len(per_channel), "pruned_channels": per_channel.count(0),
            "channel_bits_min": min(per_channel, default=0), "channel_bits_median":
                statistics.median(per_channel) if per_channel else 0, "channel_bits_max": max(per_channel, default=0),
            "weight_bits_mean": float(per_weight.double().mean()) if k.numel() else 0.0,
        })
    return rows


def _show(fmt: dict[str, Any] | None) -> str:
    if fmt is None:
        return "-"
    return f"{'' if fmt['signed'] else 'u'}{fmt['width']}/{fmt['frac']}"


def _num(x: float) -> str:
    return f"{x:g}"


def render_widths(rows: list[dict[str, Any]], width: int = 80) -> list[str]:
    """The rows as an aligned table of at most ``width`` columns (long layer names cut), then the total."""
    head = ("layer", "type", "in", "w", "b", "weights", "pruned", "ch bits", "0-ch", "bits/w")
    right = {"weights", "pruned", "ch bits", "0-ch", "bits/w"}
    cells = [(r["node"], r["type"], _show(r["data_in"]), _show(r["weight"]), _show(r["bias"]), f"{r['weights']:,}",
              f"{r['pruned'] * 100:.1f}%", "/".join(_num(r[f"channel_bits_{s}"]) for s in ("min", "median", "max")),
              str(r["pruned_channels"]), f"{r['weight_bits_mean']:.2f}") for r in rows]
    cols = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(head)]
    cols[0] = max(len(head[0]), min(cols[0], width - (sum(cols[1:]) + len(cols) - 1)))

    def line(values) -> str:
        out = []
        for h, v, w in zip(head, values, cols):
            v = v if len(v) <= w else v[:w - 1] + "~"
            out.append(v.rjust(w) if h in right else v.ljust(w))
        return " ".join(out).rstrip()

    lines = ["weight widths and pruning", line(head), line("-" * w for w in cols), *(line(c) for c in cells)]
    total = sum(r["weights"] for r in rows)
    zeros = sum(r["zero_weights"] for r in rows)
    share = zeros / total * 100 if total else 0.0
    lines.append(f"total: {total:,} weights, {zeros:,} pruned ({share:.1f}%)")
    return lines + list(NOTES)


def print_widths(rows: list[dict[str, Any]], console) -> None:
    """The table on a rich console, as plain text (nothing in it is markup); nothing when there are no rows."""
    for i, text in enumerate(render_widths(rows) if rows else []):
        console.print(text, style="dim" if i >= len(rows) + 4 else None, markup=False, highlight=False)
