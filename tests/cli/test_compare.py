"""`bitsmith compare` end to end on a small real space: ground truth, reuse, determinism, bad input."""

import csv
import json

import pytest

from tests.cli.test_cli import cli

SPACE = """
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
data_in_width = [4, 8]
weight_width = {weights}
bias_width = [8]
[search.search_space.seed.relu.config]
name = ["integer"]
data_in_width = [4, 8]

[search.strategy.sw_runner.basic_evaluation]
num_samples = 144
{train}
[search.strategy.hw_runner.average_bitwidth]

[search.strategy.setup]
n_trials = 12
sum_scaled_metrics = {summed}

[search.strategy.metrics]
accuracy.direction = "maximize"
average_bitwidth.scale = {scale}
average_bitwidth.direction = "minimize"
"""


def config(tmp_path, name="c.toml", weights="[2, 4, 8]", summed="true", train=""):
    path = tmp_path / name
    path.write_text(SPACE.format(weights=weights, summed=summed, scale="0.01" if summed == "true" else "1.0",
                                 train=train))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("ckpt")
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(out)])
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def compare(capsys, tmp_path, cfg, ckpt, *extra, project="p"):
    return cli(capsys, "compare", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path),
               "--project", project, *extra)


def table_lines(out: str) -> list[str]:
    """What the command prints, less the lines that may differ between runs (timing, table reuse)."""
    return [line for line in out.splitlines() if not line.startswith(("time:", "ground truth:"))]


def test_single_objective_ground_truth_reuse_and_determinism(tmp_path, capsys, ckpt):
    cfg = config(tmp_path)
    args = ("--samplers", "tpe,random,brute-force", "--seeds", "3", "--trials", "12")
    code, out, err = compare(capsys, tmp_path, cfg, ckpt, *args)
    assert code == 0, err
    d = tmp_path / "p" / "compare"
    assert "ground truth: evaluated 12 new point(s)" in out and "space=12 points" in out
    assert "to optimum" in out and "brute-force" in out and "100%" in out
    truth = next(d.glob("truth_*.json"))
    for name in ("curves.csv", "summary.json", "compare_best.png"):
        assert (d / name).is_file(), name
    points = json.loads(truth.read_text())["points"]
    assert len(points) == 12
    summary = json.loads((d / "summary.json").read_text())
    optimum = max(r["values"][0] for r in points.values() if r["values"] is not None)
    assert summary["optimum"] == optimum and summary["ground_truth"] is True
    # Brute force with a budget of the whole space sees every point once, so it always reaches the optimum.
    bf = summary["samplers"]["brute-force"]
    assert bf["reached"] == 1.0 and bf["distinct"]["min"] == 12 and bf["to_optimum"]["max"] <= 12
    rows = list(csv.DictReader((d / "curves.csv").open()))
    assert len(rows) == 3 * 3 * 12
    final = {(r["sampler"], r["seed"]): float(r["value"]) for r in rows if r["trial"] == "12"}
    assert all(v <= optimum for v in final.values())
    assert max(final.values()) == optimum

    # The table holds what `search` itself records for each point.
    code, _, err = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path),
                       "--project", "s", "--sampler", "brute-force")
    assert code == 0, err
    trials = json.loads((tmp_path / "s" / "search" / "trials.json").read_text())
    from bitsmith.search.compare.truth import point_key

    assert len(trials) == 12
    for t in trials:
        assert points[point_key(t["params"])]["values"] == t["values"]

    # A rerun looks everything up and prints and writes the same results.
    mtime, curves, summ = truth.stat().st_mtime_ns, (d / "curves.csv").read_text(), (d / "summary.json").read_text()
    code, out2, err = compare(capsys, tmp_path, cfg, ckpt, *args)
    assert code == 0, err
    assert "ground truth: reused" in out2 and "(0 evaluations)" in out2
    assert truth.stat().st_mtime_ns == mtime
    assert table_lines(out2) == table_lines(out)
    assert (d / "curves.csv").read_text() == curves and (d / "summary.json").read_text() == summ

    # Another seed gives other runs over the same table.
    code, out3, _ = compare(capsys, tmp_path, cfg, ckpt, *args, "--seed", "7")
    assert code == 0 and "ground truth: reused" in out3 and (d / "curves.csv").read_text() != curves

    # A changed config never reuses the table.
    code, out4, _ = compare(capsys, tmp_path, config(tmp_path, "w.toml", weights="[2, 3, 8]"), ckpt, *args)
    assert code == 0 and "ground truth: evaluated 12 new point(s)" in out4
    assert len(list(d.glob("truth_*.json"))) == 2


