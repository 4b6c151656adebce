"""``[passes.fold_batchnorm]``: each BatchNorm that reads only a Linear or Conv2d is folded into it.

In eval mode ``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(var + eps)`` and
``b' = (b - mean) * g / sqrt(var + eps) + beta``: exact in real arithmetic, so a folded
layer can be quantized and costed as one kernel. A BatchNorm on the network's input
(jsc's) reads no kernel and stays as it is.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from bitsmith.graph import Graph, annotate
from bitsmith.passes.registry import NoSettings, parse_pass, register_pass
from bitsmith.quant import float_type
from bitsmith.schema import Table

KERNELS = (nn.Linear, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class NoLayerKeys(Table):
    """Per-layer tables take no keys: every foldable pair is folded."""


def _fold(kernel: nn.Module, bn: nn.Module) -> nn.Module:
    new = copy.deepcopy(kernel)
    with torch.no_grad():
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
            1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias.detach() if bn.affine else torch.zeros_like(scale)
        w = new.weight.detach() * scale.reshape(-1, *([1] * (new.weight.dim() - 1)))
        b = new.bias.detach() if new.bias is not None else torch.zeros_like(scale)
        b = (b - bn.running_mean) * scale + shift
        new.weight = nn.Parameter(w)
        new.bias = nn.Parameter(b)  # a kernel without a bias gains one: the BatchNorm's shift
    return new


def _foldable(gm: nn.Module, node) -> bool:
    """A BatchNorm with running statistics that reads only a Linear's or Conv2d's output."""
    if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), NORMS):
        return False
    prev = node.args[0] if node.args else None
    if (getattr(prev, "op", None) != "call_module" or len(prev.users) != 1
            or not issubclass(float_type(gm.get_submodule(prev.target)), KERNELS)):
        return False
    return gm.get_submodule(node.target).running_mean is not None  # without statistics nothing fixed to fold


@register_pass("fold_batchnorm", NoSettings, NoLayerKeys)
def fold_pass(graph: Graph, config: Any) -> tuple[Graph, dict[str, Any]]:
    parse_pass("fold_batchnorm", config)
    if not any(_foldable(graph.gm, node) for node in graph.gm.graph.nodes):
        return graph, {"folded": []}  # nothing to fold: no copy (a learned-width trial starts with this pass)
    gm = copy.deepcopy(graph.gm)
    folded = []
    for node in list(gm.graph.nodes):
        if not _foldable(gm, node):
            continue
        prev = node.args[0]
        bn = gm.get_submodule(node.target)
        *path, leaf = prev.target.split(".")
        parent = gm.get_submodule(".".join(path)) if path else gm
        setattr(parent, leaf, _fold(gm.get_submodule(prev.target), bn))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        gm.delete_submodule(node.target)
        folded.append([node.name, prev.name])
    gm.graph.lint()
    gm.recompile()
    return Graph(gm, graph.in_shape, annotate(gm, graph.in_shape)), {"folded": folded}
