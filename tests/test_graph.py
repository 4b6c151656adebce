import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bitsmith.errors import BitsmithError
from bitsmith.graph import trace
from bitsmith.passes import report_pass
from bitsmith.passes.analysis import analyze, count_bits, count_bops, count_flops, count_params
from tests.helpers import graph_of


def test_nodes_carry_names_types_shapes_params():
    g = graph_of("jsc-toy")
    info = g.nodes["seq_blocks_2"]
    assert (info.op, info.module_type, info.in_shapes, info.out_shape, info.params) == (
        "call_module", "Linear", ((16,),), (8,), 16 * 8 + 8)
    assert g.nodes["seq_blocks_3"].module_type == "BatchNorm1d" and g.nodes["seq_blocks_3"].params == 16
    assert g.nodes["x"].op == "placeholder" and g.nodes["x"].out_shape == (16,)
    assert g.nodes["seq_blocks_2"].quant is None


def test_cnn_shapes_come_from_propagation():
    g = graph_of("digits-cnn", (1, 8, 8), 10)
    assert g.nodes["seq_blocks_0"].out_shape == (16, 8, 8)
    assert g.nodes["seq_blocks_3"].out_shape == (16, 4, 4)
    assert g.nodes["seq_blocks_8"].out_shape == (32,)


def test_report_counts_ops_and_lists_layers():
    g = graph_of("jsc-tiny")
    _, info = report_pass(g, {})
    assert info["op_counts"] == {"placeholder": 1, "get_attr": 0, "call_function": 0, "call_method": 0,
                                 "call_module": 4, "output": 1}
    assert [(r["node"], r["type"], r["out_shape"]) for r in info["layers"]] == [
        ("seq_blocks_0", "BatchNorm1d", [16]), ("seq_blocks_1", "ReLU", [16]),
        ("seq_blocks_2", "Linear", [5]), ("seq_blocks_3", "ReLU", [5])]
    assert "call_module[target=seq_blocks.2]" in info["fx_graph"]


def test_params_match_pytorch():
    for name in ("jsc-toy", "jsc-s", "jsc-three-linear-layers"):
        g = graph_of(name)
        _, info = count_params(g)
        assert info["params"] == sum(p.numel() for p in g.gm.parameters())


@pytest.mark.parametrize("name,shape,classes", [("jsc-s", (16,), 5), ("digits-cnn", (1, 8, 8), 10)])
def test_macs_agree_with_pytorch_flop_counter(name, shape, classes):
    g = graph_of(name, shape, classes)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        g.gm(torch.zeros(1, *shape))
    _, info = count_flops(g)
    # PyTorch counts 2 FLOPs per multiply-accumulate of matmuls and convolutions.
    assert info["flops"] == 2 * info["macs"] == counter.get_total_flops()
    assert info["elementwise_ops"] > 0  # bias adds, norms and activations, counted apart


def test_float_model_bits_and_density():
    g = graph_of("jsc-tiny")
    _, info = count_bits(g, {"compare_to": 32})
    params = sum(p.numel() for p in g.gm.parameters())
    assert info["param_bits"] == 32 * params and info["model_size"] == 4 * params
    assert info["average_bitwidth"] == 32 and info["memory_density"] == 1.0
    _, bops = count_bops(g)
    assert bops["bops"] == 16 * 5 * 32 * 32


def test_analysis_passes_return_their_input():
    g = graph_of("jsc-tiny")
    for fn in (count_params, count_flops, count_bits, count_bops, report_pass):
        assert fn(g, {})[0] is g


def test_untraceable_model_is_a_clear_error():
    class Dynamic(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(BitsmithError, match="cannot trace"):
        trace(Dynamic(), (4,))


def test_totals_are_sums_of_nodes():
    a = analyze(graph_of("jsc-toy"))
    for key in ("params", "macs", "flops", "bops", "weight_bits"):
        assert a["totals"][key] == sum(row[key] for row in a["nodes"].values())
