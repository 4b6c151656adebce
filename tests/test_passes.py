import re
import copy

import pytest
import torch

from bitsmith.data import get_dataset
from bitsmith.errors import BitsmithError
from bitsmith.passes import apply_passes
from bitsmith.passes.analysis import count_bits, count_bops
from bitsmith.passes.channels import channel_multiply_pass
from bitsmith.passes.quantize import quant_table, quantize_pass
from bitsmith.quant import QLinear, QReLU
from tests.helpers import assert_unchanged, graph_of, integer, snapshot

NA = {"config": {"name": None}}


def widths(g):
    return [(m.in_features, m.out_features) for m in g.gm.modules() if isinstance(m, torch.nn.Linear)]


# ---- purity -----------------------------------------------------------------------------------

@pytest.mark.parametrize("pass_,config", [
    (quantize_pass, {"by": "type", "default": NA, "linear": integer(4), "relu": integer(4, relu=True)}),
    (channel_multiply_pass, {"by": "name", "default": NA,
                             "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}},
                             "seq_blocks_5": {"config": {"name": "input_only", "channel_multiplier": 2}}}),
])
def test_passes_never_mutate_graph_model_or_config(pass_, config):
    g = graph_of("jsc-toy", train_steps=3)
    snap, cfg_before = snapshot(g), copy.deepcopy(config)
    x = torch.randn(32, 16)
    out_before = g(x)
    new, _ = pass_(g, config)
    assert new is not g and new.gm is not g.gm
    # Use the result hard: evaluate, then train a clone of it.
    new(x)
    trained = new.clone()
    trained.gm.train()
    opt = torch.optim.SGD(trained.gm.parameters(), lr=0.5)
    trained.gm(x).sum().backward()
    opt.step()
    assert_unchanged(g, snap)
    assert config == cfg_before
    assert torch.equal(g(x), out_before)


def test_many_configs_on_one_base_graph_do_not_interfere():
    g = graph_of("jsc-tiny")
    x = torch.randn(16, 16)
    outs = {}
    for w in (2, 4, 8):
        new, _ = quantize_pass(g, {"by": "type", "default": NA, "linear": integer(w)})
        outs[w] = new(x)
    again, _ = quantize_pass(g, {"by": "type", "default": NA, "linear": integer(2)})
    assert torch.equal(again(x), outs[2]) and not torch.equal(outs[2], outs[8])


# ---- quantize ---------------------------------------------------------------------------------

def test_quantize_by_type():
    g, info = quantize_pass(graph_of("jsc-toy"), {"by": "type", "default": NA, "linear": integer(8),
                                                  "relu": integer(6, relu=True)})
    mods = dict(g.gm.named_modules())
    assert isinstance(mods["seq_blocks.2"], QLinear) and isinstance(mods["seq_blocks.1"], QReLU)
    assert type(mods["seq_blocks.0"]) is torch.nn.BatchNorm1d
    assert info["quantized"]["seq_blocks_2"] == {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4,
                                                 "weight_width": 8, "weight_frac_width": 4, "bias_width": 8,
                                                 "bias_frac_width": 4}  # "NA" fraction = width // 2
    assert g.nodes["seq_blocks_2"].quant["weight_width"] == 8
    rows = {r["node"]: r for r in quant_table(g)}
    assert rows["seq_blocks_0"]["format"] == "float" and rows["seq_blocks_1"]["data_in_width"] == 6


def test_quantize_by_name_and_regex_with_default():
    cfg = {"by": "name", "default": integer(8), "seq_blocks_5": integer(3), "seq_blocks_8": NA}
    g, info = quantize_pass(graph_of("jsc-toy"), cfg)
    assert info["quantized"]["seq_blocks_5"]["weight_width"] == 3
    assert info["quantized"]["seq_blocks_2"]["weight_width"] == 8  # default
    assert "seq_blocks_8" not in info["quantized"]  # "NA" name leaves it alone
    g, info = quantize_pass(graph_of("jsc-toy"), {"by": "regex_name", "default": NA,
                                                  "seq_blocks_[25]": integer(5), "seq_blocks_.*": integer(7)})
    assert info["quantized"]["seq_blocks_2"]["weight_width"] == 5  # first match wins
    assert info["quantized"]["seq_blocks_8"]["weight_width"] == 7
    assert "seq_blocks_0" not in info["quantized"]  # a pattern reaches only quantizable layers


