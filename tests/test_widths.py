"""The widths report (bitsmith.passes.widths): effective bits per channel and per weight, pruned share, table."""

import io
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from rich.console import Console

from bitsmith.graph import trace
from bitsmith.passes import get_pass, parse_pass
from bitsmith.passes.widths import channel_bits, print_widths, render_widths, width_rows
from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fmt(width, frac, prefix):
    return {f"{prefix}_width": width, f"{prefix}_frac_width": frac}


def layer(x, w, b):
    return {"config": {"name": "integer", **fmt(*x, "data_in"), **fmt(*w, "weight"), **fmt(*b, "bias")}}


def model(names=("_0", "_1", "_2")):
    return torch.nn.Sequential(OrderedDict(zip(names, (torch.nn.Linear(4, 3), torch.nn.ReLU(),
                                                      torch.nn.Linear(3, 2))))).eval()


@pytest.fixture
def graph():
    """Linear(4, 3) -> ReLU -> Linear(3, 2), each Linear with its own formats, weights set by hand."""
    cfg = {"by": "name", "_0": layer((8, 4), (6, 3), (8, 4)), "_2": layer((6, 2), (4, 1), (10, 6)),
           "_1": {"config": {"name": "integer", **fmt(6, 2, "data_in")}}}
    g, _ = get_pass("quantize").fn(trace(model(), (4,)), parse_pass("quantize", cfg))
    with torch.no_grad():
        g.gm.get_submodule("_0").weight.copy_(torch.tensor([
            [0.5, -1.0, 0.25, 0.0],  # k = 4, -8, 2, 0 (grid 1/8): coarsest common grid 1/4 -> 2, -4, 1: 3 + 1 bits
            [0.0, 0.0, 0.0, 0.0],  # pruned channel: 0 bits
            [0.125, 3.875, -0.375, 2.0]]))  # k = 1, 31, -3, 16: 5 + 1 bits
        g.gm.get_submodule("_2").weight.copy_(torch.tensor([
            [0.3, -4.0, 0.0],  # rounded on the grid 1/2: k = 1, -8, 0 -> 4 + 1 bits (magnitude and sign)
            [5.0, 0.0, 1.0]]))  # 5.0 saturates to k = 7; k = 7, 0, 2 -> 3 + 1 bits
    return g


def test_every_number_of_a_hand_built_model(graph):
    first, second = width_rows(graph)
    assert first == {
        "node": "_0", "type": "Linear", "weight": {"width": 6, "frac": 3, "signed": True},
        "data_in": {"width": 8, "frac": 4, "signed": True}, "after_relu": False,
        "bias": {"width": 8, "frac": 4, "signed": True}, "weights": 12, "zero_weights": 5, "pruned": 5 / 12,
        "channels": 3, "pruned_channels": 1, "channel_bits_min": 0, "channel_bits_median": 4, "channel_bits_max": 6,
        # per weight on its own grid: 2 2 2 0 | 0 0 0 0 | 2 6 3 2
        "weight_bits_mean": 19 / 12}
    assert second == {
        "node": "_2", "type": "Linear", "weight": {"width": 4, "frac": 1, "signed": True},
        "data_in": {"width": 5, "frac": 2, "signed": False}, "after_relu": True,  # a ReLU feeds it: unsigned
        "bias": {"width": 10, "frac": 6, "signed": True}, "weights": 6, "zero_weights": 2, "pruned": 2 / 6,
        "channels": 2, "pruned_channels": 0, "channel_bits_min": 4, "channel_bits_median": 4.5,
        "channel_bits_max": 5, "weight_bits_mean": 10 / 6}  # 2 2 0 | 4 0 2


@pytest.mark.parametrize("k,channels,weights", [
    ([[0, 0], [0, 0]], [0, 0], [[0, 0], [0, 0]]),
    ([[1, -1], [-2, 6]], [2, 3], [[2, 2], [2, 3]]),  # -2, 6 on the grid twice as coarse: -1, 3
    ([[-32, 16], [24, 0]], [3, 3], [[2, 2], [3, 0]]),  # -32, 16 -> -2, 1; 24 -> 3
    ([[2**20 + 1, 0]], [22], [[22, 0]]),
])
def test_channel_and_weight_bits_of_integers(k, channels, weights):
    rows, per_weight = channel_bits(torch.tensor(k, dtype=torch.long))
    assert rows == channels and per_weight.tolist() == weights


