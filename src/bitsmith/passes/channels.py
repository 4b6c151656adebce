"""The channel-width transform: ``[passes.channel_multiply]``.

Each Linear / Conv2d node may multiply its output width, its input width, or
both. A BatchNorm after a widened layer is widened with it; elementwise layers
(ReLU, pooling, dropout) carry widths through; a ReLU has no width. After the
pass every consumer must take what its producer gives: ``mode = "strict"``
(default) fails naming both nodes, ``mode = "auto"`` sets the consumer's input
width from its producer.

``init = "preserve"`` (default) widens in the Net2WiderNet manner: new units
copy existing ones (unit ``j`` copies unit ``j mod n``) and the consumer's
incoming weights are split among the copies, so the widened network computes
the same function. ``init = "random"`` gives the resized layers fresh weights.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from bitsmith.errors import BitsmithError, CandidateError
from bitsmith.graph import Graph, ShapeError, numel, with_modules
from bitsmith.passes._select import select, unmatched
from bitsmith.passes.registry import layer_tables, parse_pass, register_pass
from bitsmith.quant import float_type, quantized_copy
from bitsmith.schema import MAX_SEED, Table

WIDTHFUL = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
CARRY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.Hardtanh, nn.Dropout,
         nn.Identity, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CARRY_FUNCTIONS = {F.relu, torch.relu, F.dropout, torch.sigmoid, torch.tanh, F.gelu, operator.getitem}
FLATTEN_FUNCTIONS = {torch.flatten}
MAX_FACTOR = 1024
# bitsmith is for small networks: a widened model above this many parameters is
# refused before anything is allocated (about 400 MB of float32 weights).
MAX_PARAMS = 100_000_000


def _factor():
    return Field(None, ge=1, le=MAX_FACTOR)


class ChannelSettings(Table):
    """``[passes.channel_multiply]``'s own keys."""

    by: Literal["name", "type", "regex_name"] = "name"
    init: Literal["preserve", "random"] = "preserve"
    mode: Literal["strict", "auto"] = "strict"
    seed: int = Field(0, ge=0, le=MAX_SEED)


class ChannelLayer(Table):
    """``[passes.channel_multiply.<node>.config]``: how one node's widths change."""

    name: Literal["output_only", "input_only", "both", "inplace"] | None = None
    channel_multiplier: int | None = _factor()
    channel_multiplier_input: int | None = _factor()
    channel_multiplier_output: int | None = _factor()

    @model_validator(mode="after")
    def _needs_factors(self):
        given = (self.channel_multiplier, self.channel_multiplier_input, self.channel_multiplier_output)
        if self.name == "both" and all(m is None for m in given):
            raise ValueError("name = \"both\" needs channel_multiplier, or channel_multiplier_input and "
                             "channel_multiplier_output")
        if self.name in ("output_only", "input_only") and self.channel_multiplier is None:
            raise ValueError(f"name = {self.name!r} needs channel_multiplier (a positive integer)")
        return self

    @property
    def widens(self) -> bool:
        return self.name in ("output_only", "input_only", "both")

    @property
    def inert(self) -> bool:
        """Leaves the layer as it is ("NA", or a ReLU's "inplace" in existing files)."""
        return not self.widens

    @staticmethod
    def reaches(module) -> bool:
        """Whether a broad table (default, by type, by regex) applies to ``module``."""
        return isinstance(module, WIDTHFUL)

    @property
    def factors(self) -> tuple[int, int]:
        """(input factor, output factor); a ReLU's "inplace" entry has no width to change."""
        m = self.channel_multiplier
        if self.name == "both":
            return self.channel_multiplier_input or m or 1, self.channel_multiplier_output or m or 1
        if self.name == "output_only":
            return 1, m or 1
        if self.name == "input_only":
            return m or 1, 1
        return 1, 1


@dataclass
class _Width:
    width: int  # channels (dim 1) after the pass
    orig: int  # channels before
    mapping: torch.Tensor | None  # new channel -> original channel; None when unchanged
    source: str  # the node that decided this width

    @property
    def changed(self) -> bool:
        return self.mapping is not None