def test_quantized_bits_bops_and_density():
    g, _ = quantize_pass(graph_of("jsc-tiny"), {"by": "type", "default": NA, "linear": integer(4)})
    _, bits = count_bits(g, {"compare_to": 32})
    assert bits["weight_bits"] == 80 * 4 and bits["bias_bits"] == 5 * 4
    params = 80 + 5 + 32  # linear weight, bias, BatchNorm affine (float)
    assert bits["average_bitwidth"] == pytest.approx((85 * 4 + 32 * 32) / params)
    assert bits["memory_density"] == pytest.approx(32 / bits["average_bitwidth"])
    assert bits["model_size"] == (85 * 4 + 32 * 32) / 8
    assert count_bops(g)[1]["bops"] == 80 * 4 * 3  # a ReLU feeds the Linear: its 4-bit signed input counts 3 bits
    assert bits["nodes"]["seq_blocks_2"]["activation_bits"] == 16 * 3


@pytest.mark.parametrize("width,counted", [(4, 3), (2, 1), (1, 1)])
def test_an_input_a_relu_produces_counts_one_bit_fewer(width, counted):
    """Values >= 0 in a signed w-bit format are those of the unsigned (w-1)-bit one (not below 1 bit)."""
    from bitsmith.graph import trace
    from bitsmith.passes.analysis import analyze

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    g, _ = quantize_pass(trace(model, (4,)), {"by": "type", "linear": integer(width),
                                              "relu": integer(width, relu=True)})
    a = analyze(g)
    first, relu, fed = (a["nodes"][n] for n in ("_0", "_1", "_2"))
    assert (first["data_in_width"], first["bops"], first["activation_bits"]) == (width, 12 * width * width, 4 * width)
    assert (relu["data_in_width"], relu["activation_bits"]) == (width, 3 * width)  # already unsigned: as it is
    assert (fed["data_in_width"], fed["bops"], fed["activation_bits"]) == (counted, 6 * width * counted, 3 * counted)
    assert a["totals"]["average_activation_bitwidth"] == (7 * width + 3 * counted) / 10


@pytest.mark.parametrize("cfg,message", [
    ({"by": "type", "batchnorm1d": integer(8)}, "BatchNorm1d, which cannot be quantized"),
    ({"by": "name", "seq_blocks_0": integer(8)}, "BatchNorm1d, which cannot be quantized"),
    ({"by": "type", "linear": integer(0)}, "data_in_width = 0 in the config: expected a value >= 1"),
    ({"by": "type", "linear": integer(33)}, "expected a value <= 32"),
    ({"by": "type", "linear": {"config": {"name": "integer", "data_in_width": 8}}}, "on a Linear needs weight_width"),
    ({"by": "type", "linear": {"config": {"name": "minifloat"}}}, "name = 'minifloat' in the config: expected one of 'integer'"),
    ({"by": "type", "linear": {"config": {"name": "integer", "weight_width": "8"}}}, "expected an integer"),
    ({"by": "type", "linear": {"config": {**integer(8)["config"], "weight_widht": 3}}}, "did you mean 'weight_width'"),
    ({"by": "kind"}, "by = 'kind'"),
    ({"bye": "type"}, "did you mean 'by'"),
    ({"by": "regex_name", "seq_blocks_(": integer(8)}, "not a valid regular expression"),
])
def test_quantize_config_errors(cfg, message):
    with pytest.raises(BitsmithError, match=message.replace("(", r"\(").replace(")", r"\)")):
        quantize_pass(graph_of("jsc-toy"), cfg)


@pytest.mark.parametrize("cfg,message", [
    ({"by": "name", "seq_blocks2": integer(8)}, r"\[passes.quantize.seq_blocks2\] matches no node .* did you mean 'seq_blocks_2'"),
    ({"by": "type", "lineer": integer(8)}, r"matches no layer type .* did you mean 'linear'"),
    ({"by": "name", "linear": integer(8)}, r"'linear' is a layer type: tables keyed by type need by = \"type\""),
    ({"by": "type", "seq_blocks_2": integer(8)}, r"'seq_blocks_2' is a node name: tables keyed by node need by = \"name\""),
])
def test_unmatched_keys_are_ignored_with_the_likely_fix(cfg, message):
    """MASE ignores a table that matches nothing; so does bitsmith, and says why and what to do."""
    g = graph_of("jsc-tiny")
    new, info = quantize_pass(g, {"default": NA, **cfg})
    assert len(info["ignored"]) == 1 and re.search(message, info["ignored"][0])
    assert not info["quantized"]  # nothing else matched: the model is unchanged


