"""LUTs, adder depth and latency of a quantized graph, from its integer weights.

What is counted, per Linear or Conv2d layer (a Conv2d: one kernel instance, i.e. one output position, as
hls4ml's distributed-arithmetic kernel does):

* ``kernel``: the adder graph that computes ``x @ W + b`` with constant ``W``, ``b`` (the weights and bias
  after rounding, zeros free), solved by da4ml from each input's interval; this is what hls4ml 1.3 stores
  as the layer's ``da_kernel_cost``. The input interval is the layer's input format, unsigned (one bit
  fewer) when a ReLU produces the input;
* ``requant``: rounding (half up, as da4ml costs it; the ties-to-even correction is not counted) and
  saturating the layer's outputs into the format of the ReLU or layer that reads them, and its inputs
  from the format of the ReLU or layer that produces them, where that producer's format is known.

Costs are in adder bits, which map to about one LUT each on 6-input-LUT FPGAs (``luts``). ``adder_depth``
is the chain's critical path in adder levels: the sum, over layers, of each layer's deepest output
(requantisation included). ``latency_cycles`` follows one stated rule: a register at every layer's output
and after every ``adder_levels_per_cycle`` adder levels inside a layer.
"""

from __future__ import annotations

import functools
import json
import math
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bitsmith.cost import _da4ml
from bitsmith.cost.cache import Cache, default_dir, digest
from bitsmith.cost.solver import run_all
from bitsmith.errors import BitsmithError, CandidateError
from bitsmith.graph import Graph
from bitsmith.quant import Fixed, float_type, formats, quantize

KERNELS = (nn.Linear, nn.Conv2d)
EXACT_BITS = 53  # the solver computes in float64: sums wider than this are not exact


class NotDefined(CandidateError):
    """The design has a layer the metric cannot cost (a float layer): the metric is not defined for it, and
    a search prunes the candidate with this reason."""


@dataclass(frozen=True)
class CostSettings:
    """How layers are solved and how latency is counted."""

    hard_dc: int = _da4ml.OPTIONS["hard_dc"]  # extra adder levels the solver may add for fewer adders
    search_all_decompose_dc: bool = _da4ml.OPTIONS["search_all_decompose_dc"]
    adder_levels_per_cycle: int = 4
    timeout_s: float = 60.0  # per layer
    workers: int = 1  # solver processes per bitsmith process
    cache_dir: Path | None = field(default_factory=default_dir)  # None: in memory only
    cache: bool = True  # False: solve every layer every time

    def options(self) -> dict[str, Any]:
        return {"hard_dc": self.hard_dc, "search_all_decompose_dc": self.search_all_decompose_dc}


@dataclass(frozen=True)
class Problem:
    """One layer's constant matrix-vector product; its arrays are built only when needed (a cache miss)."""

    name: str
    kind: str  # linear, conv2d
    module: nn.Module
    input_fmt: Fixed  # the effective input format (unsigned after a ReLU)
    weight_fmt: Fixed
    bias_fmt: Fixed | None
    producer: Fixed | None  # the format the input arrives in, when known
    relu_after: Fixed | None  # the ReLU's input format, when a quantized ReLU reads the outputs
    consumer: Fixed | None  # else the next layer's input format, when it reads the outputs directly

    @functools.cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The kernel (n_in, n_out) and bias, float64 on their grids (rounded as bitsmith computes)."""
        m = self.module
        with torch.no_grad():
            w = quantize(m.weight.detach().double(), self.weight_fmt)
            b = None if m.bias is None else quantize(m.bias.detach().double(), self.bias_fmt)
        kernel = w.reshape(w.shape[0], -1).T.contiguous().numpy() + 0.0  # + 0.0: no -0.0 in the digest
        return kernel, None if b is None else b.numpy() + 0.0

    @property
    def kernel(self) -> np.ndarray:
        return self.arrays[0]

    @property
    def bias(self) -> np.ndarray | None:
        return self.arrays[1]

    @property
    def n_in(self) -> int:
        return self.module.weight[0].numel()

    @property
    def kif(self) -> np.ndarray:
        return np.tile(np.asarray(kif_of(self.input_fmt), dtype=np.int64), (self.n_in, 1))

    def key(self, options: dict[str, Any]) -> str:
        """The digest of what the solver's answer depends on; remembered per live weight tensor and version, so
        a trial that reuses the base model's weights does not round and hash them again."""
        w, b = self.module.weight, self.module.bias
        memo = (id(w), self.weight_fmt, self.bias_fmt, self.input_fmt, json.dumps(options, sort_keys=True))
        hit = _keys.get(memo)
        if hit is not None and hit[0]() is w and hit[1] == w._version and hit[2] == (
                None if b is None else (id(b), b._version)):
            return hit[3]
        key = digest("cmvm", _da4ml.NAME, _da4ml.version(), self.kernel, self.bias, self.kif, options)
        if len(_keys) > MEMO:
            _keys.clear()
        _keys[memo] = (weakref.ref(w), w._version, None if b is None else (id(b), b._version), key)
        return key