def _dims(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.in_channels, module.out_channels


def _fresh(module: nn.Module, n_in: int, n_out: int) -> nn.Module:
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        return nn.Linear(n_in, n_out, bias=bias)
    if module.groups != 1:
        raise BitsmithError("channel_multiply: grouped convolutions cannot be widened")
    return nn.Conv2d(n_in, n_out, module.kernel_size, module.stride, module.padding, module.dilation,
                     bias=bias, padding_mode=module.padding_mode)


def _widen(module: nn.Module, in_map: torch.Tensor | None, out_map: torch.Tensor | None,
           n_in: int, n_out: int, preserve: bool) -> nn.Module:
    new = _fresh(module, n_in, n_out).to(module.weight.device)
    if preserve:
        with torch.no_grad():
            w = module.weight.detach()
            b = module.bias.detach() if module.bias is not None else None
            in_map = in_map.to(w.device) if in_map is not None else None
            out_map = out_map.to(w.device) if out_map is not None else None
            if in_map is not None:  # split incoming weights among the copies
                counts = torch.bincount(in_map, minlength=w.shape[1]).to(w.dtype)
                scale = (1.0 / counts[in_map]).reshape(1, -1, *([1] * (w.dim() - 2)))
                w = w[:, in_map] * scale
            if out_map is not None:  # new units copy existing ones
                w = w[out_map]
                b = b[out_map] if b is not None else None
            new.weight.copy_(w)
            if b is not None:
                new.bias.copy_(b)
    q = getattr(module, "qconfig", None)
    return quantized_copy(new, q) if q is not None else new


def _widen_norm(module: nn.Module, mapping: torch.Tensor, preserve: bool) -> nn.Module:
    device = next((t.device for t in (*module.parameters(), *module.buffers())), None)
    new = type(module)(len(mapping), eps=module.eps, momentum=module.momentum, affine=module.affine,
                       track_running_stats=module.track_running_stats, device=device)
    mapping = mapping.to(device) if device is not None else mapping
    if preserve:
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                old = getattr(module, name)
                if old is not None:
                    getattr(new, name).copy_(old[mapping])
            if module.num_batches_tracked is not None:
                new.num_batches_tracked.copy_(module.num_batches_tracked)
    return new


@register_pass("channel_multiply", ChannelSettings, ChannelLayer)
def channel_multiply_pass(graph: Graph, config: Any) -> tuple[Graph, dict[str, Any]]:
    """Multiply layer widths per node; returns the consistent, re-annotated graph."""
    where = "passes.channel_multiply"
    cfg = parse_pass("channel_multiply", config)
    tables = layer_tables(cfg)
    init, mode = cfg.init, cfg.mode
    chosen, missed = select(graph, tables, cfg.by, where)
    factors: dict[str, tuple[int, int]] = {}
    for name, key in chosen.items():
        table = tables[key]
        module = graph.module(name)
        if table.widens and not isinstance(module, WIDTHFUL):
            if key == "default" or cfg.by != "name":
                continue  # broad selectors only reach layers that have a width
            raise BitsmithError(f"[{where}.{key}.config]: node {name!r} is a {type(module).__name__}, which has "
                                "no width to multiply; widths belong to Linear and Conv2d nodes")
        factors[name] = table.factors
    _check_size(graph, factors, where)

    preserve = init == "preserve"
    widths: dict[str, _Width] = {}
    replacements: dict[str, nn.Module] = {}
    report: dict[str, dict[str, int]] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for node in graph.gm.graph.nodes:
            info = graph.nodes[node.name]
            inputs = [widths[a.name] for a in node.all_input_nodes if a.name in widths]
            inp = inputs[0] if inputs else None
            unchanged = _Width(info.out_shape[0], info.out_shape[0], None, node.name) if info.out_shape else None
            if node.op == "placeholder":
                widths[node.name] = unchanged
            elif node.op == "output":
                if inp is not None and inp.changed:
                    raise CandidateError(
                        f"{where}: the model's output would have {inp.width} features instead of {inp.orig}; "
                        f"node {inp.source!r} is the last layer and must keep its output width (output factor 1)")
            elif node.op == "call_module":
                module = graph.gm.get_submodule(node.target)
                base = float_type(module)
                if issubclass(base, WIDTHFUL):
                    widths[node.name] = _width_layer(node.name, module, inp, factors.get(node.name, (1, 1)),
                                                     mode, preserve, replacements, report, node.target, where)
                elif issubclass(base, NORMS):
                    if inp.changed:
                        replacements[node.target] = _widen_norm(module, inp.mapping, preserve)
                    widths[node.name] = inp
                elif base is nn.Flatten:
                    widths[node.name] = _flatten(inp, info, unchanged)
                elif issubclass(base, CARRY):
                    widths[node.name] = inp if inp is not None else unchanged
                else:
                    widths[node.name] = _opaque(node.name, base.__name__, inputs, unchanged, where)
            else:  # call_function / call_method / get_attr
                target = node.target
                if target in CARRY_FUNCTIONS or target in ("relu", "sigmoid", "tanh"):
                    widths[node.name] = inp if inp is not None else unchanged
                elif target in FLATTEN_FUNCTIONS or target == "flatten":
                    widths[node.name] = _flatten(inp, info, unchanged)
                else:
                    widths[node.name] = _opaque(node.name, getattr(target, "__name__", str(target)),
                                                inputs, unchanged, where)
    try:
        new = with_modules(graph, replacements, reshape=True)
    except ShapeError as e:
        raise CandidateError(f"{where}: the widened graph does not run: {e}") from None
    return new, {"widths": report, "init": init, "mode": mode,
                 "ignored": [unmatched(graph, k, cfg.by, where) for k in missed]}


def _check_size(graph: Graph, factors: dict[str, tuple[int, int]], where: str) -> None:
    """Refuse a widened model too large to build, before allocating it (an upper bound: every
    consumer is assumed to follow its producer's widening, as mode = "auto" would)."""
    if not factors:
        return
    total = 0
    for name in graph.nodes:
        info = graph.nodes[name]
        if info.op != "call_module":
            continue
        module = graph.module(name)
        if isinstance(module, WIDTHFUL):
            m_in, m_out = factors.get(name, (1, 1))
            grow = max(m_in, max((factors.get(p, (1, 1))[1] for p in factors), default=1))
            total += module.weight.numel() * grow * m_out
        else:
            total += info.params * max(f[1] for f in factors.values())
    if total > MAX_PARAMS:
        raise CandidateError(f"{where}: the widened model would have about {total:,} parameters, more than "
                             f"bitsmith builds ({MAX_PARAMS:,}); use smaller channel multipliers")


def _width_layer(name, module, inp, factor, mode, preserve, replacements, report, target, where) -> _Width:
    m_in, m_out = factor
    orig_in, orig_out = _dims(module)
    want_in = orig_in * m_in
    if inp.width != want_in:
        if mode == "auto":
            want_in = inp.width
        else:
            fix = (f"set channel_multiplier_input = {inp.width // orig_in} on {name!r}"
                   if inp.width % orig_in == 0 else f"change the factors of {inp.source!r}")
            raise CandidateError(
                f"channel_multiply: node {name!r} expects {want_in} input features but its producer "
                f"{inp.source!r} gives {inp.width}; {fix}, or set mode = \"auto\" in [{where}]")
    n_out = orig_out * m_out
    out_map = torch.arange(n_out) % orig_out if m_out > 1 else None
    if want_in != orig_in or out_map is not None:
        replacements[target] = _widen(module, inp.mapping, out_map, want_in, n_out, preserve)
    report[name] = {"in": want_in, "out": n_out, "in_before": orig_in, "out_before": orig_out}
    return _Width(n_out, orig_out, out_map, name)


def _flatten(inp: _Width, info, unchanged: _Width) -> _Width:
    if inp is None or not inp.changed:
        return unchanged
    per_channel = numel(info.in_shapes[0][1:]) if info.in_shapes and len(info.in_shapes[0]) > 1 else 1
    mapping = (inp.mapping[:, None] * per_channel + torch.arange(per_channel)).reshape(-1)
    return _Width(inp.width * per_channel, inp.orig * per_channel, mapping, inp.source)


def _opaque(name: str, kind: str, inputs: list[_Width], unchanged: _Width, where: str) -> _Width:
    changed = [w for w in inputs if w.changed]
    if changed:
        raise CandidateError(f"{where}: cannot carry the width change from {changed[0].source!r} through "
                            f"node {name!r} ({kind}); keep the layers before it at their width")
    return unchanged
