"""Search output: counts print and are written exactly; small measured figures keep 4 significant digits."""

import csv
import json
import math
import re

import optuna
import pytest
from rich.console import Console

from bitsmith.passes.analysis import analyze
from bitsmith.passes.quantize import quantize_pass
from bitsmith.search.table import _round, design_items, print_best
from tests.cli.test_cli import cli
from tests.helpers import graph_of


@pytest.mark.parametrize("value,shown", [
    (21674, 21674),  # ints stay ints
    (1.0 * 21674, 21674),  # an integral float (scale 1.0 x params) prints as an integer
    (6717440.0, 6717440),  # more digits than 4 significant ones
    (2.0 ** 60, 2 ** 60),
    (2709.25, 2709.25),  # bytes = bits / 8: exact fraction
    (1234567.125, 1234567.125),
    (468.375, 468.375),  # a byte count under 1000 is exact too
    (6502.2000000001, 6502.2),  # large: every integer digit, 3 decimals
    (0.123456, 0.1235),  # accuracy, loss: 4 significant digits
    (2.302585, 2.303),
    (6.1234567, 6.123),  # average bit width
    (5.333333333, 5.333),
    (0.5, 0.5),
])
def test_round_keeps_counts_exact(value, shown):
    out = _round({"m": value})["m"]
    assert out == shown and type(out) is type(shown)


def test_round_leaves_other_values_alone():
    out = _round({"nan": math.nan, "inf": math.inf, "none": None, "flag": True, "text": "x"})
    assert math.isnan(out["nan"]) and out["inf"] == math.inf
    assert (out["none"], out["flag"], out["text"]) == (None, True, "x")
    assert str(_round({"size": 2709.25, "params": 21674.0})) == "{'size': 2709.25, 'params': 21674}"
    assert _round(None) == {}


SEARCH = """\
model = "digits-mlp"
dataset = "digits"
seed = 0

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"

[search.search_space.setup]
by = "type"

[search.search_space.seed.default.config]
name = ["NA"]

[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [3, 5]
bias_width = [7]

[search.strategy.sw_runner.basic_evaluation]
num_samples = 64

[search.strategy.hw_runner.bops]
[search.strategy.hw_runner.model_size]
[search.strategy.hw_runner.params]

[search.strategy.setup]
n_trials = 3
sampler = "random"
sum_scaled_metrics = false

[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
bops.scale = 1.0
bops.direction = "minimize"
"""


def printed_rows(out: str) -> dict[int, list[str]]:
    """The best-trials table's rows by trial number: the figures, then the design's lines joined."""
    rows, current = {}, None
    lines = out.split("Best trial(s):", 1)[1].splitlines()
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("─")) + 1:]
    for line in body:
        if re.match(r"\s*\d+   ", line):  # a row: the trial number, right-aligned, then the figures
            current = rows.setdefault(int(line.split()[0]), [])
            current += line.split()[1:]
        elif line.startswith(" ") and current is not None:  # the design's continuation lines
            current += line.split()
        else:
            break
    return rows