MEMO = 100_000  # remembered layer keys per process, at most
_keys: dict[tuple, tuple] = {}


@dataclass
class LayerCost:
    name: str
    kind: str
    shape: tuple[int, int]  # (inputs, outputs) of the kernel
    input_fmt: Fixed
    weight_fmt: Fixed
    nonzero: float  # share of non-zero weights
    kernel: float  # adder bits of x @ W + b: hls4ml's da_kernel_cost
    requant: float
    depth: float  # adder levels, requantisation included
    cycles: int
    cached: bool

    @property
    def luts(self) -> float:
        return self.kernel + self.requant


@dataclass
class NetworkCost:
    layers: list[LayerCost]
    seconds: float  # wall time to cost the design (solving and cache)
    solved: int  # layers solved now (cache misses)

    @property
    def luts(self) -> float:
        return float(sum(c.luts for c in self.layers))

    @property
    def adder_depth(self) -> float:
        return float(sum(c.depth for c in self.layers))

    @property
    def latency_cycles(self) -> int:
        return int(sum(c.cycles for c in self.layers))

    def metrics(self) -> dict[str, float]:
        return {"luts": self.luts, "adder_depth": self.adder_depth, "latency_cycles": float(self.latency_cycles)}


def kif_of(fmt: Fixed) -> tuple[int, int, int]:
    """(sign bit, integer bits without the sign, fraction bits), as da4ml and hls4ml count them."""
    k = int(fmt.signed)
    return k, fmt.width - fmt.frac - k, fmt.frac


def show(fmt: Fixed | None) -> str:
    """``fixed<8,4>`` / ``ufixed<7,3>``: width and integer bits, as hls4ml writes them."""
    if fmt is None:
        return "float"
    return f"{'' if fmt.signed else 'u'}fixed<{fmt.width},{fmt.width - fmt.frac}>"


def _unsigned(fmt: Fixed) -> Fixed:
    """The same values of ``fmt`` that are >= 0: one bit fewer, unsigned."""
    return fmt if not fmt.signed else Fixed(max(fmt.width - 1, 0), fmt.frac, False)


def _is_relu(graph: Graph, node) -> bool:
    if node.op == "call_module":
        return float_type(graph.gm.get_submodule(node.target)) is nn.ReLU
    return node.op == "call_function" and getattr(node.target, "__name__", "") == "relu"


def relu_fed(graph: Graph, node) -> bool:
    """True when ``node``'s one input is a ReLU's output (values >= 0): a signed input format then holds the
    values of the unsigned format with one bit fewer. The metrics, the widths report and exports share this."""
    inputs = node.all_input_nodes
    return len(inputs) == 1 and _is_relu(graph, inputs[0])


def _fmts(graph: Graph, node) -> dict[str, Fixed]:
    return (formats(graph.gm.get_submodule(node.target)) or {}) if node.op == "call_module" else {}


def _kernel_module(graph: Graph, node) -> nn.Module | None:
    if node.op != "call_module":
        return None
    m = graph.gm.get_submodule(node.target)
    return m if issubclass(float_type(m), KERNELS) else None


def _relu_format(graph: Graph, node) -> Fixed | None:
    return _fmts(graph, node).get("data_in") if _is_relu(graph, node) else None


def problems(graph: Graph) -> list[Problem]:
    """The layers to solve, in graph order; NotDefined names a layer that is not fully quantized."""
    out = []
    for node in graph.gm.graph.nodes:
        module = _kernel_module(graph, node)
        if module is None:
            continue
        f = formats(module) or {}
        missing = [p for p in ("data_in", "weight") if p not in f]
        if module.bias is not None and "bias" not in f:
            missing.append("bias")
        if missing:
            raise NotDefined(f"layer {node.name!r} is not quantized ({', '.join(missing)} in float): the luts "
                             "metric costs fixed-point layers only; quantize every Linear and Conv2d")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise NotDefined(f"layer {node.name!r} is a grouped Conv2d: the luts metric costs dense kernels")
        producer = node.all_input_nodes[0] if len(node.all_input_nodes) == 1 else None
        fmt = _unsigned(f["data_in"]) if relu_fed(graph, node) else f["data_in"]
        came = _relu_format(graph, producer) if producer is not None else None
        users = list(node.users)
        after = users[0] if len(users) == 1 else None
        relu_after = _relu_format(graph, after) if after is not None else None
        consumer = None
        if after is not None and relu_after is None and _kernel_module(graph, after) is not None:
            consumer = _fmts(graph, after).get("data_in")
        out.append(Problem(node.name, float_type(module).__name__.lower(), module, fmt, f["weight"], f.get("bias"),
                           came, relu_after, consumer))
    return out


def _check_width(p: Problem) -> None:
    w = p.weight_fmt
    bound = (2.0 ** sum(kif_of(p.input_fmt)[1:])) * max(abs(w.qmin), w.qmax) * p.n_in
    bits = math.ceil(math.log2(bound + 1)) + 1 if bound > 0 else 1
    if bits > EXACT_BITS:
        raise BitsmithError(f"layer {p.name!r}: its exact sums need about {bits} bits, and the solver computes "
                            f"exactly up to {EXACT_BITS}; narrow its input or weight format")


