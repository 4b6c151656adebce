"""The luts metric: what it counts, its cache, its solver processes and time cap, and where da4ml may be imported."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bitsmith.cost import _da4ml, network
from bitsmith.cost.cache import Cache, digest
from bitsmith.cost.network import CostSettings, NotDefined, network_cost, problems
from bitsmith.errors import BitsmithError, CandidateError
from bitsmith.passes import get_pass, parse_pass
from bitsmith.quant import Fixed, quantize
from tests.helpers import graph_of, integer

SRC = Path(__file__).resolve().parents[1] / "src" / "bitsmith"


def quantized(model="digits-mlp", in_shape=(64,), classes=10, w=6, f=3, relu_w=6, seed=0, relu_f=None, **by_name):
    g = graph_of(model, in_shape, classes, seed=seed, train_steps=2)
    cfg = {"by": "type", "default": {"config": {"name": None}}, "linear": integer(w, f),
           "relu": integer(relu_w, relu_w // 2 if relu_f is None else relu_f, relu=True)}
    if by_name:
        cfg = {"by": "name", "default": {"config": {"name": None}}, **by_name}
    graph, _ = get_pass("quantize").fn(g, parse_pass("quantize", cfg))
    return graph


def settings(tmp_path=None, **kw) -> CostSettings:
    return CostSettings(cache_dir=None if tmp_path is None else tmp_path / "cache", **kw)


@pytest.fixture(autouse=True)
def fresh_caches():
    network._caches.clear()  # each test starts with an empty in-memory layer
    yield
    network._caches.clear()


def test_kernel_cost_is_da4mls_cost_of_the_rounded_integer_layer():
    """Each layer's kernel figure is the solver's cost of x @ W + b with W, b as bitsmith rounds them and x in
    the layer's input format, built here independently from the torch modules."""
    graph = quantized()
    cost = network_cost(graph, settings())
    linears = [m for m in graph.gm.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.name for c in cost.layers] == ["seq_blocks_0", "seq_blocks_2", "seq_blocks_4"]
    for i, (c, m) in enumerate(zip(cost.layers, linears)):
        fmt = Fixed(6, 3)
        w = quantize(m.weight.detach().double(), fmt).numpy().T
        b = quantize(m.bias.detach().double(), fmt).numpy()
        # The first layer reads the raw input (signed); the others read a ReLU's output: unsigned, one bit fewer.
        k, i_bits = (1, 2) if i == 0 else (0, 2)  # same magnitude: the unsigned format drops only the sign
        kif = np.tile([k, i_bits, 3], (w.shape[0], 1))
        assert c.kernel == _da4ml.solve_cmvm(w, kif, b, _da4ml.OPTIONS)["cost"]
        assert c.kernel > 0
    assert cost.luts == sum(c.kernel + c.requant for c in cost.layers)
    assert cost.adder_depth == sum(c.depth for c in cost.layers)


def test_zero_weights_cost_nothing_and_fewer_bits_cost_less():
    wide, narrow = quantized(w=8, f=4), quantized(w=4, f=2)
    a, b = network_cost(wide, settings()), network_cost(narrow, settings())
    assert b.luts < a.luts
    zero = quantized()
    with torch.no_grad():
        zero.gm.get_submodule("seq_blocks.2").weight.zero_()
        zero.gm.get_submodule("seq_blocks.2").bias.zero_()
    layer = network_cost(zero, settings()).layers[1]
    assert layer.kernel == 0 and layer.nonzero == 0


def test_input_after_a_relu_is_unsigned_and_the_first_input_signed():
    ps = problems(quantized())
    assert ps[0].input_fmt == Fixed(6, 3, True)
    assert ps[1].input_fmt == Fixed(5, 3, False) and (ps[1].kif[:, 0] == 0).all()


def test_requant_counts_rounding_between_differing_formats_only():
    """A ReLU whose format is the next layer's (unsigned) input format hands its values over for free; a wider
    one needs them rounded and saturated again."""
    same = network_cost(quantized(relu_w=5, relu_f=3), settings())  # u<5,2>: the next layer's input exactly
    wide = network_cost(quantized(relu_w=8, relu_f=3), settings())  # u<8,5>: saturates into u<5,2>
    cache = network._caches[None]
    to = Fixed(5, 3, False)
    assert network._requant(cache, np.tile(network.kif_of(to), (4, 1)), to, False) == (0.0, 0.0)
    assert network._requant(cache, np.tile(network.kif_of(Fixed(8, 3, False)), (4, 1)), to, False)[0] > 0
    # Layer 2's requant: rounding layer 1's sums into the ReLU (same in both) plus the handover.
    assert same.layers[1].requant < wide.layers[1].requant
    assert same.layers[1].kernel == wide.layers[1].kernel


