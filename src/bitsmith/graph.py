"""A traced model plus per-node metadata: the object every pass takes and returns.

Metadata (shapes, parameter counts, quantization formats) lives on ``Graph.nodes``,
never in ``fx.Node.meta``: passes share fx nodes between their input and output
graphs, so writing there would mutate the caller's graph.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import fx, nn

from bitsmith.errors import BitsmithError

SHAPE_BATCH = 2  # BatchNorm needs more than one sample, even in eval mode on some paths


@dataclass(frozen=True)
class NodeInfo:
    """What a hardware designer needs to know about one node (shapes exclude the batch)."""

    name: str
    op: str
    target: str
    module_type: str | None
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...] | None
    params: int
    quant: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """The layer type in config spelling: ``linear``, ``relu``, ... (or the op)."""
        if self.module_type:
            return self.module_type.lower()
        if self.op == "call_function":
            return getattr(self.target, "__name__", str(self.target)).lower()
        return self.op


@dataclass
class Graph:
    """An fx GraphModule, the input shape it was traced for, and per-node metadata."""

    gm: fx.GraphModule
    in_shape: tuple[int, ...]
    nodes: dict[str, NodeInfo] = field(default_factory=dict)

    def module(self, name: str) -> nn.Module | None:
        node = self.fx_node(name)
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    def fx_node(self, name: str) -> fx.Node:
        for node in self.gm.graph.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def clone(self) -> Graph:
        """A fully independent copy (for anything that trains the graph in place)."""
        return Graph(copy.deepcopy(self.gm), self.in_shape, dict(self.nodes))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.gm(x)


def type_name(module: nn.Module) -> str:
    """The layer type; a quantized module reports the float type it stands in for."""
    return getattr(module, "float_type", type(module)).__name__


def _module_type(gm: fx.GraphModule, node: fx.Node) -> str | None:
    return type_name(gm.get_submodule(node.target)) if node.op == "call_module" else None


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and records every node's output shape in a dict."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...] | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except RuntimeError as e:
            raise ShapeError(n, e) from None
        self.shapes[n.name] = _shape(out)
        return out


class ShapeError(BitsmithError):
    def __init__(self, node: fx.Node, error: Exception):
        self.node = node
        first = str(error).strip().splitlines()[0]
        super().__init__(f"node {node.name!r} cannot run on its inputs: {first}")


def annotate(gm: fx.GraphModule, in_shape: tuple[int, ...],
             quant: dict[str, dict[str, Any] | None] | None = None) -> dict[str, NodeInfo]:
    """Shape propagation with a zero batch of ``in_shape``; returns per-node metadata."""
    rec = _ShapeRecorder(gm)
    was_training = gm.training
    gm.eval()
    device = next((t.device for t in (*gm.parameters(), *gm.buffers())), torch.device("cpu"))
    try:
        with torch.no_grad():
            rec.run(torch.zeros(SHAPE_BATCH, *in_shape, device=device))
    finally:
        gm.train(was_training)
    infos = {}
    for node in gm.graph.nodes:
        ins = tuple(rec.shapes.get(a.name) or () for a in node.all_input_nodes)
        params = 0
        mod_quant = None
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            params = sum(p.numel() for p in mod.parameters())
            mod_quant = getattr(mod, "qconfig_dict", None)
        infos[node.name] = NodeInfo(
            node.name, node.op, str(node.target) if node.op != "call_function" else node.target,
            _module_type(gm, node), ins, rec.shapes.get(node.name), params,
            (quant or {}).get(node.name, mod_quant))
    return infos


class _Tracer(fx.Tracer):
    """Keeps bitsmith's quantized modules as leaves, like the torch.nn layers they stand in for."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return hasattr(m, "float_type") or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, in_shape: tuple[int, ...]) -> Graph:
    """Trace ``model`` with torch.fx and annotate it for inputs of ``in_shape``."""
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
    except Exception as e:  # fx raises TraceError and others for dynamic control flow
        raise BitsmithError(f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}); "
                            "models need static control flow") from None
    gm.train(model.training)
    return Graph(gm, tuple(in_shape), annotate(gm, tuple(in_shape)))


def replace_modules(graph: Graph, replacements: dict[str, nn.Module]) -> fx.GraphModule:
    """A new GraphModule with some leaf modules swapped; the input is left untouched.

    Generated code, the fx graph and untouched modules are shared with the
    input (copying them is most of a search trial's cost otherwise); module
    containers on the path to each replaced leaf are copied.
    """
    gm = graph.gm
    new = object.__new__(gm.__class__)  # GraphModule.__new__ would make a class without forward
    new.__dict__ = gm.__dict__.copy()
    new._modules = dict(gm._modules)
    for target, module in replacements.items():
        *path, leaf = target.split(".")
        parent = new
        for part in path:
            child = parent._modules[part]
            clone = object.__new__(child.__class__)
            clone.__dict__ = child.__dict__.copy()
            clone._modules = dict(child._modules)
            parent._modules[part] = clone
            parent = clone
        parent._modules[leaf] = module
    return new


def with_modules(graph: Graph, replacements: dict[str, nn.Module], reshape: bool) -> Graph:
    """``graph`` with modules replaced; shapes re-propagated only when they can change."""
    gm = replace_modules(graph, replacements)
    if reshape:
        return Graph(gm, graph.in_shape, annotate(gm, graph.in_shape))
    nodes = dict(graph.nodes)
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in replacements:
            mod = replacements[node.target]
            nodes[node.name] = replace(nodes[node.name], module_type=type_name(mod),
                                       params=sum(p.numel() for p in mod.parameters()),
                                       quant=getattr(mod, "qconfig_dict", None))
    return Graph(gm, graph.in_shape, nodes)


def numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape else 0