def _requant(cache: Cache, kif: np.ndarray, to: Fixed, relu: bool) -> tuple[float, float]:
    """(cost, depth) of rounding values of formats ``kif`` into ``to``; cached like the kernels."""
    if len(kif) == 0:
        return 0.0, 0.0
    k = kif_of(to)
    key = digest("requant", _da4ml.NAME, _da4ml.version(), np.asarray(kif, dtype=np.int64), k, relu)
    hit = cache.get(key)
    if hit is None:
        hit = _da4ml.solve_requant(np.asarray(kif, dtype=np.int64), k, relu)
        cache.put(key, hit)
    return hit["cost"], hit["depth"]


_caches: dict[Path | None, Cache] = {}


def cache_for(settings: CostSettings) -> Cache:
    """One cache object per directory per process, so its in-memory layer survives across trials."""
    if not settings.cache:
        return Cache(None)
    c = _caches.get(settings.cache_dir)
    if c is None:
        c = _caches[settings.cache_dir] = Cache(settings.cache_dir)
    return c


def _design_key(probs: list[Problem], keys: list[str], settings: CostSettings) -> str:
    """A design's digest: its layers' keys and everything the requantisation and cycles depend on."""
    return digest("design", keys, [[p.name, p.kind, show(p.input_fmt), show(p.weight_fmt), show(p.producer),
                                    show(p.relu_after), show(p.consumer)] for p in probs],
                  settings.adder_levels_per_cycle)


def network_cost(graph: Graph, settings: CostSettings | None = None) -> NetworkCost:
    """Every Linear and Conv2d layer of ``graph`` costed; NotDefined when one is not quantized.

    A design seen before is one lookup (its layers' keys are remembered per weight tensor); a new one reads
    each layer from the cache or solves it in the solver processes.
    """
    settings = settings or CostSettings()
    _da4ml.require()
    t0 = time.perf_counter()
    probs = problems(graph)
    for p in probs:
        _check_width(p)
    cache, options = cache_for(settings), settings.options()
    keys = [p.key(options) for p in probs]
    design = _design_key(probs, keys, settings)
    hit = cache.get(design)
    try:
        if hit is not None and len(hit["layers"]) == len(probs):
            layers = [LayerCost(p.name, p.kind, tuple(r["shape"]), p.input_fmt, p.weight_fmt, float(r["nonzero"]),
                                float(r["kernel"]), float(r["requant"]), float(r["depth"]), int(r["cycles"]), True)
                      for p, r in zip(probs, hit["layers"])]
            return NetworkCost(layers, time.perf_counter() - t0, 0)
    except (KeyError, TypeError, ValueError):
        pass  # an entry of another layout: cost the design again
    results: list[dict[str, Any] | None] = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    solved = run_all("solve_cmvm", [(f"layer {probs[i].name!r}", (probs[i].kernel, probs[i].kif, probs[i].bias,
                                                                      options)) for i in todo],
                     settings.timeout_s, settings.workers)
    for i, r in zip(todo, solved):
        cache.put(keys[i], r)
        results[i] = r
    layers = []
    for i, (p, r) in enumerate(zip(probs, results)):
        requant, depth = 0.0, float(r["depth"])
        if p.producer is not None:  # rounding a ReLU's values into this layer's input format
            c, d = _requant(cache, np.tile(kif_of(p.producer), (p.n_in, 1)), p.input_fmt, False)
            requant, depth = requant + c, depth + d
        to = p.relu_after if p.relu_after is not None else p.consumer
        if to is not None:  # rounding the exact sums into what reads them
            c, d = _requant(cache, np.asarray(r["out_kif"]), to, p.relu_after is not None)
            requant, depth = requant + c, depth + d
        nz = float(np.count_nonzero(p.kernel)) / p.kernel.size if p.kernel.size else 0.0
        cycles = max(1, math.ceil(depth / settings.adder_levels_per_cycle))
        layers.append(LayerCost(p.name, p.kind, p.kernel.shape, p.input_fmt, p.weight_fmt, nz, float(r["cost"]),
                                requant, depth, cycles, i not in todo))
    cache.put(design, {"layers": [{"shape": list(c.shape), "nonzero": c.nonzero, "kernel": c.kernel,
                                   "requant": c.requant, "depth": c.depth, "cycles": c.cycles} for c in layers]})
    return NetworkCost(layers, time.perf_counter() - t0, len(todo))


def layer_rows(cost: NetworkCost) -> list[dict[str, Any]]:
    """The per-layer table, as plain values (for JSON, and for the printed table)."""
    return [{"layer": c.name, "kind": c.kind, "inputs": c.shape[0], "outputs": c.shape[1],
             "input": show(c.input_fmt), "weight": show(c.weight_fmt), "nonzero": round(c.nonzero, 4),
             "kernel_luts": c.kernel, "requant_luts": c.requant, "luts": c.luts, "adder_depth": c.depth,
             "cycles": c.cycles} for c in cost.layers]