def test_fraction_wider_than_width_is_a_valid_format():
    """width 4, fraction 6 is ap_fixed<4,-2>: values k/64 for k in [-8, 7]."""
    g, info = quantize_pass(graph_of("jsc-tiny"), {"by": "type", "linear": integer(4, 6)})
    w = g.gm.get_submodule("seq_blocks.2")._q_param("weight", g.gm.get_submodule("seq_blocks.2").qconfig.weight)
    assert info["quantized"]["seq_blocks_2"]["weight_frac_width"] == 6
    assert w.abs().max() <= 8 / 64 and torch.equal(w * 64, (w * 64).round())


def test_unknown_pass_lists_known():
    with pytest.raises(BitsmithError, match=r"unknown pass 'quantise'.*did you mean 'quantize'"):
        apply_passes(graph_of("jsc-tiny"), [("quantise", {})])


# ---- channel multiplier -----------------------------------------------------------------------

THREE = {"by": "name", "default": NA,
         "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}},
         "seq_blocks_3": {"config": {"name": "inplace", "channel_multiplier": 2}},
         "seq_blocks_4": {"config": {"name": "both", "channel_multiplier_input": 2, "channel_multiplier_output": 4}},
         "seq_blocks_6": {"config": {"name": "input_only", "channel_multiplier": 4}}}


def test_16_32_64_5_from_per_layer_factors():
    g, info = channel_multiply_pass(graph_of("jsc-three-linear-layers"), THREE)
    assert widths(g) == [(16, 32), (32, 64), (64, 5)]
    assert g.nodes["seq_blocks_5"].out_shape == (64,)  # shapes re-propagated
    assert info["widths"]["seq_blocks_4"] == {"in": 32, "out": 64, "in_before": 16, "out_before": 16}


def test_both_with_one_factor_and_batchnorm_follows():
    cfg = {"by": "name", "default": NA,
           "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}},
           "seq_blocks_5": {"config": {"name": "both", "channel_multiplier": 2}},
           "seq_blocks_8": {"config": {"name": "input_only", "channel_multiplier": 2}}}
    g, _ = channel_multiply_pass(graph_of("jsc-toy"), cfg)
    assert widths(g) == [(16, 16), (16, 16), (16, 5)]
    assert [m.num_features for m in g.gm.modules() if isinstance(m, torch.nn.BatchNorm1d)] == [16, 16, 16, 5]


@pytest.mark.parametrize("name", ["jsc-toy", "jsc-three-linear-layers"])
def test_preserve_keeps_the_function(name):
    g = graph_of(name, train_steps=5)
    cfg = THREE if name == "jsc-three-linear-layers" else {
        "by": "name", "default": NA,
        "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 3}},
        "seq_blocks_5": {"config": {"name": "both", "channel_multiplier_input": 3, "channel_multiplier_output": 2}},
        "seq_blocks_8": {"config": {"name": "input_only", "channel_multiplier": 2}}}
    wide, _ = channel_multiply_pass(g, {**cfg, "init": "preserve"})
    x = torch.randn(256, 16) * 2
    with torch.no_grad():
        assert (wide(x) - g(x)).abs().max() < 1e-5
        rand, _ = channel_multiply_pass(g, {**cfg, "init": "random"})
        assert (rand(x) - g(x)).abs().max() > 1e-2


def test_preserve_on_a_cnn():
    g = graph_of("digits-cnn", (1, 8, 8), 10, train_steps=5)
    cfg = {"by": "name", "default": NA,
           "seq_blocks_0": {"config": {"name": "output_only", "channel_multiplier": 2}},
           "seq_blocks_4": {"config": {"name": "both", "channel_multiplier": 2}},
           "seq_blocks_9": {"config": {"name": "input_only", "channel_multiplier": 2}}}
    wide, _ = channel_multiply_pass(g, cfg)
    assert wide.nodes["seq_blocks_6"].out_shape == (64, 4, 4)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        assert (wide(x) - g(x)).abs().max() < 1e-5


