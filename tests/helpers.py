"""Small builders shared by the pass and search tests."""

from __future__ import annotations

import copy

import torch

from bitsmith.graph import Graph, trace
from bitsmith.models import build_model


def graph_of(name: str, in_shape=(16,), n_classes=5, seed=0, train_steps=0) -> Graph:
    """A traced model in eval mode; ``train_steps`` > 0 gives BatchNorm real statistics."""
    torch.manual_seed(seed)
    model = build_model(name, in_shape, n_classes)
    if train_steps:
        model.train()
        with torch.no_grad():
            for _ in range(train_steps):
                model(torch.randn(64, *in_shape) * 2 + 0.5)
    return trace(model.eval(), in_shape)


def integer(w=8, f=None, relu=False):
    cfg = {"name": "integer", "data_in_width": w, "data_in_frac_width": f}
    if not relu:
        cfg |= {"weight_width": w, "weight_frac_width": f, "bias_width": w, "bias_frac_width": f}
    return {"config": cfg}


def snapshot(graph: Graph):
    """Everything a pass must leave alone."""
    return (str(graph.gm.graph), copy.deepcopy(graph.nodes),
            {k: v.detach().clone() for k, v in graph.gm.state_dict().items()},
            {n: id(m) for n, m in graph.gm.named_modules()})


def assert_unchanged(graph: Graph, snap) -> None:
    code, nodes, state, modules = snap
    assert str(graph.gm.graph) == code
    assert graph.nodes == nodes
    now = graph.gm.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)
    assert {n: id(m) for n, m in graph.gm.named_modules()} == modules
