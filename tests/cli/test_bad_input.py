"""Bad input, one table: every user mistake ends in one or two stderr lines, exit 2, and nothing written.

Each row is a command line with placeholders, the files the case needs, the
expected exit status and a regular expression the first error line must
match. Placeholders: ``{out}`` the output directory the command must not create
(``--project-dir {out}`` is added to every command that does not name its own),
``{tmp}`` the case's scratch directory, ``{cfg}`` the case's TOML file
(``{tmp}/cfg.toml``), ``{ckpt}`` a digits-mlp checkpoint trained once per module,
``{csv}`` a JSC-layout CSV file (conftest's ``jsc_files``).

Every case runs in-process with the ``cli`` helper; the whole file takes well
under a minute on two cores. /tmp scripts may import ``CASES`` and
``prepare``/``check`` to run the same table outside pytest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.cli.test_cli import cli

# --- what the cases are built from ----------------------------------------------------------------

SEARCH = """\
model = "digits-mlp"
dataset = "digits"

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"

[search.search_space.setup]
by = "type"

[search.search_space.seed.default.config]
name = ["NA"]

[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
bias_width = [8]

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"

[search.strategy.hw_runner.average_bitwidth]
compare_to = 32

[search.strategy.setup]
n_trials = 2
sampler = "random"
sum_scaled_metrics = false

[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
average_bitwidth.scale = 1.0
average_bitwidth.direction = "minimize"
"""

METRICS = SEARCH[SEARCH.index("[search.strategy.metrics]"):]
LUTS = "compare_to = 32\n\n[search.strategy.hw_runner.luts]\n"  # the luts runner, after average_bitwidth

QUANTIZE = """\
model = "digits-mlp"
dataset = "digits"

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
name = "integer"
data_in_width = 8
weight_width = 8
bias_width = 8
"""

CHANNELS = """\
model = "digits-mlp"
dataset = "digits"

[passes.channel_multiply]
by = "name"
mode = "auto"
[passes.channel_multiply.default.config]
name = "NA"
[passes.channel_multiply.seq_blocks_0.config]
name = "output_only"
channel_multiplier = 2
"""

# A channel search on digits-mlp (64 -> 64 -> 32 -> 10) in which every point is inconsistent under
# mode = "strict": the first layer is widened, its consumer keeps expecting 64 inputs.
ALL_PRUNED = """\
model = "digits-mlp"
dataset = "digits"

[search.search_space]
name = "graph/channel_multiply/channel_multiplier"

[search.search_space.setup]
by = "name"
mode = "strict"

[search.search_space.seed.default.config]
name = ["NA"]

[search.search_space.seed.seq_blocks_0.config]
name = ["output_only"]
channel_multiplier = [2, 4]

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"

[search.strategy.hw_runner.params]

[search.strategy.setup]
n_trials = 10
sampler = "brute-force"
sum_scaled_metrics = false

[search.strategy.metrics]
accuracy.direction = "maximize"
params.direction = "minimize"
"""

# MASE-lenient: a by-name file whose seed also has a type-keyed table (``linear`` names no node).
LENIENT = """\
model = "digits-mlp"
dataset = "digits"

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"

[search.search_space.setup]
by = "name"

[search.search_space.seed.default.config]
name = ["NA"]

[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
bias_width = [8]

[search.search_space.seed.seq_blocks_0.config]
name = ["integer"]
data_in_width = [8]
weight_width = [4, 8]
bias_width = [8]

[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"

[search.strategy.hw_runner.average_bitwidth]
compare_to = 32

[search.strategy.setup]
n_trials = 2
sampler = "random"
sum_scaled_metrics = false

[search.strategy.metrics]
accuracy.direction = "maximize"
average_bitwidth.direction = "minimize"
"""


def edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once; ``old`` must be there, so a case cannot silently test nothing."""
    assert text.count(old) == 1, f"{old!r} not found once in the base config"
    return text.replace(old, new)


def search_with(old: str, new: str) -> str:
    return edit(SEARCH, old, new)


# The base search with the learned-widths space in place of the quantize space.
LEARNED = (SEARCH[:SEARCH.index("[search.search_space]")]
           + '[search.search_space]\nname = "graph/quantize/learned_widths"\n\n[search.search_space.hyper]\n'
           + "max_epochs = 1\n\n" + SEARCH[SEARCH.index("[search.strategy.sw_runner"):])


def learned_with(line: str) -> str:
    """The learned-widths search with one more line in [search.search_space.hyper]."""
    return edit(LEARNED, "max_epochs = 1\n", f"max_epochs = 1\n{line}\n" if not line.startswith("max_epochs")
                else f"{line}\n")


def setup_with(line: str) -> str:
    """The base search with one more (or an overriding) line in [search.strategy.setup]."""
    key = line.split("=")[0].strip()
    text = SEARCH
    for existing in ("n_trials = 2", 'sampler = "random"', "sum_scaled_metrics = false"):
        if existing.startswith(key + " "):
            return edit(text, existing, line)
    return edit(text, "[search.strategy.setup]\n", f"[search.strategy.setup]\n{line}\n")


def quantize_with(old: str, new: str) -> str:
    return edit(QUANTIZE, old, new)


@dataclass
class Fx:
    """What file builders may use: the trained checkpoint and the JSC CSV."""

    ckpt: Path
    csv: Path


def _csv_cell(fx: Fx, row: int, column: str, value: str) -> bytes:
    lines = fx.csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")  # line ``row`` of the file is data row ``row`` (line 0 is the header)
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


def _one_class(fx: Fx) -> bytes:
    lines = fx.csv.read_text().splitlines()
    return ("\n".join([lines[0], *(line.rsplit(",", 1)[0] + ",q" for line in lines[1:])]) + "\n").encode()


def _ckpt_naming(model: str) -> Callable[[Fx], bytes]:
    def build(fx: Fx) -> bytes:
        import io

        import torch

        blob = torch.load(fx.ckpt, weights_only=True)
        blob["bitsmith"]["model"] = model
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    return build


def _truncated(fx: Fx) -> bytes:
    data = fx.ckpt.read_bytes()
    return data[: len(data) // 2]


def _ckpt_poisoned(key: str, value: float) -> Callable[[Fx], bytes]:
    """The trained checkpoint with one weight set to ``value`` (NaN, inf), as a diverged run leaves it."""
    def build(fx: Fx) -> bytes:
        import io

        import torch

        blob = torch.load(fx.ckpt, weights_only=True)
        blob["state_dict"][key].view(-1)[0] = value
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    return build


@dataclass
class Case:
    id: str
    argv: list[str]
    code: int = 2
    match: str = ""  # re.search on the first stderr line that is not a warning
    toml: str | None = None  # written to {cfg}
    files: dict[str, Any] = field(default_factory=dict)  # name under {tmp} -> str, bytes or Fx -> bytes
    stdout_empty: bool = False  # nothing at all printed to stdout
    writes_outputs: bool = False  # a run that gets as far as writing its outputs (no "nothing written" check)
    match_stdout: str | None = None  # re.search on stdout, for cases that report there
    xfail: str | None = None  # the reason, while the owner fixes it

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


TRAIN = ["train", "digits-mlp", "digits", "--max-epochs", "1"]
JSC = ["train", "jsc-tiny", "jsc", "--max-epochs", "1"]
SEARCH_CMD = ["search", "--config", "{cfg}", "--load", "{ckpt}"]
TRANSFORM_CMD = ["transform", "--config", "{cfg}", "--load", "{ckpt}"]
TEST_LOAD = ["test", "--load"]

CASES: list[Case] = [
    # --- data files ---------------------------------------------------------------------------------
    Case("jsc-csv-non-numeric-cell", [*JSC, "--data-path", "{tmp}/bad.csv"],
         match=r"bad\.csv: row 3 \(line 4\), column 'mass_mmdt' holds 'abc', not a number",
         files={"bad.csv": lambda fx: _csv_cell(fx, 3, "mass_mmdt", "abc")}),
    Case("jsc-fake-h5", [*JSC, "--data-path", "{tmp}/fake.h5"],
         match=r"fake\.h5 is not an HDF5 file", files={"fake.h5": "zlogz,class\n1.0,g\n"}),
    Case("data-path-directory", [*JSC, "--data-path", "{tmp}"], match=r"is a directory, not a file"),
    Case("data-path-for-digits", [*TRAIN, "--data-path", "{csv}"],
         match=r"data set 'digits' reads no file; drop --data-path"),
    Case("jsc-one-class", [*JSC, "--data-path", "{tmp}/one.csv"],
         match=r"every row is of class 'q'.*at least two classes", files={"one.csv": _one_class}),
    Case("jsc-csv-empty-cell", [*JSC, "--data-path", "{tmp}/hole.csv"],
         match=r"hole\.csv: row 5 \(line 6\), column 'zlogz' holds nan, not a finite number",
         files={"hole.csv": lambda fx: _csv_cell(fx, 5, "zlogz", "")}),
    Case("jsc-csv-unknown-label", [*JSC, "--data-path", "{tmp}/label.csv"],
         match=r"label\.csv: row 7 \(line 8\), column 'class' holds 'x', not a JSC class label",
         files={"label.csv": lambda fx: _csv_cell(fx, 7, "class", "x")}),
    Case("jsc-csv-missing-columns", [*JSC, "--data-path", "{tmp}/cols.csv"],
         match=r"cols\.csv: missing JSC columns for the OpenML layout: zlogz, ", files={"cols.csv": "a,b\n1,2\n"}),
    Case("jsc-csv-empty-file", [*JSC, "--data-path", "{tmp}/empty.csv"],
         match=r"cannot read JSC file .*empty\.csv: EmptyDataError", files={"empty.csv": ""}),
    Case("jsc-fake-parquet", [*JSC, "--data-path", "{tmp}/fake.parquet"],
         match=r"cannot read JSC file .*fake\.parquet: ArrowInvalid", files={"fake.parquet": "not parquet\n"}),
    Case("jsc-unknown-suffix", [*JSC, "--data-path", "{tmp}/data.txt"],
         match=r"data\.txt: unknown file type \.txt; use \.csv, \.parquet or \.h5/\.z", files={"data.txt": "x\n"}),
    # --- training and flags ------------------------------------------------------------------------------
    Case("train-diverges", [*TRAIN, "--learning-rate", "1e30"], match=r"training diverged in epoch 1"),
    Case("seed-beyond-64-bits", [*TRAIN, "--seed", str(2**70)],
         match=rf"seed = {2**70} in the command line: expected a value <= 4294967295"),
    Case("seed-negative", [*TRAIN, "--seed", "-1"], match=r"seed = -1 in the command line: expected a value >= 0"),
    Case("learning-rate-nan", [*TRAIN, "--learning-rate", "nan"],
         match=r"learning_rate = nan in the command line: expected a finite number"),
    Case("learning-rate-inf", [*TRAIN, "--learning-rate", "inf"],
         match=r"learning_rate = inf in the command line: expected a finite number"),
    Case("max-steps-0", [*TRAIN, "--max-steps", "0"], match=r"max_steps = 0 in the command line: expected a value >= 1"),
    Case("batch-size-0", [*TRAIN, "--batch-size", "0"], match=r"batch_size = 0 in the command line: expected a value >= 1"),
    Case("val-size-0", [*TRAIN, "--val-size", "0"], match=r"val_size = 0\.0 in the command line: expected a value > 0"),
    Case("val-size-0.9", [*TRAIN, "--val-size", "0.9"],
         match=r"val_size = 0\.9 in the command line: expected a value < 0\.9"),
    Case("val-size-nan", [*TRAIN, "--val-size", "nan"],
         match=r"val_size = nan in the command line: expected a finite number"),
    Case("toml-val_size-string", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='val_size = "0.25"\n',
         match=r"val_size = '0\.25' in .*cfg\.toml: expected a number"),
    Case("toml-val_size-1", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml="val_size = 1\n",
         match=r"val_size = 1 in .*cfg\.toml: expected a value < 0\.9"),
    Case("search-val-size-beyond-checkpoints", [*SEARCH_CMD, "--val-size", "0.25"], toml=SEARCH,
         match=r"the checkpoint was trained with val_size = 0\.1: a validation split of 0\.25 holds rows it learned "
               r"from; train with --val-size 0\.25 first"),
    Case("toml-seed-beyond-64-bits", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml=f"seed = {2**70}\n",
         match=rf"seed = {2**70} in .*cfg\.toml: expected a value <= 4294967295"),
    Case("model-cnn-on-flat-data", ["train", "digits-cnn", "digits", "--max-epochs", "1"],
         match=r"model digits-cnn takes images \(C, H, W\).*use the data set digits-image"),
    Case("model-mlp-on-images", ["train", "jsc-tiny", "digits-image", "--max-epochs", "1"],
         match=r"model jsc-tiny takes flat feature rows, but the data set gives shape \(1, 8, 8\)"),
    Case("user-model-module-missing", ["train", "nosuchpkg.mod:build", "digits", "--max-epochs", "1"],
         match=r"cannot import model module 'nosuchpkg\.mod'"),
    Case("user-model-attr-missing", ["train", "os.path:nosuch", "digits", "--max-epochs", "1"],
         match=r"'os\.path' has no callable 'nosuch'"),
    Case("user-model-returns-non-module", ["train", "builtins:slice", "digits", "--max-epochs", "1"],
         match=r"model factory 'builtins:slice' returned slice, not a torch nn\.Module"),
    Case("user-model-not-a-factory", ["train", "os.path:join", "digits", "--max-epochs", "1"],
         match=r"model factory 'os\.path:join'"),
    Case("project-dir-under-file-train", [*TRAIN, "--project-dir", "{tmp}/blocker/sub"],
         match=r"blocker is a file, not a directory", files={"blocker": "a regular file\n"}),
    Case("project-dir-under-file-transform", [*TRANSFORM_CMD, "--project-dir", "{tmp}/blocker/sub"],
         match=r"blocker is a file, not a directory", toml=QUANTIZE, files={"blocker": "a regular file\n"}),
    Case("project-dir-under-file-search", [*SEARCH_CMD, "--project-dir", "{tmp}/blocker/sub"],
         match=r"blocker is a file, not a directory", toml=SEARCH, files={"blocker": "a regular file\n"}),
    # --- --config ----------------------------------------------------------------------------------------------
    Case("config-directory", [*TRAIN, "--config", "{tmp}"], match=r"config file .* is a directory"),
    Case("config-missing", [*TRAIN, "--config", "{tmp}/missing.toml"], match=r"config file .* does not exist"),
    Case("config-not-toml", [*TRAIN, "--config", "{tmp}/c.toml"], match=r"cannot parse .*c\.toml: .*line 1",
         files={"c.toml": "this is not toml\n"}),
    Case("config-not-utf8", [*TRAIN, "--config", "{tmp}/c.toml"], match=r"cannot parse .*c\.toml: not UTF-8",
         files={"c.toml": b'model = "digits-mlp"\n# caf\xe9\n'}),
    # --- --load ------------------------------------------------------------------------------------------------
    Case("load-directory", [*TEST_LOAD, "{tmp}"], match=r"checkpoint .* is a directory; pass a checkpoint file"),
    Case("load-missing", [*TEST_LOAD, "{tmp}/missing.ckpt"], match=r"checkpoint '.*missing\.ckpt' does not exist"),
    Case("load-text-file", [*TEST_LOAD, "{tmp}/notes.ckpt"], match=r"is not a checkpoint written by torch\.save",
         files={"notes.ckpt": "just some text\n"}),
    Case("load-truncated", [*TEST_LOAD, "{tmp}/cut.ckpt"], match=r"cut\.ckpt is damaged", files={"cut.ckpt": _truncated}),
    Case("load-other-model", ["test", "digits-cnn", "digits-image", "--load", "{ckpt}"],
         match=r"holds model 'digits-mlp', not 'digits-cnn'"),
    Case("load-meta-names-builtins-print", [*TEST_LOAD, "{tmp}/print.ckpt"], stdout_empty=True,
         match=r"names model 'builtins:print', which is not a registered model",
         files={"print.ckpt": _ckpt_naming("builtins:print")}),
    Case("load-meta-names-this", [*TEST_LOAD, "{tmp}/this.ckpt"], stdout_empty=True,
         match=r"names model 'this:x', which is not a registered model", files={"this.ckpt": _ckpt_naming("this:x")}),
    Case("load-empty-file", [*TEST_LOAD, "{tmp}/empty.ckpt"], match=r"empty\.ckpt is empty \(0 bytes\)",
         files={"empty.ckpt": b""}),
    Case("load-type-pt-on-pl-checkpoint", [*TEST_LOAD, "{ckpt}", "--load-type", "pt"],
         match=r"is not a bare state dict \(it has a 'state_dict' table\); load it with --load-type pl"),
    Case("load-checkpoint-of-other-dataset", ["test", "digits-mlp", "jsc", "--load", "{ckpt}", "--data-path", "{csv}"],
         match=r"data set 'digits'.*'jsc'|'jsc'.*data set 'digits'"),
    # --- top-level settings ------------------------------------------------------------------------------------
    Case("top-level-typo-max_epoch", ["train", "--config", "{cfg}"], toml="max_epoch = 1\n",
         match=r"unknown key 'max_epoch' in the top level .*did you mean 'max_epochs'"),
    Case("unknown-model", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='model = "digits-mpl"\n',
         match=r"unknown model 'digits-mpl'; did you mean 'digits-mlp'"),
    Case("unknown-dataset", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='dataset = "mnist"\n',
         match=r"unknown data set 'mnist'"),
    Case("load_type-mz", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='load_type = "mz"\n',
         match=r"^bitsmith: error: \S*cfg.toml: load_type = 'mz'.*cannot be read safely"),
    Case("task-translation", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='task = "translation"\n',
         match=r"task = 'translation' in .*: expected one of 'cls' or 'classification'"),
    Case("accelerator-tpu", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='accelerator = "tpu"\n',
         match=r"accelerator = 'tpu' in .*: expected one of"),
    Case("max_epochs-0", ["train", "--config", "{cfg}"], toml="max_epochs = 0\n",
         match=r"max_epochs = 0 in .*: expected a value >= 1"),
    Case("learning_rate-negative", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml="learning_rate = -1\n",
         match=r"learning_rate = -1(\.0)? in .*: expected a value > 0"),
    Case("batch_size-string", ["train", "--config", "{cfg}", "--max-epochs", "1"], toml='batch_size = "64"\n',
         match=r"batch_size = '64' in .*: expected an integer"),
    # --- [passes.*] --------------------------------------------------------------------------------------------
    Case("pass-unknown-quantise", TRANSFORM_CMD, toml=QUANTIZE.replace("passes.quantize", "passes.quantise"), match=r"unknown pass 'quantise'.*did you mean 'quantize'"),
    Case("quantize-by-kind", TRANSFORM_CMD, toml=quantize_with('by = "type"', 'by = "kind"'),
         match=r"\[passes\.quantize\] by = 'kind' in .*: expected one of 'type', 'name' or 'regex_name'"),
    Case("quantize-key-typo-weigth_width", TRANSFORM_CMD, toml=quantize_with("weight_width", "weigth_width"),
         match=r"unknown key 'weigth_width' in \[passes\.quantize\.linear\.config\].*did you mean 'weight_width'"),
    Case("quantize-weight_width-0", TRANSFORM_CMD, toml=quantize_with("weight_width = 8", "weight_width = 0"),
         match=r"\[passes\.quantize\.linear\.config\] weight_width = 0 in .*: expected a value >= 1"),
    Case("quantize-weight_width-33", TRANSFORM_CMD, toml=quantize_with("weight_width = 8", "weight_width = 33"),
         match=r"\[passes\.quantize\.linear\.config\] weight_width = 33 in .*: expected a value <= 32"),
    Case("quantize-name-minifloat", TRANSFORM_CMD, toml=quantize_with('name = "integer"', 'name = "minifloat"'),
         match=r"\[passes\.quantize\.linear\.config\] name = 'minifloat' in .*: expected one of 'integer'"),
    Case("quantize-bad-regex", TRANSFORM_CMD,
         toml=quantize_with('by = "type"', 'by = "regex_name"').replace("[passes.quantize.linear.config]",
                                                                      '[passes.quantize."seq_blocks_(".config]'),
         match=r"\[passes\.quantize\.seq_blocks_\(\]: not a valid regular expression"),
    Case("channel-multiplier-100000", TRANSFORM_CMD, toml=edit(CHANNELS, "channel_multiplier = 2",
                                                               "channel_multiplier = 100000"),
         match=r"\[passes\.channel_multiply\.seq_blocks_0\.config\] channel_multiplier = 100000 in .*: "
               r"expected a value <= 1024"),
    Case("channel-multiplier-1024-twice", TRANSFORM_CMD,
         toml=edit(CHANNELS, "channel_multiplier = 2", "channel_multiplier = 1024")
         + '[passes.channel_multiply.seq_blocks_2.config]\nname = "output_only"\nchannel_multiplier = 1024\n',
         match=r"passes\.channel_multiply: the widened model would have about [\d,]+ parameters, more than "
               r"bitsmith builds"),
    Case("quantize-frac-65", TRANSFORM_CMD, toml=quantize_with("weight_width = 8", "weight_width = 8\nweight_frac_width = 65"),
         match=r"\[passes\.quantize\.linear\.config\] weight_frac_width = 65 in .*: expected a value <= 64"),
    Case("transform-without-passes", TRANSFORM_CMD, toml='model = "digits-mlp"\n',
         match=r"transform needs at least one \[passes\.<name>\] table"),
    Case("channel-strict-inconsistent", TRANSFORM_CMD, toml=edit(CHANNELS, 'mode = "auto"', 'mode = "strict"'),
         match=r"node 'seq_blocks_2' expects 64 input features but its producer 'seq_blocks_0' gives 128"),
    Case("channel-both-without-factors", TRANSFORM_CMD,
         toml=edit(CHANNELS, 'name = "output_only"\nchannel_multiplier = 2', 'name = "both"'),
         match=r"\[passes\.channel_multiply\.seq_blocks_0\.config\] in .*: name = \"both\" needs channel_multiplier"),
    # --- [search]: space -----------------------------------------------------------------------------------------
    Case("search-space-unknown-name", SEARCH_CMD,
         toml=search_with('name = "graph/quantize/mixed_precision_ptq"', 'name = "graph/quantize/mixed_precision"'),
         match=r"unknown search space 'graph/quantize/mixed_precision'.*did you mean "
               r"'graph/quantize/mixed_precision_ptq'"),
    Case("search-seed-empty", SEARCH_CMD, toml=search_with(
        SEARCH[SEARCH.index("[search.search_space.seed.default.config]"):SEARCH.index("[search.strategy.sw_runner")],
        "[search.search_space.seed]\n\n"), match=r"\[search\.search_space\] seed in .*: expected at least 1 value"),
    Case("search-seed-choice-list-empty", SEARCH_CMD, toml=search_with("weight_width = [4, 8]", "weight_width = []"),
         match=r"\[search\.search_space\.seed\.linear\.config\] weight_width = \[\] in .*: expected at least 1 value"),
    Case("search-seed-5000-choices", SEARCH_CMD,
         toml=search_with("weight_width = [4, 8]", f"weight_width = [{', '.join(['8'] * 5000)}]"),
         match=r"\[search\.search_space\.seed\.linear\.config\] weight_width = .* expected at most 1024 values"),
    Case("search-joint-without-parts", SEARCH_CMD,
         toml=SEARCH[:SEARCH.index("[search.search_space]")] + '[search.search_space]\nname = "graph/joint"\n\n'
         + SEARCH[SEARCH.index("[search.strategy.sw_runner"):],
         match=r"\[search\.search_space\] in .*: name = \"graph/joint\" needs \[search\.search_space\.channel_multiply\]"),
    Case("search-seed-unknown-node-strict", [*SEARCH_CMD, "--strict"],
         toml=edit(LENIENT, "seed.linear.config", "seed.seq_blocks_9.config"),
         match=r"\[search\.search_space\.seed\.seq_blocks_9\] matches no node.*\(--strict makes this an error\)"),
    # --- export --------------------------------------------------------------------------------------------------
    Case("export-float-checkpoint", ["export", "--load", "{ckpt}", "--to", "qonnx", "--output", "{out}/m.onnx"],
         match=r"holds a float model \(no quantize pass\), so it has no fixed-point formats to export; quantize it "
               r"first"),
    Case("export-unknown-target", ["export", "--load", "{ckpt}", "--to", "vhdl", "--output", "{out}/m.vhd"],
         match=r"--to vhdl: export targets are hls4ml, qonnx"),
    Case("export-unknown-backend", ["export", "--load", "{ckpt}", "--to", "hls4ml", "--output-dir", "{out}",
                                    "--backend", "Quartus"],
         match=r"--backend Quartus: hls4ml backends bitsmith configures are Vitis, Vivado"),
    Case("export-unknown-io-type", ["export", "--load", "{ckpt}", "--to", "hls4ml", "--output-dir", "{out}",
                                    "--io-type", "io_serial"],
         match=r"--io-type io_serial: bitsmith's hls4ml export writes io_parallel, io_stream"),
    Case("export-unknown-strategy", ["export", "--load", "{ckpt}", "--to", "hls4ml", "--output-dir", "{out}",
                                     "--strategy", "dataflow"],
         match=r"--strategy dataflow: the hls4ml target takes --strategy latency or distributed_arithmetic"),
    Case("export-strategy-for-qonnx", ["export", "--load", "{ckpt}", "--to", "qonnx", "--output", "{out}/m.onnx",
                                       "--strategy", "distributed_arithmetic"],
         match=r"--strategy distributed_arithmetic: the hls4ml target takes --strategy"),
    Case("export-synth-not-yosys", ["export", "--load", "{ckpt}", "--to", "verilog", "--output-dir", "{out}",
                                    "--synth", "vivado"],
         match=r"--synth vivado: synthesis is for --to verilog, with --synth yosys"),
    Case("export-synth-for-hls4ml", ["export", "--load", "{ckpt}", "--to", "hls4ml", "--output-dir", "{out}",
                                     "--synth", "yosys"],
         match=r"--synth yosys: synthesis is for --to verilog, with --synth yosys"),
    Case("export-unknown-simulator", ["export", "--load", "{ckpt}", "--to", "verilog", "--output-dir", "{out}",
                                      "--verify", "--simulator", "modelsim"],
         match=r"--simulator modelsim: the verilog target simulates with auto, icarus, verilator"),
    Case("export-verilog-to-a-file", ["export", "--load", "{ckpt}", "--to", "verilog", "--output", "{out}/m.v"],
         match=r"export --to verilog needs --output-dir DIR \(--output is for the other target\)"),
    Case("export-verilog-float-checkpoint", ["export", "--load", "{ckpt}", "--to", "verilog", "--output-dir",
                                             "{out}"],
         match=r"holds a float model \(no quantize pass\)"),
    Case("export-output-dir-is-a-file", ["export", "--load", "{ckpt}", "--to", "hls4ml", "--output-dir",
                                         "{tmp}/blocker"], files={"blocker": "a file"},
         match=r"--output-dir .*blocker is a file; give a directory for the hls4ml project"),
    Case("export-output-under-a-file", ["export", "--load", "{ckpt}", "--to", "qonnx", "--output",
                                        "{tmp}/blocker/m.onnx"], files={"blocker": "a file"},
         match=r"cannot write .*blocker/m\.onnx: .*blocker is a file, not a directory"),
    Case("export-output-is-a-directory", ["export", "--load", "{ckpt}", "--to", "qonnx", "--output", "{tmp}"],
         match=r"--output .* is a directory; give a file name such as .*model\.onnx"),
    Case("export-qonnx-without-output", ["export", "--load", "{ckpt}", "--to", "qonnx", "--output-dir", "{out}"],
         match=r"export --to qonnx needs --output model\.onnx \(--output-dir is for the other target\)"),
    Case("export-without-checkpoint", ["export", "digits-mlp", "digits", "--to", "qonnx", "--output", "{out}/m.onnx"],
         match=r"export needs a checkpoint: pass --load CKPT"),
    Case("search-export-unknown-target", [*SEARCH_CMD, "--export", "vhdl"], toml=SEARCH,
         match=r"--export vhdl: export targets are hls4ml, qonnx"),
    # --- [search]: strategy ----------------------------------------------------------------------------------------
    Case("search-n_trials-0", SEARCH_CMD, toml=setup_with("n_trials = 0"),
         match=r"\[search\.strategy\.setup\] n_trials = 0 in .*: expected a value >= 1"),
    Case("search-flag-n-trials-0", [*SEARCH_CMD, "--n-trials", "0"], toml=SEARCH,
         match=r"(n_trials = 0 in the command line|--n-trials 0\b).*expected a value >= 1"),
    Case("search-flag-sampler-unknown", [*SEARCH_CMD, "--sampler", "annealing"], toml=SEARCH,
         match=r"(sampler = 'annealing' in the command line|--sampler annealing\b).*expected a sampler name"),
    Case("search-timeout-0", SEARCH_CMD, toml=setup_with("timeout = 0"),
         match=r"\[search\.strategy\.setup\] timeout = 0 in .*: expected a value > 0"),
    # --- learned widths ([search.search_space] name = "graph/quantize/learned_widths") ---------------------------
    Case("learned-beta-range-reversed", SEARCH_CMD, toml=learned_with("beta = { low = 1e-3, high = 1e-6, log = true }"),
         match=r"\[search\.search_space\.hyper\.beta.*low = 0\.001 is above high = 1e-06"),
    Case("learned-granularity-unknown", SEARCH_CMD, toml=learned_with('granularity = ["pixel"]'),
         match=r"granularity.*'pixel'.*expected one of 'layer', 'channel' or 'weight'"),
    Case("learned-range-quantile-low", SEARCH_CMD, toml=learned_with("range_quantile = [0.2]"),
         match=r"range_quantile.*0\.2.*expected a value >= 0\.5"),
    Case("learned-epochs-0", SEARCH_CMD, toml=learned_with("max_epochs = 0"),
         match=r"max_epochs.*0.*expected a value >= 1"),
    Case("learned-unknown-key", SEARCH_CMD, toml=learned_with("betta = [1e-5]"),
         match=r"unknown key 'betta' in \[search\.search_space\.hyper\].*did you mean 'beta'"),
    Case("learned-log-range-from-0", SEARCH_CMD, toml=learned_with("beta = { low = 0, high = 1e-3, log = true }"),
         match=r"a log range needs low > 0"),
    Case("learned-distill-above-1", SEARCH_CMD, toml=learned_with("distill = [0.0, 1.5]"),
         match=r"distill.*1\.5.*expected a value <= 1"),
    Case("learned-temperature-0", SEARCH_CMD,
         toml=edit(LEARNED, "[search.search_space.hyper]\n",
                   "[search.search_space.setup]\ntemperature = 0\n\n[search.search_space.hyper]\n"),
         match=r"temperature = 0.*expected a value > 0"),
    Case("learned-repeats-0", SEARCH_CMD,
         toml=edit(LEARNED, "[search.search_space.hyper]\n",
                   "[search.search_space.setup]\nrepeats = 0\n\n[search.search_space.hyper]\n"),
         match=r"repeats = 0.*expected a value >= 1"),
    Case("learned-grid-with-ranges", [*SEARCH_CMD, "--sampler", "grid"], toml=learned_with(""),
         match=r"sampler 'grid' visits every point, and \[search\.search_space\.hyper\] has ranges"),
    # --- [search.strategy.hw_runner.luts] -------------------------------------------------------------------------
    Case("search-luts-timeout-0", SEARCH_CMD, toml=search_with("compare_to = 32\n", LUTS + "timeout_s = 0\n"),
         match=r"\[search\.strategy\.hw_runner\.luts\] timeout_s = 0 in .*: expected a value > 0"),
    Case("search-luts-hard-dc-text", SEARCH_CMD, toml=search_with("compare_to = 32\n", LUTS + 'hard_dc = "two"\n'),
         match=r"\[search\.strategy\.hw_runner\.luts\] hard_dc = 'two' in .*: expected an integer"),
    Case("search-luts-unknown-key", SEARCH_CMD, toml=search_with("compare_to = 32\n", LUTS + "adder_size = 2\n"),
         match=r"unknown key 'adder_size' in \[search\.strategy\.hw_runner\.luts\].*allowed keys: hard_dc"),
    # The cap stops the search (a design that cannot be costed in time is the user's to fix, not to prune).
    Case("search-luts-time-cap", SEARCH_CMD,
         toml=search_with("compare_to = 32\n", LUTS + "timeout_s = 0.0001\ncache = false\n"),
         match=r"layer 'seq_blocks_0': the solver did not finish within 0\.0001 s; raise timeout_s in its table",
         writes_outputs=True),
    Case("search-n_jobs-0", SEARCH_CMD, toml=setup_with("n_jobs = 0"),
         match=r"\[search\.strategy\.setup\] n_jobs = 0 in .*: expected a value >= 1"),
    Case("search-num_threads-0", SEARCH_CMD, toml=setup_with("num_threads = 0"),
         match=r"\[search\.strategy\.setup\] num_threads = 0 in .*: expected a value >= 1"),
    Case("search-num_threads-huge", SEARCH_CMD, toml=setup_with("num_threads = 100000"),
         match=r"\[search\.strategy\.setup\] num_threads = 100000 in .*: expected a value <= 1024"),
    Case("search-num_threads-string", SEARCH_CMD, toml=setup_with('num_threads = "2"'),
         match=r"\[search\.strategy\.setup\] num_threads = '2' in .*: expected an integer"),
    Case("search-latency-max_time_ms-0", SEARCH_CMD,
         toml=SEARCH + "\n[search.strategy.sw_runner.latency]\nmax_time_ms = 0\n",
         match=r"\[search\.strategy\.sw_runner\.latency\] max_time_ms = 0 in .*: expected a value > 0"),
    Case("search-direction-up", SEARCH_CMD, toml=setup_with('direction = "up"'),
         match=r"\[search\.strategy\.setup\] direction = 'up' in .*: expected one of 'maximize' or 'minimize'"),
    Case("search-sum_scaled_metrics-string", SEARCH_CMD, toml=setup_with('sum_scaled_metrics = "false"'),
         match=r"\[search\.strategy\.setup\] sum_scaled_metrics = 'false' in .*: expected true or false"),
    Case("search-sampler-integer", SEARCH_CMD, toml=setup_with("sampler = 3"),
         match=r"\[search\.strategy\.setup\] sampler = 3 in .*: expected a string"),
    Case("search-cmaes-two-objectives", SEARCH_CMD, toml=setup_with('sampler = "cmaes"'),
         match=r"sampler 'cmaes' optimizes one objective, but this search has 2"),
    Case("search-latency-repeats-0", SEARCH_CMD, toml=SEARCH + "\n[search.strategy.sw_runner.latency]\nrepeats = 0\n",
         match=r"\[search\.strategy\.sw_runner\.latency\] repeats = 0 in .*: expected a value >= 1"),
    Case("search-evaluation-batch_size-0", SEARCH_CMD,
         toml=search_with('data_loader = "val_dataloader"\n', 'data_loader = "val_dataloader"\nbatch_size = 0\n'),
         match=r"\[search\.strategy\.sw_runner\.basic_evaluation\] batch_size = 0 in .*: expected a value >= 1"),
    Case("search-evaluation-test_dataloader", SEARCH_CMD,
         toml=search_with('data_loader = "val_dataloader"', 'data_loader = "test_dataloader"'),
         match=r"data_loader = 'test_dataloader' in .*: expected \"val_dataloader\": scoring on the test split"),
    Case("search-evaluation-train_dataloader", SEARCH_CMD,
         toml=search_with('data_loader = "val_dataloader"', 'data_loader = "train_dataloader"'),
         match=r"data_loader = 'train_dataloader' in .*: expected \"val_dataloader\": candidates must be scored"),
    Case("search-runner-unknown", SEARCH_CMD,
         toml=search_with("[search.strategy.hw_runner.average_bitwidth]", "[search.strategy.hw_runner.average_bitwdth]"),
         match=r"unknown hardware runner 'average_bitwdth'.*did you mean 'average_bitwidth'"),
    Case("search-metrics-empty", SEARCH_CMD, toml=search_with(METRICS, "[search.strategy.metrics]\n"),
         match=r"\[search\.strategy\] metrics in .*: expected at least 1 value"),
    Case("search-metric-no-runner", SEARCH_CMD, toml=SEARCH + "latency.direction = \"minimize\"\n",
         match=r"metric 'latency' in .* is produced by no runner.*add \[search\.strategy\.sw_runner\.latency\]"),
    Case("search-metric-scale-0", SEARCH_CMD, toml=search_with("accuracy.scale = 1.0", "accuracy.scale = 0"),
         match=r"\[search\.strategy\.metrics\.accuracy\] scale = 0 in .*: expected a non-zero number"),
    Case("search-metric-scale-nan", SEARCH_CMD, toml=search_with("accuracy.scale = 1.0", "accuracy.scale = nan"),
         match=r"\[search\.strategy\.metrics\.accuracy\] scale = nan in .*: expected a finite number"),
    Case("search-metric-scale-inf", SEARCH_CMD, toml=search_with("accuracy.scale = 1.0", "accuracy.scale = inf"),
         match=r"\[search\.strategy\.metrics\.accuracy\] scale = inf in .*: expected a finite number"),
    Case("search-constraint-min-above-max", SEARCH_CMD,
         toml=SEARCH + "\n[search.strategy.constraints]\naccuracy.min = 0.9\naccuracy.max = 0.5\n",
         match=r"\[search\.strategy\.constraints\.accuracy\] in .*: min = 0\.9 is above max = 0\.5"),
    Case("search-constraint-no-bounds", SEARCH_CMD, toml=SEARCH + "\n[search.strategy.constraints.accuracy]\n",
         match=r"\[search\.strategy\.constraints\.accuracy\] in .*: a constraint needs min and/or max"),
    Case("search-setup-seed-negative", SEARCH_CMD, toml=setup_with("seed = -1"),
         match=r"\[search\.strategy\.setup\] seed = -1 in .*: expected a value >= 0"),
    Case("search-n_trials-float", SEARCH_CMD, toml=setup_with("n_trials = 1e3"),
         match=r"\[search\.strategy\.setup\] n_trials = 1000\.0 in .*: expected an integer"),
    Case("search-runner-in-wrong-table", SEARCH_CMD,
         toml=search_with("[search.strategy.hw_runner.average_bitwidth]", "[search.strategy.sw_runner.average_bitwidth]"),
         match=r"average_bitwidth is a hardware runner; move it to \[search\.strategy\.hw_runner\.average_bitwidth\]"),
    # --- storage ---------------------------------------------------------------------------------------------------
    Case("search-storage-redis", [*SEARCH_CMD, "--storage", "redis://x"], toml=SEARCH,
         match=r"storage 'redis://x' is not a storage bitsmith can open"),
    Case("search-storage-not-a-journal", [*SEARCH_CMD, "--storage", "{tmp}/study.journal"], toml=SEARCH,
         match=r"study\.journal is not an Optuna journal file", files={"study.journal": "precious notes\n"}),
    Case("search-storage-directory", [*SEARCH_CMD, "--storage", "{tmp}/dir.journal"], toml=SEARCH,
         match=r"cannot open the journal file .*dir\.journal: .*Is a directory", files={"dir.journal/keep": "x\n"}),
    Case("search-storage-sqlite-missing-dir", [*SEARCH_CMD, "--storage", "sqlite:///{tmp}/nodir/x.db"], toml=SEARCH,
         match=r"storage sqlite:///.*nodir/x\.db: the directory .*nodir does not exist; create it"),
    # --- a search whose every point is pruned: status 1, the reasons counted (its outputs are written) -----------
    Case("search-every-point-pruned", SEARCH_CMD, code=1, toml=ALL_PRUNED, writes_outputs=True,
         match_stdout=r"no trial completed: 2 pruned, for these reasons:\n  1 x channel_multiply: node 'seq_blocks_2' "
                      r"expects 64 input features but its producer 'seq_blocks_0' gives (128|256)"),
    # --- non-finite weights: a diverged run's checkpoint is refused on load, by every command ----------------------
    Case("load-nan-weights", [*TEST_LOAD, "{tmp}/nan.ckpt"], stdout_empty=True,
         match=r"nan\.ckpt holds non-finite weights \(1 of 6 tensors: 'model\.seq_blocks\.0\.weight' \(NaN\)\); it "
               r"was most likely saved from a diverged run: train again with a lower --learning-rate / "
               r"learning_rate, or load another checkpoint$",
         files={"nan.ckpt": _ckpt_poisoned("model.seq_blocks.0.weight", float("nan"))}),
    Case("transform-load-inf-weights", ["transform", "--config", "{cfg}", "--load", "{tmp}/inf.ckpt"], toml=QUANTIZE,
         match=r"inf\.ckpt holds non-finite weights \(1 of 6 tensors: 'model\.seq_blocks\.4\.bias' \(inf\)\)",
         files={"inf.ckpt": _ckpt_poisoned("model.seq_blocks.4.bias", float("-inf"))}),
    Case("search-load-nan-weights", ["search", "--config", "{cfg}", "--load", "{tmp}/nan.ckpt"], toml=SEARCH,
         match=r"nan\.ckpt holds non-finite weights \(1 of 6 tensors: 'model\.seq_blocks\.2\.weight' \(NaN\)\)",
         files={"nan.ckpt": _ckpt_poisoned("model.seq_blocks.2.weight", float("nan"))}),
    Case("export-load-nan-weights", ["export", "--load", "{tmp}/nan.ckpt", "--to", "qonnx", "--output", "{out}/m.onnx"],
         match=r"nan\.ckpt holds non-finite weights \(1 of 6 tensors: 'model\.seq_blocks\.0\.bias' \(NaN\)\)",
         files={"nan.ckpt": _ckpt_poisoned("model.seq_blocks.0.bias", float("nan"))}),
    # --- compare: the ground-truth table (a damaged table's name depends on the run: tests/cli/test_compare.py) --
    Case("compare-rebuild-truth-training-runner", ["compare", "--config", "{cfg}", "--load", "{ckpt}",
                                                   "--rebuild-truth"],
         toml=search_with("[search.strategy.hw_runner.average_bitwidth]",
                          "[search.strategy.sw_runner.basic_train]\nmax_steps = 1\n\n"
                          "[search.strategy.hw_runner.average_bitwidth]"),
         match=r"--rebuild-truth: runner basic_train depends on training, so this search has no ground-truth table "
               r"to rebuild; drop --rebuild-truth"),
    Case("compare-output-is-a-file", ["compare", "--config", "{cfg}", "--load", "{ckpt}", "--project-dir",
                                      "{tmp}/proj", "--project", "p"], toml=SEARCH,
         files={"proj/p/compare": "my notes\n"},
         match=r"cannot write outputs to .*/proj/p/compare: .*/proj/p/compare is a file, not a directory"),
]

# --- your own data: the table data set (--data-path FILE --label-column NAME) ---------------------------------------
# A small valid table: 60 rows, features a and b, two classes; each case breaks one thing.
TABLE_ROWS = "a,b,label\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(60))


def _table(path: str = "{tmp}/t.csv", label: str | None = "label") -> list[str]:
    return ["train", "digits-mlp", "table", "--max-epochs", "1", "--data-path", path,
            *(["--label-column", label] if label is not None else [])]


def _npz(arrays: Callable[[Any], dict]) -> Callable[[Fx], bytes]:
    """An NPZ file of ``arrays(numpy)``, as numpy.savez writes it."""

    def build(fx: Fx) -> bytes:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **arrays(np))
        return buf.getvalue()

    return build


CASES += [
    Case("table-without-data-path", ["train", "digits-mlp", "table", "--max-epochs", "1", "--label-column", "label"],
         match=r"data set 'table' reads your own file \(\.csv, \.parquet or \.npz\): give --data-path FILE "
               r"--label-column NAME"),
    Case("table-file-missing", _table(), match=r"data file '.*t\.csv' does not exist; check --data-path / data_path"),
    Case("table-data-path-directory", _table("{tmp}"), match=r"data file '.*' is a directory, not a file"),
    Case("table-without-label-column", _table(label=None), files={"t.csv": TABLE_ROWS},
         match=r"data set 'table' needs the name of the label column: add --label-column NAME .*t\.csv's columns: "
               r"a, b, label$"),
    Case("table-label-column-typo", _table(label="lable"), files={"t.csv": TABLE_ROWS},
         match=r"t\.csv has no column 'lable'; did you mean 'label'\? its columns: a, b, label; set --label-column"),
    Case("table-label-column-empty", _table(label=""), files={"t.csv": TABLE_ROWS},
         match=r"label_column = '' in the command line"),
    Case("table-semicolon-separated", _table(), files={"t.csv": TABLE_ROWS.replace(",", ";")},
         match=r"t\.csv has no column 'label'; is it separated by something other than commas\?"),
    Case("label-column-for-jsc", ["train", "jsc-tiny", "jsc", "--max-epochs", "1", "--data-path", "{csv}",
                                  "--label-column", "class"],
         match=r"data set 'jsc' has its own labels; drop --label-column / label_column \(data sets that take one: "
               r"table\)"),
    Case("table-one-class", _table(), files={"t.csv": TABLE_ROWS.replace(",y\n", ",x\n")},
         match=r"t\.csv: the label column 'label' holds one class only \('x'\); a classifier needs at least two"),
    Case("table-non-numeric-feature", _table(), files={"t.csv": edit(TABLE_ROWS, "\n3,3,y\n", "\n3,oops,y\n")},
         match=r"t\.csv: row 4 \(line 5\), column 'b' holds 'oops', not a number; .*encode 'b' as numbers or drop it"),
    Case("table-empty-feature-cell", _table(), files={"t.csv": edit(TABLE_ROWS, "\n3,3,y\n", "\n3,,y\n")},
         match=r"t\.csv: row 4 \(line 5\), column 'b' holds nan, not a finite number"),
    Case("table-float-label", _table(),
         files={"t.csv": "a,b,label\n" + "".join(f"{i},{i % 7},{i / 7:.3f}\n" for i in range(60))},
         match=r"t\.csv: row 2 \(line 3\), label column 'label' holds 0\.143, not a whole number: .*convert the "
               r"column .*regression"),
    Case("table-empty-label-cell", _table(), files={"t.csv": edit(TABLE_ROWS, "\n3,3,y\n", "\n3,3,\n")},
         match=r"t\.csv: row 4 \(line 5\): the label column 'label' is empty"),
    Case("table-label-is-an-id", _table(),
         files={"t.csv": "a,b,label\n" + "".join(f"{i},{i % 7},{i}\n" for i in range(60))},
         match=r"the label column 'label' holds 60 distinct values in 60 rows, .*an ID or a quantity to predict"),
    Case("table-empty-file", _table(), files={"t.csv": ""}, match=r"data file '.*t\.csv' is empty \(0 bytes\)"),
    Case("table-header-only", _table(), files={"t.csv": "a,b,label\n"}, match=r"t\.csv has a header but no rows"),
    Case("table-only-label-column", _table(), files={"t.csv": "label\nx\ny\nx\ny\n"},
         match=r"t\.csv has only the label column 'label'"),
    Case("table-unnamed-index-column", _table(), files={"t.csv": "," + TABLE_ROWS.replace("\n", "\n0,")[:-2]},
         match=r"t\.csv: column 1 has no name in the header line .*index=False"),
    Case("table-not-utf8", _table(), files={"t.csv": b"a,b,label\n1,2,caf\xe9\n"},
         match=r"t\.csv is not UTF-8 text .*save it as UTF-8"),
    Case("table-unknown-suffix", _table("{tmp}/t.xlsx"), files={"t.xlsx": "PK"},
         match=r"t\.xlsx: unknown file type \.xlsx; give the data set as \.csv, \.parquet or \.npz"),
    Case("table-fake-parquet", _table("{tmp}/t.parquet"), files={"t.parquet": TABLE_ROWS},
         match=r"cannot read .*t\.parquet as Parquet: ArrowInvalid: .*check that it is a Parquet file"),
    Case("table-fake-npz", _table("{tmp}/t.npz"), files={"t.npz": TABLE_ROWS},
         match=r"t\.npz is not an NPZ file \(not a zip archive"),
    Case("table-npz-object-array", _table("{tmp}/t.npz"),
         files={"t.npz": _npz(lambda np: {"x": np.zeros((60, 2)), "label": np.array(["a", "b"] * 30, dtype=object)})},
         match=r"t\.npz: array 'label' holds Python objects \(dtype=object\)"),
    Case("table-npz-one-hot-label", _table("{tmp}/t.npz"),
         files={"t.npz": _npz(lambda np: {"x": np.zeros((60, 2)), "label": np.eye(2)[np.arange(60) % 2]})},
         match=r"t\.npz: the label array 'label' has shape \(60, 2\); .*y\.argmax\(axis=1\)"),
    Case("table-npz-rows-differ", _table("{tmp}/t.npz"),
         files={"t.npz": _npz(lambda np: {"x": np.zeros((60, 2)), "label": np.arange(59) % 2})},
         match=r"t\.npz: arrays have different numbers of rows \(x: 60, label: 59\)"),
]


# --- running a case -------------------------------------------------------------------------------------------


def prepare(case: Case, tmp: Path, fx: Fx) -> list[str]:
    """Write the case's files under ``tmp``; its argv with the placeholders filled."""
    if case.toml is not None:
        (tmp / "cfg.toml").write_text(case.toml)
    for name, content in case.files.items():
        content = content(fx) if callable(content) else content
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    values = {"out": tmp / "out", "tmp": tmp, "cfg": tmp / "cfg.toml", "ckpt": fx.ckpt, "csv": fx.csv}
    argv = [a.format(**values) for a in case.argv]
    if "--project-dir" not in argv:
        argv += ["--project-dir", str(tmp / "out")]
    return argv


def tree(*roots: Path) -> dict[str, bytes]:
    """Every file under ``roots`` with its bytes (a directory as b"<dir>")."""
    found = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
            found[str(p)] = b"<dir>" if p.is_dir() else p.read_bytes()
    return found


# "One or two lines" means lines a person reads: a message that dumps a whole input is refused.
MAX_LINE = 500


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]


def check(case: Case, code: int, out: str, err: str) -> None:
    """What the project promises for every bad input."""
    assert "Traceback" not in err, err
    assert code == case.code, (code, err)
    lines = error_lines(err)
    assert len(lines) <= 2, err
    assert all(len(line) <= MAX_LINE for line in lines), f"an error line of {max(map(len, lines))} characters"
    if case.code == 2:
        assert lines and lines[0].startswith("bitsmith: error: "), err
        assert re.search(case.match, lines[0]), (case.match, lines[0])
    if case.match_stdout:
        assert re.search(case.match_stdout, out), out
    if case.stdout_empty:
        assert out == "", out


@pytest.fixture(scope="module")
def fx(tmp_path_factory, jsc_files) -> Fx:
    """One tiny digits-mlp checkpoint for the whole module (one epoch)."""
    from bitsmith.cli import main

    d = tmp_path_factory.mktemp("bad-input-ckpt")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "digits-mlp", "digits", "--max-epochs", "1", "--project-dir", str(d)])
    assert exit_.value.code == 0
    return Fx(d / "digits-mlp_digits" / "checkpoints" / "best.ckpt", jsc_files["csv"])


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys, fx):
    argv = prepare(case, tmp_path, fx)
    before = tree(tmp_path, fx.ckpt, fx.csv)
    code, out, err = cli(capsys, *argv)
    check(case, code, out, err)
    if case.writes_outputs:
        assert tree(fx.ckpt, fx.csv) == {k: before[k] for k in (str(fx.ckpt), str(fx.csv))}
    else:
        assert not (tmp_path / "out").exists()
        # Nothing created and nothing changed: the case's own files (a --storage file that is not a
        # journal, a blocking file, a damaged checkpoint) keep their bytes, as do the shared inputs.
        assert tree(tmp_path, fx.ckpt, fx.csv) == before


def test_table_is_big_enough():
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)


def test_mase_lenient_type_table_in_by_name_file_only_warns(tmp_path, capsys, fx):
    cfg = tmp_path / "lenient.toml"
    cfg.write_text(LENIENT)
    argv = ["search", "--config", str(cfg), "--load", str(fx.ckpt)]
    code, out, err = cli(capsys, *argv, "--project-dir", str(tmp_path / "out"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "[search.search_space.seed.linear]" in warnings[0], err
    assert not error_lines(err), err
    assert "Best trial(s):" in out
    code, out, err = cli(capsys, *argv, "--strict", "--project-dir", str(tmp_path / "strict"))
    assert code == 2 and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) <= 2 and lines[0].startswith("bitsmith: error: ")
    assert "[search.search_space.seed.linear]" in lines[0] and "--strict" in lines[0]
    assert not (tmp_path / "strict").exists()
