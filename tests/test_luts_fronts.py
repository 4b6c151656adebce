"""The fronts under luts and under bops (bitsmith.search.fronts), and `bitsmith compare` reporting where they
differ on a digits space whose weights and activations are searched."""

import json
import math
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitsmith.search.fronts import (Design, compare_fronts, designs_from_points, designs_from_trials, front,
                                    near_pairs, point_label, report_lines, spearman)


def d(id_, acc, luts, bops):
    return Design(id_, f"#{id_}", acc, {"luts": float(luts), "bops": float(bops)})


# A and C are the luts front, B and D the bops front: no design is on both.
#   A: as accurate as B, fewer LUTs, more BOPs      C: cheaper in LUTs than D, more accurate, more BOPs
FOUR = [d("A", 0.95, 100, 1000), d("B", 0.95, 150, 800), d("C", 0.90, 80, 900), d("D", 0.80, 90, 500)]


def ids(designs):
    return [x.id for x in designs]


def test_front_keeps_the_designs_nothing_beats():
    assert ids(front(FOUR, "luts")) == ["A", "C"]
    assert ids(front(FOUR, "bops")) == ["B", "D"]


def test_front_keeps_ties_and_drops_an_equal_accuracy_dearer_design():
    designs = [d("a", 0.9, 10, 0), d("b", 0.9, 10, 0), d("c", 0.9, 11, 0), d("e", 0.8, 10, 0), d("f", 0.95, 30, 0)]
    assert ids(front(designs, "luts")) == ["f", "a", "b"]  # e: as cheap as a, less accurate; c: dearer than a
    assert front([], "luts") == []


def dominated(x, others, cost):
    return any(o.accuracy >= x.accuracy and o.costs[cost] <= x.costs[cost]
               and (o.accuracy > x.accuracy or o.costs[cost] < x.costs[cost]) for o in others)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=25))
def test_front_is_exactly_the_non_dominated_designs(points):
    designs = [d(str(i), a / 6, c, 0) for i, (a, c) in enumerate(points)]
    on = set(ids(front(designs, "luts")))
    assert on == {x.id for x in designs if not dominated(x, designs, "luts")}


def test_compare_fronts_says_which_designs_are_on_one_front_only_and_by_how_much():
    r = compare_fronts(FOUR)
    assert r["front"] == {"luts": ["A", "C"], "bops": ["B", "D"]} and r["both"] == [] and r["designs"] == 4
    only_bops = {x["id"]: x for x in r["only"]["bops"]}  # costed in LUTs against the luts front
    assert only_bops["B"]["vs"] == "A" and only_bops["B"]["extra"] == 50 and only_bops["B"]["extra_share"] == 0.5
    assert only_bops["D"]["vs"] == "C" and only_bops["D"]["extra"] == 10  # C: the cheapest of accuracy >= 0.8
    assert only_bops["D"]["extra_share"] == pytest.approx(0.125)
    only_luts = {x["id"]: x for x in r["only"]["luts"]}  # costed in BOPs against the bops front
    assert (only_luts["A"]["vs"], only_luts["A"]["extra"]) == ("B", 200)
    assert (only_luts["C"]["vs"], only_luts["C"]["extra"]) == ("B", 100)
    assert r["spearman"] == pytest.approx(spearman([100, 150, 80, 90], [1000, 800, 900, 500]))
    json.dumps(r)  # JSON-ready


def test_the_same_fronts_have_nothing_on_one_front_only():
    designs = [d("a", 0.9, 100, 1000), d("b", 0.8, 50, 500), d("c", 0.7, 60, 700)]
    r = compare_fronts(designs)
    assert r["front"]["luts"] == r["front"]["bops"] == r["both"] == ["a", "b"]
    assert r["only"] == {"luts": [], "bops": []}
    assert r["spearman"] == pytest.approx(1.0)
    text = "\n".join(report_lines(r))
    assert "every design on the bops front is on the luts front" in text
    assert "every design on the luts front is on the bops front" in text


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their average rank: ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert math.isnan(spearman([1, 2], [2, 1])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    scipy_stats = pytest.importorskip("scipy.stats")
    xs, ys = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]
    assert spearman(xs, ys) == pytest.approx(scipy_stats.spearmanr(xs, ys).statistic)