def test_search_prints_and_writes_counts_exactly(tmp_path, capsys):
    cfg = tmp_path / "search.toml"
    cfg.write_text(SEARCH)
    code, out, err = cli(capsys, "search", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 0, err
    d = tmp_path / "digits-mlp_digits" / "search" / "latest"  # the study this search ran
    trials = json.loads((d / "trials.json").read_text())
    base = graph_of("digits-mlp", (64,), 10)

    def expected(trial):  # the figures of the model the trial built, from the analysis passes
        cfg = {"config": {"name": "integer", "data_in_width": 8, "weight_width":
                          trial["params"]["linear/weight_width"], "bias_width": 7}}
        q, _ = quantize_pass(base, {"by": "type", "linear": cfg})
        t = analyze(q)["totals"]
        return {"bops": t["bops"], "model_size": t["model_size"], "params": t["params"]}

    rows = printed_rows(out)
    assert rows and set(rows) <= {t["number"] for t in trials}
    for n, cells in rows.items():
        e = expected(trials[n])
        assert e["bops"] > 10_000 and e["model_size"] % 1  # more than 4 digits; a fraction of a byte
        # accuracy, its 95% interval, bops (every digit, thousands separated), then the design: "NA" fractions resolved.
        w = trials[n]["params"]["linear/weight_width"]
        assert cells[2:] == [f"{e['bops']:,}", "linear", f"w{w}.{w // 2}", "a8.4", "b7.3"], cells
        assert float(cells[0]) == pytest.approx(trials[n]["software_metrics"]["accuracy"], abs=5e-5)
        assert re.fullmatch(r"\(\d\.\d{3}–\d\.\d{3}\)", cells[1]), cells

    # The files hold the exact values: ints as ints, floats to the last bit.
    best = json.loads((d / "best.json").read_text())["best"]
    with (d / "trials.csv").open() as f:
        csv_rows = {int(r["number"]): r for r in csv.DictReader(f)}
    assert best and len(csv_rows) == len(trials) == 3
    for t in [*trials, *best]:
        e = expected(t)
        assert t["hardware_metrics"] == e
        assert type(t["hardware_metrics"]["bops"]) is int
        assert t["scaled_metrics"]["bops"] == e["bops"]
        r = csv_rows[t["number"]]
        assert (r["hw.bops"], r["hw.params"], r["hw.model_size"]) == (str(e["bops"]), str(e["params"]),
                                                                      repr(e["model_size"]))
        assert float(r["scaled.bops"]) == e["bops"]


# -- the best-trials table, from trials as a search stores them ------------------------------------

def quantize_by_type(w=8, a=6, b=4, relu=4):
    return ["quantize", {"by": "type", "report": None,
                         "linear": {"config": {"name": "integer", "data_in_width": a, "data_in_frac_width": None,
                                               "weight_width": w, "weight_frac_width": None, "bias_width": b,
                                               "bias_frac_width": None}},
                         "relu": {"config": {"name": "integer", "data_in_width": relu, "data_in_frac_width": None}},
                         "default": {"config": {"name": None}}}]


def test_design_items_resolve_fractions_and_skip_float_layers():
    assert design_items([quantize_by_type(w=3, a=8, b=5, relu=6)]) == ["linear w3.1 a8.4 b5.2", "relu a6.3"]
    by_name = ["quantize", {"by": "name",
                            "fc1": {"config": {"name": "integer", "weight_width": 6, "weight_frac_width": 5,
                                               "data_in_width": 8, "data_in_frac_width": -2,
                                               "bias_width": 8, "bias_frac_width": 10}},
                            "fc2": {"config": {"name": "integer", "weight_width": 4, "bypass": True}},
                            "fc3": {"config": {"name": None, "weight_width": 4}}}]
    assert design_items([by_name]) == ["fc1 w6.5 a8.-2 b8.10"]
    # By type, a table reaches only what its layer has: a ReLU's input, not a weight.
    relu = ["quantize", {"by": "type", "relu": {"config": {"name": "integer", "data_in_width": 4, "weight_width": 8}}}]
    assert design_items([relu]) == ["relu a4.2"]
    widths = ["channel_multiply", {"by": "name", "init": "preserve", "mode": "auto", "seed": 0,
                                   "seq_blocks_0": {"config": {"name": "output_only", "channel_multiplier": 2}},
                                   "seq_blocks_1": {"config": {"name": "inplace", "channel_multiplier": 4}},
                                   "seq_blocks_2": {"config": {"name": "both", "channel_multiplier_input": 2,
                                                               "channel_multiplier_output": 3}},
                                   "seq_blocks_4": {"config": {"name": "input_only", "channel_multiplier": 1}}}]
    assert design_items([widths, quantize_by_type()]) == [
        "seq_blocks_0 out×2", "seq_blocks_2 in×2 out×3", "seq_blocks_4 in×1", "linear w8.4 a6.3 b4.2", "relu a4.2"]
    assert design_items(None) == [] and design_items([["quantize", {"by": "type"}]]) == []


def stored_trials(directions, names, rows):
    """Trials as a search stores them: objectives ``names``, ``rows`` of (values, software, hardware, config)."""
    study = optuna.create_study(directions=directions)
    for values, sw, hw, config in rows:
        scaled = {n: {**sw, **hw}[n] for n in names}
        study.add_trial(optuna.trial.create_trial(
            values=values, user_attrs={"config": config, "software_metrics": sw, "hardware_metrics": hw,
                                       "scaled_metrics": scaled}))
    return study.trials


def table_lines(trials, tests, width):
    console = Console(width=width, record=True, force_terminal=False)
    print_best(trials, tests, console)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 64])
