"""Learned widths from the command line: a search whose trials train, its designs downstream (report, test,
QONNX export bit-exact), collapse, the CNN with per-channel widths, and JSC's flow on a synthetic file."""

import json

import pytest

from tests.cli.test_cli import cli

LEARNED = """\
model = "{model}"
dataset = "{dataset}"
seed = 0

[search.search_space]
name = "graph/quantize/learned_widths"

[search.search_space.setup]
pruner = "{pruner}"

[search.search_space.hyper]
beta = {beta}
max_epochs = {epochs}
learning_rate = {{ low = 3e-3, high = 1e-2, log = true }}
granularity = {granularity}

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"

[search.strategy.hw_runner.{cost}]

[search.strategy.setup]
n_trials = {trials}
sampler = "tpe"

[search.strategy.metrics]
accuracy.direction = "maximize"
{cost}.direction = "minimize"
"""


def config(tmp_path, **kw):
    values = dict(model="digits-mlp", dataset="digits", pruner="none", beta="{ low = 1e-5, high = 1e-4, log = true }",
                  epochs=4, granularity='["weight", "channel"]', cost="luts", trials=3)
    values.update(kw)
    path = tmp_path / "learned.toml"
    path.write_text(LEARNED.format(**values))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("train-learned")
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "5", "--project-dir", str(out)])
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def study_dir(project):
    return next((project / "digits-mlp_digits" / "search").glob("*-learned"))