def test_near_pairs_are_within_the_margin_most_different_first_and_disjoint():
    designs = [d("p", 0.9, 100, 1000), d("q", 0.9, 400, 1040), d("r", 0.9, 150, 1020), d("s", 0.9, 1000, 1200),
               d("t", 0.9, 200, 1030)]
    pairs = near_pairs(designs, "luts", "bops", near=0.05, top=3)
    # s is 15% above the others in BOPs: never paired. p-q (x4) first; q is used, so r-t (x1.33) next
    assert [(p["low"], p["high"]) for p in pairs] == [("p", "q"), ("r", "t")]
    assert pairs[0]["ratio"] == 4.0 and pairs[0]["low_bops"] == 1000 and pairs[0]["high_luts"] == 400
    assert near_pairs(designs, "luts", "bops", near=0.0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(90, 110)), min_size=2, max_size=25))
def test_the_first_near_pair_is_the_most_different_of_all(points):
    designs = [d(str(i), 0.5, luts, bops) for i, (luts, bops) in enumerate(points)]
    ratios = [max(x.costs["luts"], y.costs["luts"]) / min(x.costs["luts"], y.costs["luts"])
              for i, x in enumerate(designs) for y in designs[i + 1:]
              if abs(x.costs["bops"] - y.costs["bops"]) <= 0.05 * max(x.costs["bops"], y.costs["bops"])
              and x.costs["luts"] != y.costs["luts"]]
    pairs = near_pairs(designs, "luts", "bops", near=0.05)
    assert (pairs[0]["ratio"] if pairs else None) == pytest.approx(max(ratios) if ratios else None)
    chosen = [p[k] for p in pairs for k in ("low", "high")]
    assert len(chosen) == len(set(chosen))  # no design in two pairs


TRIAL = {"state": "COMPLETE", "feasible": True, "software_metrics": {"accuracy": 0.9, "loss": 0.3},
         "hardware_metrics": {"luts": 100.0, "bops": 1000}}


def test_designs_from_trials_keep_complete_feasible_trials_with_every_metric_once():
    rows = [{**TRIAL, "number": 0, "params": {"w": 2}},
            {**TRIAL, "number": 1, "params": {"w": 2}},  # the same point again: counted once, as #0
            {**TRIAL, "number": 2, "params": {"w": 3}, "state": "PRUNED"},
            {**TRIAL, "number": 3, "params": {"w": 4}, "feasible": False},
            {**TRIAL, "number": 4, "params": {"w": 5}, "hardware_metrics": {"luts": 10.0}},  # no bops
            {**TRIAL, "number": 5, "params": {"w": 6}, "software_metrics": {"accuracy": float("nan")}},
            {**TRIAL, "number": 6, "params": {"w": 8}, "hardware_metrics": {"luts": 50.0, "bops": 2000}}]
    got = designs_from_trials(rows)
    assert [(x.id, x.label, x.accuracy, x.costs) for x in got] == [
        ("0", "#0", 0.9, {"luts": 100.0, "bops": 1000.0}), ("6", "#6", 0.9, {"luts": 50.0, "bops": 2000.0})]


def test_designs_from_points_keep_feasible_points_labelled_by_their_values():
    metrics = {"accuracy": 0.9, "luts": 10.0, "bops": 20}
    rows = {json.dumps({"b/w": 8, "a/w": 2}): {"values": [0.9, 10.0], "violations": [], "metrics": metrics},
            json.dumps({"b/w": 4, "a/w": 2}): {"values": None, "violations": [], "metrics": {}, "pruned": "x"},
            json.dumps({"b/w": 2, "a/w": 2}): {"values": [0.9, 10.0], "violations": [0.5], "metrics": metrics}}
    got = designs_from_points(rows)
    assert [x.label for x in got] == ["2.8"]  # values in name order: a/w, b/w
    assert point_label(json.dumps({"x": None, "y": 3})) == "NA.3"


def test_report_lines_fit_80_columns_and_name_the_designs():
    # X: the luts front (BOPs far too high); Y: the bops front (LUTs far too high); long labels, large figures
    xs = [Design(f"X{i}", "8.8.8.8.8.8.8.8.8.X", 0.5 + i / 20, {"luts": 100 + 10 * i, "bops": 1e9 + 1})
          for i in range(6)]
    ys = [Design(f"Y{i}", f"#Y{i}", 0.5 + i / 20, {"luts": 123456789.0 + i, "bops": 100 + 10 * i}) for i in range(6)]
    result = compare_fronts(xs + ys)
    assert len(result["only"]["bops"]) == len(result["only"]["luts"]) == 6
    lines = report_lines(result, shown=3)
    assert max(map(len, lines)) <= 80 and not any(line.endswith("~") for line in lines[:3])
    text = "\n".join(lines)
    assert "On the bops front only (6)" in text and "On the luts front only (6)" in text
    assert text.count("... 3 more (all in the JSON)") == 2
    assert "#Y5" in text and "123.5M" in text and "1.000G" in text and "8.8.8.8.8.8.8.~" in text
    assert f"Spearman rank correlation of luts and bops: {result['spearman']:.3f}" in text
    assert result["spearman"] < -0.5  # cheap in one, dear in the other