def test_several_objectives_hypervolume(tmp_path, capsys, ckpt):
    cfg = config(tmp_path, summed="false")
    code, out, err = compare(capsys, tmp_path, cfg, ckpt, "--samplers", "nsgaii,random,brute-force",
                             "--seeds", "3", "--trials", "12")
    assert code == 0, err
    d = tmp_path / "p" / "compare"
    assert (d / "compare_hypervolume.png").is_file() and not (d / "compare_best.png").exists()
    assert "HV ratio" in out and "front found" in out
    summary = json.loads((d / "summary.json").read_text())
    assert summary["reference"]["point"] == [1.1, 1.1] and summary["reference"]["true_front"] >= 2
    bf = summary["samplers"]["brute-force"]
    assert bf["reached"] == 1.0 and bf["front_share"]["min"] == 1.0 and bf["final"]["min"] == pytest.approx(1.0)
    for s in summary["samplers"].values():
        assert 0 <= s["final"]["min"] <= s["final"]["max"] <= 1 + 1e-12


def test_too_large_space_compares_against_the_best_found(tmp_path, capsys, ckpt, monkeypatch):
    import bitsmith.search.compare as compare_mod

    monkeypatch.setattr(compare_mod, "MAX_TRUTH", 5)
    code, out, err = compare(capsys, tmp_path, config(tmp_path), ckpt, "--samplers", "random,tpe", "--seeds", "2",
                             "--trials", "4")
    assert code == 0, err
    assert "ground truth: none; the space has 12 points" in out and "best any run found" in out
    summary = json.loads((tmp_path / "p" / "compare" / "summary.json").read_text())
    assert summary["ground_truth"] is False
    assert max(s["reached"] for s in summary["samplers"].values()) > 0  # some run found the best found


def test_training_runner_is_evaluated_per_trial(tmp_path, capsys, ckpt):
    train = "[search.strategy.sw_runner.basic_train]\nmax_steps = 1\nnum_samples = 64\n"
    code, out, err = compare(capsys, tmp_path, config(tmp_path, train=train), ckpt, "--samplers", "random",
                             "--seeds", "2", "--trials", "2")
    assert code == 0, err
    assert "evaluated afresh" in out and "(4 evaluations)" in out
    assert not list((tmp_path / "p" / "compare").glob("truth_*.json"))


BAD = [
    (("--samplers", "tpe,nope"), "unknown sampler 'nope'"),
    (("--seeds", "0"), "--seeds 0"),
    (("--trials", "0"), "--trials 0"),
    (("--samplers", ""), "--samplers"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_flags(tmp_path, capsys, ckpt, extra, message):
    code, out, err = compare(capsys, tmp_path, config(tmp_path), ckpt, *extra)
    assert code == 2 and message in err
    assert 1 <= len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "p").exists()


def test_bad_spaces(tmp_path, capsys, ckpt, monkeypatch):
    import bitsmith.search.compare as compare_mod

    cfg = tmp_path / "flat.toml"
    cfg.write_text(config(tmp_path).read_text().replace("[2, 4, 8]", "[8]").replace("data_in_width = [4, 8]",
                                                                                    "data_in_width = [8]"))
    code, _, err = compare(capsys, tmp_path, cfg, ckpt)
    assert code == 2 and "nothing to search" in err and len(err.strip().splitlines()) <= 2
    train = "[search.strategy.sw_runner.basic_train]\nmax_steps = 1\n"
    code, _, err = compare(capsys, tmp_path, config(tmp_path, "t.toml", train=train), ckpt, "--samplers",
                           "brute-force")
    assert code == 2 and "basic_train" in err
    monkeypatch.setattr(compare_mod, "MAX_TRUTH", 5)
    for sampler in ("brute-force", "grid"):
        code, _, err = compare(capsys, tmp_path, config(tmp_path), ckpt, "--samplers", f"tpe,{sampler}")
        assert code == 2 and "visit every point" in err and "12 points" in err
        assert len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "p").exists()