def test_best_table_fits_the_width_and_shows_each_design(width):
    trials = stored_trials(["maximize", "minimize"], ["accuracy", "average_bitwidth"], [
        ([0.9722, 5.968], {"accuracy": 0.9722, "loss": 0.1}, {"average_bitwidth": 5.968, "bops": 310272},
         [quantize_by_type(w=6, a=8)]),
        ([0.3611, 2.032], {"accuracy": 0.3611, "loss": 1.7}, {"average_bitwidth": 2.032, "bops": 51712},
         [quantize_by_type(w=2, a=4)]),
    ])
    lines = table_lines(trials, {0: {"accuracy": 0.97, "loss": 0.12}, 1: {"accuracy": 0.42, "loss": 1.78}}, width)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    assert "software_metrics" not in text and "average_activation" not in text  # no dicts, objectives only
    header = lines[1:lines.index(next(line for line in lines if line.startswith("─")))]
    assert "accuracy" in "".join(header) and "(bits)" in "".join(header)
    rows = printed_rows(text)
    assert rows == {1: ["0.3611", "2.032", "linear", "w2.1", "a4.2", "b4.2;", "relu", "a4.2"],
                    0: ["0.9722", "5.968", "linear", "w6.3", "a8.4", "b4.2;", "relu", "a4.2"]}
    assert list(rows) == [1, 0]  # along the front: in order of the first objective
    assert "w/a/b: weight/layer-input/bias format as width.frac" in text
    assert re.search(r"^\s+1\s+0\.4200\s+1\.7800$", text, re.M)  # test split, same order


def test_long_designs_go_under_their_row_within_80_columns():
    # Four objectives and a format per node: the design no longer fits beside the figures.
    config = [["quantize", {"by": "name", **{
        f"seq_blocks_{i}": {"config": {"name": "integer", "data_in_width": 8, "weight_width": 3 + i,
                                       "bias_width": 8}} for i in range(0, 5, 2)},
        **{f"seq_blocks_{i}": {"config": {"name": "integer", "data_in_width": 4}} for i in (1, 3)}}]]
    sw = {"accuracy": 0.9514, "latency": 0.2224}
    hw = {"model_size": 4010.25, "bops": 249856}
    names = ["accuracy", "model_size", "latency", "bops"]
    trials = stored_trials(["maximize", "minimize", "minimize", "minimize"], names,
                           [([0.9514, 4010.25, 0.2224, 249856], sw, hw, config)])
    lines = table_lines(trials, {}, 200)  # a wide console still gets the 80-column table
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    row = lines.index(next(line for line in lines if line.startswith("─"))) + 1
    assert lines[row].split() == ["0", "0.9514", "4,010.25", "0.2224", "249,856"]
    # 148 characters of design: two full lines under the row, indented past the trial number.
    assert [line[:8] for line in lines[row + 1:row + 3]] == [" " * 8] * 2 and lines[row + 3][0] != " "
    design = " ".join(printed_rows("\n".join(lines))[0][4:])
    assert design == ("seq_blocks_0 w3.1 a8.4 b8.4; seq_blocks_2 w5.2 a8.4 b8.4; seq_blocks_4 w7.3 a8.4 b8.4; "
                      "seq_blocks_1 a4.2; seq_blocks_3 a4.2")
    assert "under each row: its design" in "\n".join(lines)


def test_weighted_sum_gets_its_column_and_no_design_prints_none():
    sw, hw = {"accuracy": 0.9722}, {"model_size": 4954}
    trials = stored_trials(["maximize"], ["accuracy", "model_size"],
                           [([0.9722 - 0.00002 * 4954], sw, hw, [quantize_by_type()])])
    lines = table_lines(trials, {}, 80)
    assert "weighted sum" in "\n".join(lines[:4])
    assert printed_rows("\n".join(lines))[0][:3] == ["0.9722", "4,954", f"{0.9722 - 0.00002 * 4954:.4g}"]
    assert table_lines([], {}, 80) == ["Best trial(s): none"]


def test_table_cells_are_never_markup():
    regex = ["quantize", {"by": "regex_name", "seq_blocks_[024]": {"config": {
        "name": "integer", "data_in_width": 8, "weight_width": 4, "bias_width": 8}}}]
    trials = stored_trials(["maximize"], ["accuracy"], [([0.5], {"accuracy": 0.5}, {}, [regex])])
    assert "seq_blocks_[024] w4.2 a8.4 b8.4" in "\n".join(table_lines(trials, {}, 80))