def test_a_learned_widths_search_trains_each_trial_and_its_designs_go_downstream(tmp_path, capsys, ckpt):
    cfg = config(tmp_path)
    code, out, err = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "3 trials (3 complete, 0 pruned, 0 failed)" in out
    d = study_dir(tmp_path)
    best = json.loads((d / "best.json").read_text())["best"]
    assert best and all(b["hardware_metrics"]["luts"] > 0 for b in best)
    trials = json.loads((d / "trials.json").read_text())
    for t in trials:
        assert set(t["params"]) == {"beta", "max_epochs", "learning_rate", "granularity", "range_quantile"}
        assert len(t["val_accuracy_by_epoch"]) == 4
        assert 0 < t["learned"]["pruned_weights"] < 1
    chosen = best[0]
    # The design is rebuilt from the stored point by training again: the same seed gives the same design.
    assert chosen["config"][0] == ["fold_batchnorm", {}] and chosen["config"][1][0] == "quantize"
    ckpt_b = chosen["checkpoint"]
    code, out, err = cli(capsys, "test", "--load", ckpt_b, "--project-dir", str(tmp_path / "t"))
    assert code == 0, err
    assert f"{chosen['test_metrics']['accuracy']:.4f}" in out
    code, out, err = cli(capsys, "export", "--load", ckpt_b, "--to", "qonnx", "--verify",
                         "--output", str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert "(bit-exact)" in out
    # Each trial's design was kept; without them, `report` trains the best designs again, to the same figures.
    assert sorted(p.name for p in (d / "designs").iterdir()) == [f"trial_{t['number']}.ckpt" for t in trials]
    import shutil

    shutil.rmtree(d / "designs")
    code, out, err = cli(capsys, "report", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    assert code == 0, err
    again = json.loads((d / "best.json").read_text())["best"]
    assert [(b["number"], b["test_metrics"]) for b in again] == [(b["number"], b["test_metrics"]) for b in best]
    # The search resumes: 2 more trials join the same study.
    code, out, err = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir",
                         str(tmp_path), "--n-trials", "5")
    assert code == 0, err
    assert "5 trials (5 complete" in out


def test_a_penalty_that_collapses_every_trial_prunes_them_with_the_reason(tmp_path, capsys, ckpt):
    cfg = config(tmp_path, beta="[10.0]", trials=2, epochs=3, granularity='["layer"]')
    code, out, _ = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    assert code == 1 and "no trial completed: 2 pruned" in out  # as for any search whose every trial is pruned
    trials = json.loads((study_dir(tmp_path) / "trials.json").read_text())
    assert [t["state"] for t in trials] == ["PRUNED", "PRUNED"]
    assert all("collapsed: validation accuracy" in t["pruned_reason"] for t in trials)
    assert "lower the penalty strength beta" in trials[0]["pruned_reason"]


def test_the_cnn_learns_per_channel_widths_and_is_costed_in_luts(tmp_path, capsys):
    cfg = config(tmp_path, model="digits-cnn", dataset="digits-image", granularity='["channel"]', trials=2,
                 epochs=2, beta="[1e-6]")
    code, out, err = cli(capsys, "search", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 0, err
    d = next((tmp_path / "digits-cnn_digits-image" / "search").glob("*-learned"))
    best = json.loads((d / "best.json").read_text())["best"]
    assert best and [r["kind"] for r in best[0]["luts_layers"]] == ["conv2d", "conv2d", "linear"]
    quant = dict(best[0]["config"])["quantize"]
    assert not any("batch" in k for k in quant)  # the BatchNorms were folded into the convolutions


def test_the_jsc_flow_runs_on_a_synthetic_file_in_its_layout(tmp_path, capsys, jsc_files):
    # No accuracy claim: the rows are generated. jsc-toy has a BatchNorm after each Linear (folded) and one on
    # its input (kept in float, before the first quantized layer).
    cfg = config(tmp_path, model="jsc-toy", dataset="jsc", trials=2, epochs=2, beta="[1e-5]")
    code, _, err = cli(capsys, "search", "--config", str(cfg), "--data-path", str(jsc_files["csv"]),
                         "--project-dir", str(tmp_path))
    assert code == 0, err
    d = next((tmp_path / "jsc-toy_jsc" / "search").glob("*-learned"))
    best = json.loads((d / "best.json").read_text())["best"]
    assert best and len(best[0]["luts_layers"]) == 3


def test_the_example_config_runs_as_written(tmp_path, capsys, ckpt):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "configs" / "search_digits_learned.toml"
    code, out, err = cli(capsys, "search", "--config", str(example), "--load", str(ckpt), "--project-dir",
                         str(tmp_path), "--n-trials", "2")
    assert code == 0, err
    assert "2 trials (2 complete" in out


def test_repeats_score_each_trial_by_the_means_over_its_seeds_and_keep_the_first_seeds_design(tmp_path, capsys,
                                                                                               ckpt):
    (tmp_path / "once").mkdir()
    once = config(tmp_path / "once", trials=2, epochs=3)
    twice = tmp_path / "twice.toml"
    twice.write_text(once.read_text().replace('pruner = "none"\n', 'pruner = "none"\nrepeats = 2\n'))
    runs = {}
    for name, cfg in (("once", once), ("twice", twice)):
        code, out, err = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir",
                             str(tmp_path / name))
        assert code == 0, err
        d = next((tmp_path / name / "digits-mlp_digits" / "search").glob(f"*-{cfg.stem}"))
        runs[name] = (json.loads((d / "trials.json").read_text()), out)
    (once_trials, once_out), (twice_trials, twice_out) = runs["once"], runs["twice"]
    assert "repeats" not in once_trials[0] and "means over" not in once_out
    assert "metrics: means over 2 seeds (repeats)" in twice_out
    for a, b in zip(once_trials, twice_trials):
        assert a["params"] == b["params"]  # the seeded sampler proposes the same points
        first, second = b["repeats"]
        assert (first["seed"], second["seed"]) == (0, 1)
        # the first seed is the search's own: its design and metrics are those of the study without repeats
        assert [first["accuracy"], first["luts"]] == a["values"]
        assert b["config"] == a["config"]
        assert second["luts"] != first["luts"]  # another seed, another design
        assert b["values"] == pytest.approx([(first["accuracy"] + second["accuracy"]) / 2,
                                             (first["luts"] + second["luts"]) / 2])