def test_a_negative_frac_format_and_a_conv2d():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2, bias=False)).eval()
    cfg = {"by": "type", "conv2d": layer((8, 4), (4, -1), (8, 4))}  # grid 2: k in [-8, 7]
    g, _ = get_pass("quantize").fn(trace(conv, (1, 3, 3)), parse_pass("quantize", cfg))
    with torch.no_grad():
        g.gm.get_submodule("0").weight.copy_(torch.tensor([[[[2.0, 4.0], [-6.0, 0.0]]], [[[0.0, 0.0], [8.0, 0.0]]]]))
    (row,) = width_rows(g)
    assert row["type"] == "Conv2d" and row["bias"] is None and row["weights"] == 8 and row["zero_weights"] == 4
    assert (row["channel_bits_min"], row["channel_bits_max"], row["pruned_channels"]) == (2, 3, 0)  # 1 2 -3 | 4
    assert row["weight_bits_mean"] == (2 + 2 + 3 + 2) / 8


def test_a_float_graph_has_no_rows_and_prints_nothing():
    assert width_rows(trace(model(), (4,))) == []
    out = io.StringIO()
    print_widths([], Console(file=out, width=80))
    assert out.getvalue() == ""


def test_the_table_fits_80_columns_and_totals(graph):
    lines = render_widths(width_rows(graph))
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].split() == ["layer", "type", "in", "w", "b", "weights", "pruned", "ch", "bits", "0-ch", "bits/w"]
    assert lines[3].split() == ["_0", "Linear", "8/4", "6/3", "8/4", "12", "41.7%", "0/4/6", "1", "1.58"]
    assert lines[4].split() == ["_2", "Linear", "u5/2", "4/1", "10/6", "6", "33.3%", "4/4.5/5", "0", "1.67"]
    assert lines[5] == "total: 18 weights, 7 pruned (38.9%)"
    # Long names are cut to keep the table in 80 columns.
    long = "a_layer_whose_name_goes_on_and_on_far_beyond_what_any_table_column_can_hold"
    cfg = {"by": "type", "linear": layer((8, 4), (6, 3), (8, 4))}
    g, _ = get_pass("quantize").fn(trace(model((long, "relu", long + "_too")), (4,)), parse_pass("quantize", cfg))
    lines = render_widths(width_rows(g))
    assert all(len(line) <= 80 for line in lines) and max(len(line) for line in lines) == 80
    assert lines[3].startswith(long[:20]) and "~ Linear" in lines[3]


TRANSFORM = """\
model = "digits-mlp"
dataset = "digits"

[passes.quantize]
by = "type"
[passes.quantize.linear.config]
name = "integer"
data_in_width = 6
weight_width = 4
bias_width = 8
[passes.quantize.relu.config]
name = "integer"
data_in_width = 6
"""


def test_transform_prints_the_table_and_records_the_rows(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TRANSFORM)
    code, out, err = cli(capsys, "transform", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 0, err
    table = out[out.index("weight widths and pruning"):].splitlines()[:9]
    assert all(len(line) <= 80 for line in table)
    info = json.loads((tmp_path / "digits-mlp_digits" / "transform" / "latest" / "transform.json").read_text())
    rows = info["widths"]
    assert [(r["node"], r["weights"], r["after_relu"]) for r in rows] == [
        ("seq_blocks_0", 64 * 64, False), ("seq_blocks_2", 64 * 32, True), ("seq_blocks_4", 32 * 10, True)]
    assert rows[1]["data_in"] == {"width": 5, "frac": 3, "signed": False}
    assert table[3].split()[:5] == ["seq_blocks_0", "Linear", "6/3", "4/2", "8/4"]
    zeros = sum(r["zero_weights"] for r in rows)
    assert f"total: 6,464 weights, {zeros:,} pruned ({zeros / 6464 * 100:.1f}%)" in table


def test_transform_of_a_float_graph_prints_no_table(tmp_path, capsys):
    code, out, err = cli(capsys, "transform", "--config", str(CONFIGS / "digits_widen_x2.toml"),
                         "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "weight widths" not in out
    d = tmp_path / "digits-mlp_digits" / "transform" / "latest"
    assert json.loads((d / "transform.json").read_text())["widths"] == []
