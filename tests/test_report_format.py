"""Search output: counts print and are written exactly; small measured figures keep 4 significant digits."""

import csv
import json
import math
import re

import pytest

from bitsmith.passes.analysis import analyze
from bitsmith.passes.quantize import quantize_pass
from bitsmith.search.report import _round
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
    """The best-trials table's cells by trial number, wrapped lines joined, all whitespace removed."""
    rows, cells = {}, None
    for line in out.split("Best trial(s):", 1)[1].splitlines():
        if line.startswith("│"):
            parts = line.strip().strip("│").split("│")
            cells = parts if cells is None else [a + b for a, b in zip(cells, parts)]
        elif cells is not None and line.startswith(("├", "└")):
            cells = ["".join(c.split()) for c in cells]
            rows[int(cells[0])] = cells[1:]
            cells = None
        if line.startswith("└"):
            break
    return rows


def test_search_prints_and_writes_counts_exactly(tmp_path, capsys):
    cfg = tmp_path / "search.toml"
    cfg.write_text(SEARCH)
    code, out, err = cli(capsys, "search", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 0, err
    d = tmp_path / "digits-mlp_digits" / "search"
    trials = json.loads((d / "trials.json").read_text())
    base = graph_of("digits-mlp", (64,), 10)

    def expected(trial):  # the figures of the model the trial built, from the analysis passes
        cfg = {"config": {"name": "integer", "data_in_width": 8, "weight_width":
                          trial["params"]["linear/weight_width"], "bias_width": 7}}
        q, _ = quantize_pass(base, {"by": "type", "linear": cfg})
        t = analyze(q)["totals"]
        return {"bops": t["bops"], "model_size": t["model_size"], "params": t["params"]}

    rows = printed_rows(out)
    assert rows
    for n, (_, hw, scaled) in rows.items():
        e = expected(trials[n])
        assert e["bops"] > 10_000 and e["model_size"] % 1  # more than 4 digits; a fraction of a byte
        assert f"'bops':{e['bops']}," in hw and f"'params':{e['params']}" in hw
        assert f"'model_size':{e['model_size']!r}," in hw  # e.g. 2516.75, not 2517.0
        assert re.search(rf"'bops':{e['bops']}[,}}]", scaled)  # scale 1.0 x bops: a float, shown as the integer

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
