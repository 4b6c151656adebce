"""`bitsmith compare` with strategies: samplers on one config's space beside other configs (``--with``), the
learned-widths space (no ground truth: each trial trains), one reference for all, and bad input.

The bad-input cases use tests/cli/test_bad_input.py's machinery (Case, prepare, check) and promises, in a
table of their own here so that file's shared table is not edited by two people at once.
"""

import csv
import json
import re
from pathlib import Path

import pytest

from tests.cli.test_bad_input import Case, Fx, check, prepare, tree
from tests.cli.test_cli import cli

# A 12-point quantization space of the digits MLP, scored on accuracy and BOPs.
QUANT = """\
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
weight_width = [2, 4, 8]
bias_width = [8]
[search.search_space.seed.relu.config]
name = ["integer"]
data_in_width = [4, 8]

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.hw_runner.bops]

[search.strategy.setup]
n_trials = 3
sampler = "tpe"

[search.strategy.metrics]
accuracy.direction = "maximize"
bops.direction = "minimize"
"""

# Learned widths on the same model and metrics: two short epochs per trial, ranges for beta and the rate.
LEARNED = """\
model = "digits-mlp"
dataset = "digits"
seed = 0

[search.search_space]
name = "graph/quantize/learned_widths"
[search.search_space.setup]
batch_size = 256
pruner = "none"
[search.search_space.hyper]
beta = { low = 3e-6, high = 3e-4, log = true }
max_epochs = 2
learning_rate = { low = 2e-3, high = 2e-2, log = true }
granularity = ["weight", "channel"]

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.hw_runner.bops]

[search.strategy.setup]
n_trials = 3
sampler = "tpe"

[search.strategy.metrics]
accuracy.direction = "maximize"
bops.direction = "minimize"
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("ckpt-strategies")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(out)])
    assert exit_.value.code == 0
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def compare(capsys, tmp_path, cfg, ckpt, *extra):
    return cli(capsys, "compare", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path),
               "--project", "p", *extra)


def rows(out: str) -> list[str]:
    """The first cell of each row of the printed table."""
    return re.findall(r"^│ (\S+) +│", out, re.MULTILINE)


def test_samplers_and_a_learned_widths_strategy_in_one_run(tmp_path, capsys, ckpt):
    quant, learned = write(tmp_path, "quant.toml", QUANT), write(tmp_path, "learned.toml", LEARNED)
    args = ("--samplers", "random,tpe", "--with", str(learned), "--seeds", "2", "--trials", "3")
    code, out, err = compare(capsys, tmp_path, quant, ckpt, *args)
    assert code == 0, err
    names = ["mixed_precision_ptq:random", "mixed_precision_ptq:tpe", "learned_widths:tpe"]
    assert f"strategies={','.join(names)} " in out and "Strategies over 2 seed(s), 3 trials each" in out
    assert rows(out) == names
    assert "ground truth: none; strategies on different configs" in out
    d = tmp_path / "p" / "compare"
    run = d / "version_0"
    assert (run / "compare_hypervolume.png").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["samplers"]) == names and summary["ground_truth"] is False
    assert summary["reference"]["point"] == [1.1, 1.1]  # one reference: the best any run of any strategy found
    for name, s in summary["samplers"].items():
        assert 0 <= s["final"]["min"] <= s["final"]["median"] <= s["final"]["max"] <= 1 + 1e-12, name
        assert s["trials"]["median"] == 3
    assert summary["samplers"]["learned_widths:tpe"].items() >= {
        "config": str(learned), "space": "graph/quantize/learned_widths", "sampler": "tpe"}.items()
    assert summary["samplers"]["mixed_precision_ptq:random"]["config"] == str(quant)
    assert max(s["final"]["max"] for s in summary["samplers"].values()) > 0
    curves = list(csv.DictReader((run / "curves.csv").open()))
    assert len(curves) == 3 * 2 * 3 and {r["sampler"] for r in curves} == set(names)
    # The learned space trains per trial: nothing tabled for it; the quantization points are kept.
    assert len(list(d.glob("truth_*.json"))) == 1

    # The same command reuses the run; an edited --with config is a new one.
    code, out2, err = compare(capsys, tmp_path, quant, ckpt, *args)
    assert code == 0 and f"reusing {run}" in out2, err
    learned.write_text(LEARNED + "# edited\n")
    code, out3, err = compare(capsys, tmp_path, quant, ckpt, *args)
    assert code == 0, err
    assert "reusing" not in out3 and (d / "version_1" / "summary.json").is_file()


def test_the_learned_space_alone_is_evaluated_afresh(tmp_path, capsys, ckpt):
    learned = write(tmp_path, "learned.toml", LEARNED)
    code, out, err = compare(capsys, tmp_path, learned, ckpt, "--samplers", "random,tpe", "--seeds", "1",
                             "--trials", "2")
    assert code == 0, err
    assert "space=ranges (continuous)" in out and "samplers=random,tpe " in out
    assert "learned_widths trains a model in every trial, so every trial is evaluated afresh" in out
    assert "(4 evaluations)" in out and rows(out) == ["random", "tpe"]
    summary = json.loads((tmp_path / "p" / "compare" / "latest" / "summary.json").read_text())
    assert list(summary["samplers"]) == ["random", "tpe"]
    assert not list((tmp_path / "p" / "compare").glob("truth_*.json"))


# --- bad input: one or two lines, exit 2, nothing written ----------------------------------------------------------

COMPARE = ["compare", "--config", "{cfg}", "--load", "{ckpt}", "--seeds", "1", "--trials", "2"]
WITH = [*COMPARE, "--with", "{tmp}/w.toml"]


def learned_with(old: str, new: str) -> str:
    assert LEARNED.count(old) == 1, old
    return LEARNED.replace(old, new)


LISTS = learned_with("beta = { low = 3e-6, high = 3e-4, log = true }", "beta = [1e-5, 1e-4]").replace(
    "learning_rate = { low = 2e-3, high = 2e-2, log = true }", "learning_rate = [1e-2]")

CASES = [
    Case("compare-with-other-metrics", WITH, toml=QUANT,
         files={"w.toml": learned_with("hw_runner.bops]", "hw_runner.average_bitwidth]").replace(
             "bops.direction", "average_bitwidth.direction")},
         match=r"--with .*w\.toml: not comparable with .*cfg\.toml: objective metrics differ: .*w\.toml has accuracy "
               r"\(maximize\), average_bitwidth \(minimize\); .*cfg\.toml has accuracy \(maximize\), bops \(minimize\)$"),
    Case("compare-with-other-direction", WITH, toml=QUANT,
         files={"w.toml": learned_with('bops.direction = "minimize"', 'bops.direction = "maximize"')},
         match=r"objective metrics differ: .*w\.toml has accuracy \(maximize\), bops \(maximize\);"),
    Case("compare-with-other-constraints", WITH, toml=QUANT,
         files={"w.toml": LEARNED + "\n[search.strategy.constraints]\naccuracy.min = 0.5\n"},
         match=r"constraints differ: .*w\.toml has accuracy >= 0\.5; .*cfg\.toml has none$"),
    Case("compare-with-other-model", ["compare", "--config", "{cfg}", "--with", "{tmp}/w.toml"], toml=QUANT,
         files={"w.toml": LEARNED.replace('model = "digits-mlp"', 'model = "jsc-tiny"')},
         match=r"not comparable with .*cfg\.toml: models differ: .*w\.toml has jsc-tiny; .*cfg\.toml has digits-mlp$"),
    Case("compare-with-other-weights", ["compare", "--config", "{cfg}", "--with", "{tmp}/w.toml"], toml=QUANT,
         files={"w.toml": lambda fx: f'load_name = "{fx.ckpt}"\n' + LEARNED},
         match=r"weights differ: .*w\.toml has [0-9a-f]{16}; .*cfg\.toml has [0-9a-f]{16}; load the same checkpoint"),
    Case("compare-with-single-objective-sampler", WITH, toml=QUANT,
         files={"w.toml": learned_with('sampler = "tpe"', 'sampler = "cmaes"')},
         match=r"--with .*w\.toml: sampler 'cmaes' optimizes one objective, but this search has 2"),
    Case("compare-with-missing-file", WITH, toml=QUANT,
         match=r"config file '.*w\.toml' does not exist; check --with$"),
    Case("compare-with-no-search", WITH, toml=QUANT, files={"w.toml": 'model = "digits-mlp"\n'},
         match=r"--with .*w\.toml: has no \[search\] table"),
    Case("compare-with-empty", [*COMPARE, "--with", ","], toml=QUANT,
         match=r"--with: give one or more search config files"),
    Case("compare-with-the-same-strategy-twice", [*COMPARE, "--samplers", "tpe", "--with", "{cfg}"], toml=QUANT,
         match=r"--with .*cfg\.toml: strategy mixed_precision_ptq:tpe is already compared \(from .*cfg\.toml\)"),
    Case("compare-with-exhaustive-learned", WITH, toml=QUANT,
         files={"w.toml": LISTS.replace('sampler = "tpe"', 'sampler = "brute-force"')},
         match=r"--with .*w\.toml: its sampler brute-force visits every point, but this space has no ground truth "
               r"\(space learned_widths trains a model in every trial\); compare tpe"),
    Case("compare-learned-exhaustive-samplers", [*COMPARE, "--samplers", "tpe,grid"], toml=LEARNED,
         match=r"--samplers grid visit every point, but this space has no ground truth \(space learned_widths "
               r"trains a model in every trial\)"),
    Case("compare-learned-rebuild-truth", [*COMPARE, "--rebuild-truth"], toml=LEARNED,
         match=r"--rebuild-truth: space learned_widths trains a model in every trial, so this search has no "
               r"ground-truth table to rebuild; drop --rebuild-truth$"),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, ckpt):
    fx = Fx(ckpt, tmp_path / "no.csv")
    argv = prepare(case, tmp_path, fx)
    before = tree(tmp_path, ckpt)
    code, out, err = cli(capsys, *argv)
    check(case, code, out, err)
    assert not (tmp_path / "out").exists()
    assert tree(tmp_path, ckpt) == before