def test_preserve_keeps_the_function_on_trained_digits():
    data = get_dataset("digits")
    from bitsmith.train import evaluate, fit

    g = graph_of("digits-mlp", (64,), 10)
    fit(g.gm, data, max_epochs=3, batch_size=64, learning_rate=3e-3)
    g.gm.eval()
    cfg = {"by": "name", "default": NA,
           "seq_blocks_0": {"config": {"name": "output_only", "channel_multiplier": 2}},
           "seq_blocks_2": {"config": {"name": "both", "channel_multiplier": 2}},
           "seq_blocks_4": {"config": {"name": "input_only", "channel_multiplier": 2}}}
    wide, _ = channel_multiply_pass(g, cfg)
    with torch.no_grad():
        assert (wide(data.test.x) - g(data.test.x)).abs().max() < 1e-5
    assert evaluate(wide.gm, data.test)["accuracy"] == evaluate(g.gm, data.test)["accuracy"]


def test_widen_then_quantize_keeps_formats():
    g, _ = quantize_pass(graph_of("jsc-three-linear-layers"), {"by": "type", "default": NA, "linear": integer(6)})
    wide, _ = channel_multiply_pass(g, THREE)
    assert widths(wide) == [(16, 32), (32, 64), (64, 5)]
    assert all(isinstance(m, QLinear) for m in wide.gm.modules() if isinstance(m, torch.nn.Linear))
    assert wide.nodes["seq_blocks_4"].quant["weight_width"] == 6


def test_inconsistent_widths_name_both_nodes_and_the_fix():
    cfg = {"by": "name", "default": NA,
           "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}}}
    with pytest.raises(BitsmithError) as e:
        channel_multiply_pass(graph_of("jsc-three-linear-layers"), cfg)
    msg = str(e.value)
    assert "'seq_blocks_4' expects 16 input features but its producer 'seq_blocks_2' gives 32" in msg
    assert "channel_multiplier_input = 2" in msg and 'mode = "auto"' in msg


def test_auto_mode_follows_the_producer_and_preserves():
    g = graph_of("jsc-three-linear-layers", train_steps=3)
    cfg = {"by": "name", "mode": "auto", "default": NA,
           "seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 2}}}
    wide, _ = channel_multiply_pass(g, cfg)
    assert widths(wide) == [(16, 32), (32, 16), (16, 5)]
    x = torch.randn(64, 16)
    with torch.no_grad():
        assert (wide(x) - g(x)).abs().max() < 1e-5


@pytest.mark.parametrize("cfg,message", [
    ({"seq_blocks_6": {"config": {"name": "output_only", "channel_multiplier": 2}}}, "model's output would have 10"),
    ({"seq_blocks_2": {"config": {"name": "input_only", "channel_multiplier": 2}}}, "producer 'x' gives 16"),
    ({"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 1.5}}}, "= 1.5 .*expected an integer"),
    ({"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 0}}}, "expected a value >= 1"),
    ({"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": True}}}, "expected an integer"),
    ({"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 4096}}}, "expected a value <= 1024"),
    ({"seq_blocks_2": {"config": {"name": "output_only"}}}, "needs channel_multiplier"),
    ({"seq_blocks_2": {"config": {"name": "sideways", "channel_multiplier": 2}}}, "expected one of 'output_only'"),
    ({"seq_blocks_3": {"config": {"name": "output_only", "channel_multiplier": 2}}}, "ReLU, which has no width"),
    ({"seq_blocks_2": {"config": {"name": "output_only", "channel_multiplier": 1024}},
      "seq_blocks_4": {"config": {"name": "both", "channel_multiplier": 1024}}}, "more than bitsmith builds"),
    ({"init": "copy"}, "init = 'copy'"),
])
def test_channel_config_errors(cfg, message):
    with pytest.raises(BitsmithError, match=message):
        channel_multiply_pass(graph_of("jsc-three-linear-layers"), {"by": "name", "default": NA, **cfg})


def test_relu_inplace_entry_changes_nothing():
    g = graph_of("jsc-three-linear-layers")
    new, _ = channel_multiply_pass(g, {"by": "name", "default": NA,
                                       "seq_blocks_3": {"config": {"name": "inplace", "channel_multiplier": 4}}})
    assert widths(new) == widths(g)


def test_mase_keys_bitsmith_does_not_implement_are_accepted_and_reported():
    """data_out_* and floor appear in MASE's fixed-point flows: the file loads, and the report says they are ignored."""
    cfg = integer(8)
    cfg["config"] |= {"data_out_width": 8, "data_out_frac_width": 4, "floor": False}
    g, info = quantize_pass(graph_of("jsc-tiny"), {"by": "type", "linear": cfg})
    assert "seq_blocks_2" in info["quantized"]
    assert len(info["ignored"]) == 1 and "data_out_width, data_out_frac_width: " in info["ignored"][0]
