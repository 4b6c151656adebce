"""``--val-size`` end to end: a checkpoint trained with a larger validation share is searched on it, with the
intervals counting its rows; a larger share than the checkpoint's, and a resume with another share, are
refused."""

from __future__ import annotations

import json

import torch

from tests.cli.test_cli import cli

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
weight_width = [2, 8]
bias_width = [8]

[search.strategy.sw_runner.basic_evaluation]
[search.strategy.hw_runner.average_bitwidth]

[search.strategy.setup]
n_trials = 2
sampler = "brute-force"
sum_scaled_metrics = false

[search.strategy.metrics]
accuracy.direction = "maximize"
average_bitwidth.direction = "minimize"
"""


def test_a_checkpoint_trained_with_a_larger_share_is_searched_on_it(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "digits-mlp", "digits", "--max-epochs", "2", "--val-size", "0.25",
                       "--project-dir", str(tmp_path))
    assert code == 0, err
    ckpt = tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    assert torch.load(ckpt, weights_only=True)["bitsmith"]["settings"]["val_size"] == 0.25
    cfg = tmp_path / "s.toml"
    cfg.write_text(SEARCH)
    args = ("search", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    code, out, err = cli(capsys, *args)  # no --val-size: the checkpoint's
    assert code == 0, err
    assert "accuracy, loss: on the validation split (360 rows)" in out and "Test split, 360 rows" in out
    best = json.loads((tmp_path / "digits-mlp_digits" / "search" / "latest" / "best.json").read_text())
    assert best["accuracy_interval"] == {"level": 0.95, "method": "wilson", "rows": {"validation": 360, "test": 360}}
    for entry in best["best"]:
        lo, hi = entry["accuracy_interval"]["validation"]
        assert lo <= entry["software_metrics"]["accuracy"] <= hi
        lo, hi = entry["accuracy_interval"]["test"]
        assert lo <= entry["test_metrics"]["accuracy"] <= hi
    # A design's checkpoint keeps the share too, so searching it again stays on the same rows.
    assert torch.load(best["best"][0]["checkpoint"], weights_only=True)["bitsmith"]["settings"]["val_size"] == 0.25
    # A larger share than the checkpoint's would validate on rows it learned from.
    code, _, err = cli(capsys, *args, "--val-size", "0.5", "--fresh")
    assert code == 2 and "trained with val_size = 0.25: a validation split of 0.5 holds rows it learned from" in err


def test_resume_with_another_share_is_refused(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SEARCH)
    args = ("search", "--config", str(cfg), "--project-dir", str(tmp_path))
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert "on the validation split (144 rows)" in out
    code, _, err = cli(capsys, *args, "--val-size", "0.25")
    assert code == 2 and "was made with another config (data: " in err and "--fresh" in err
    code, _, err = cli(capsys, *args)  # the study is as it was: the same share resumes it
    assert code == 0, err