def test_latency_cycles_follow_the_stated_rule():
    cost = network_cost(quantized(), settings(adder_levels_per_cycle=2))
    assert [c.cycles for c in cost.layers] == [max(1, -(-int(c.depth) // 2)) for c in cost.layers]
    assert cost.latency_cycles == sum(c.cycles for c in cost.layers)


def test_a_float_layer_leaves_the_metric_undefined_and_the_pass_says_why():
    g = graph_of("digits-mlp", (64,), 10)
    graph, _ = get_pass("quantize").fn(g, parse_pass("quantize", {
        "by": "name", "default": {"config": {"name": None}}, "seq_blocks_0": integer(6, 3)}))
    with pytest.raises(NotDefined, match=r"layer 'seq_blocks_2' is not quantized") as e:
        network_cost(graph, settings())
    assert isinstance(e.value, CandidateError)  # a search prunes such a candidate, with this reason
    _, info = get_pass("luts").fn(graph, {"cache": False})
    assert "seq_blocks_2" in info["not_defined"]


def test_sums_wider_than_the_solver_computes_exactly_are_refused():
    graph = quantized(w=30, f=10)
    with pytest.raises(BitsmithError, match=r"exact sums need about \d+ bits.*exactly up to 53"):
        network_cost(graph, settings())


def test_conv2d_is_costed_per_kernel_instance():
    g = graph_of("digits-cnn", (1, 8, 8), 10)
    cfg = {"by": "type", "default": {"config": {"name": None}}, "conv2d": integer(6, 3), "linear": integer(6, 3)}
    graph, _ = get_pass("quantize").fn(g, parse_pass("quantize", cfg))
    cost = network_cost(graph, settings())
    convs = [m for m in graph.gm.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kind for c in cost.layers[:len(convs)]] == ["conv2d"] * len(convs)
    first = cost.layers[0]
    assert first.shape == (convs[0].in_channels * 9, convs[0].out_channels) and first.kernel > 0


def test_the_disk_cache_is_shared_across_processes_and_survives_damage(tmp_path):
    graph = quantized()
    first = network_cost(graph, settings(tmp_path))
    assert first.solved == 3
    again = network_cost(graph, settings(tmp_path))
    assert again.solved == 0 and again.luts == first.luts and all(c.cached for c in again.layers)
    network._caches.clear()  # as a new process would: only the files are left
    files = sorted((tmp_path / "cache").rglob("*.json"))
    assert files and network_cost(graph, settings(tmp_path)).solved == 0
    network._caches.clear()
    for f in files:
        f.write_text('{"torn')
    third = network_cost(graph, settings(tmp_path))
    assert third.solved == 3 and third.luts == first.luts
    assert all(json.loads(f.read_text())["key"] == f.stem for f in files)  # rewritten whole


def test_the_digest_covers_values_shape_and_options():
    a = np.zeros((2, 3))
    assert digest(a) != digest(a.reshape(3, 2)) != digest(a.astype(np.float32))
    assert digest(a, {"hard_dc": 2}) != digest(a, {"hard_dc": 1})
    assert digest(np.array([0.0])) != digest(np.array([1.0]))
    c = Cache(None)
    c.put("k", {"cost": 1.0})
    assert c.get("k")["cost"] == 1.0 and c.get("other") is None


def test_a_solve_past_its_time_cap_stops_with_the_layer_named_and_the_next_solve_works():
    graph = quantized(w=16, f=8)
    with pytest.raises(BitsmithError, match=r"layer 'seq_blocks_0': the solver did not finish within 0\.001 s; "
                                            r"raise timeout_s"):
        network_cost(graph, settings(timeout_s=0.001))
    assert network_cost(quantized(w=3, f=1), settings()).luts > 0  # a fresh solver process took over


def test_solves_in_two_processes_give_the_same_figures():
    graph = quantized(seed=3)
    one = network_cost(graph, settings())
    network._caches.clear()
    two = network_cost(graph, settings(workers=2))
    assert [c.kernel for c in one.layers] == [c.kernel for c in two.layers]


def test_without_da4ml_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setattr(_da4ml, "version", lambda: None)
    with pytest.raises(BitsmithError, match=r"^the luts metric needs da4ml: pip install 'bitsmith\[da\]'$"):
        network_cost(quantized(), settings())
    from bitsmith.search.runners import RUNNERS

    with pytest.raises(BitsmithError, match=r"pip install 'bitsmith\[da\]'"):
        RUNNERS["luts"](RUNNERS["luts"].Settings())


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_adapter_imports_da4ml():
    """da4ml is LGPL and optional: one module wraps it, so the core never imports it and a new solver is a new
    adapter."""
    importers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                       if {"da4ml", "alkaid"} & _imports(p))
    assert importers == ["cost/_da4ml.py"]


def test_the_adapter_was_checked_on_the_installed_solver():
    assert _da4ml.version().rsplit(".", 1)[0] in _da4ml.TESTED