def test_compare_reports_fronts_only_when_luts_bops_and_accuracy_are_recorded():
    from bitsmith.search.compare import two_fronts
    from bitsmith.search.runners import make_runners

    metrics = {"accuracy": 0.9, "luts": 10.0, "bops": 20}
    table = SimpleNamespace(rows={json.dumps({"w": 2}): {"values": [0.9], "violations": [], "metrics": metrics}})
    with_both = SimpleNamespace(runners=make_runners({"basic_evaluation": {}}, {"luts": {}, "bops": {}}))
    without = SimpleNamespace(runners=make_runners({"basic_evaluation": {}}, {"luts": {}}))
    assert two_fronts(with_both, table, {}, truth=True)["front"] == {"luts": ['{"w": 2}'], "bops": ['{"w": 2}']}
    assert two_fronts(without, table, {}, truth=True) is None
    # without ground truth: the points the runs evaluated, not the whole table
    histories = {"random": [[(json.dumps({"w": 4}), {"values": [0.8], "violations": [],
                                                      "metrics": {**metrics, "accuracy": 0.8}})]]}
    assert two_fronts(with_both, table, histories, truth=False)["front"]["luts"] == ['{"w": 4}']


# ---- end to end: `bitsmith compare` on digits, weights and activations searched ------------------------------

SPACE = """
model = "digits-mlp"
dataset = "digits"
seed = 0

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "name"
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.seq_blocks_0.config]
name = ["integer"]
data_in_width = [8]
weight_width = [2, 4, 8]
bias_width = [8]
[search.search_space.seed.seq_blocks_1.config]
name = ["integer"]
data_in_width = [3, 8]
[search.search_space.seed.seq_blocks_2.config]
name = ["integer"]
data_in_width = [8]
weight_width = [2, 4, 8]
bias_width = [8]
[search.search_space.seed.seq_blocks_3.config]
name = ["integer"]
data_in_width = [3, 8]
[search.search_space.seed.seq_blocks_4.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
bias_width = [8]

[search.strategy.sw_runner.basic_evaluation]
[search.strategy.hw_runner.luts]
[search.strategy.hw_runner.bops]

[search.strategy.setup]
n_trials = 8

[search.strategy.metrics]
accuracy.direction = "maximize"
luts.direction = "minimize"
"""


def test_compare_shows_the_luts_and_bops_fronts_differ_on_digits(tmp_path, capsys, monkeypatch):
    from bitsmith.cli import main
    from bitsmith.cost.cache import ENV
    from tests.cli.test_cli import cli

    monkeypatch.setenv(ENV, str(tmp_path / "cache"))  # the solved layers' cache (and the data cache) in tmp_path
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(tmp_path / "t")])
    ckpt = tmp_path / "t" / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    cfg = tmp_path / "c.toml"
    cfg.write_text(SPACE)
    code, out, err = cli(capsys, "compare", "--config", str(cfg), "--load", str(ckpt), "--project-dir",
                         str(tmp_path / "p"), "--samplers", "random", "--seeds", "1", "--trials", "8")
    assert code == 0, err
    assert any((tmp_path / "cache" / "da").rglob("*.json"))  # the layers were solved into the given cache
    compare_dir = tmp_path / "p" / "digits-mlp_digits" / "compare"
    summary = json.loads((compare_dir / "version_0" / "summary.json").read_text())
    fronts = summary["fronts"]
    assert fronts["designs"] == 72 and fronts["over"] == "the whole space"
    # The two fronts differ: designs on one front only, and the luts front has designs BOPs cannot tell apart
    # from a more accurate one (ReLU input widths cost LUTs, not BOPs).
    assert fronts["only"]["bops"] or fronts["only"]["luts"]
    assert set(fronts["front"]["luts"]) != set(fronts["front"]["bops"])
    assert -1 <= fronts["spearman"] <= 1
    # The JSON is what the module computes from the ground-truth table itself
    truth = json.loads(next(compare_dir.glob("truth_*.json")).read_text())["points"]
    again = compare_fronts(designs_from_points(truth))
    assert again["front"] == fronts["front"] and again["only"] == fronts["only"]
    section = out[out.index("Pareto fronts, accuracy vs luts and vs bops"):out.index("time:")]
    assert max(map(len, section.splitlines())) <= 80
    assert "seq_blocks_1/data_in_width" in section  # the legend: what a design's label lists
    for row in fronts["only"]["bops"][:8] + fronts["only"]["luts"][:8]:  # report_lines shows 8 of each
        assert f"  {row['label']} " in section
