"""The luts metric from the command line: transform's per-layer table, a search scored in LUTs, its report."""

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TRANSFORM = """\
model = "digits-mlp"
dataset = "digits"

[passes.quantize]
by = "type"
[passes.quantize.default.config]
name = "NA"
[passes.quantize.linear.config]
name = "integer"
data_in_width = 6
weight_width = 4
bias_width = 8
[passes.quantize.relu.config]
name = "integer"
data_in_width = 6

[passes.luts]
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("train-luts")
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(out)])
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def test_transform_prints_and_records_the_per_layer_luts(tmp_path, capsys, ckpt):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TRANSFORM)
    code, out, err = cli(capsys, "transform", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "LUTs from the weights (da4ml)" in out
    table = out[out.index("LUTs from the weights"):]
    assert all(f"seq_blocks_{i} " in table for i in (0, 2, 4)) and "s<4,2>" in table and "u<5,2>" in table
    assert max(len(line) for line in table.splitlines()[:8]) <= 80
    info = json.loads((tmp_path / "digits-mlp_digits" / "transform" / "latest" / "transform.json").read_text())
    luts = info["pass_info"]["luts"]
    assert [r["layer"] for r in luts["layers"]] == ["seq_blocks_0", "seq_blocks_2", "seq_blocks_4"]
    assert luts["luts"] == sum(r["luts"] for r in luts["layers"]) > 0
    assert f"luts={luts['luts']:,.0f} adder_depth={luts['adder_depth']:g}" in out


def test_transform_of_a_design_with_a_float_layer_warns_and_goes_on(tmp_path, capsys, ckpt):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TRANSFORM.replace('[passes.quantize.linear.config]\nname = "integer"',
                                     '[passes.quantize.linear.config]\nname = "NA"'))
    code, out, err = cli(capsys, "transform", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "warning: no LUT figures: layer 'seq_blocks_0' is not quantized" in err
    assert "LUTs from the weights" not in out


def test_a_search_scored_in_luts_and_its_report(tmp_path, capsys, ckpt):
    text = (CONFIGS / "search_digits_luts.toml").read_text().replace("n_trials = 300", "n_trials = 12")
    cfg = tmp_path / "s.toml"
    cfg.write_text(text)
    args = ["--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path)]
    code, out, err = cli(capsys, "search", *args, "--export", "verilog")
    assert code == 0, err
    assert "Per-layer LUTs of the best designs" in out
    assert "Pareto fronts, accuracy vs luts and vs bops, over the same" in out
    study = next((tmp_path / "digits-mlp_digits" / "search").glob("*-s"))
    best = json.loads((study / "best.json").read_text())
    assert set(best["fronts"]["front"]) == {"luts", "bops"} and best["fronts"]["designs"] >= len(best["best"])
    for entry in best["best"]:
        rtl = json.loads((Path(entry["checkpoint"]).parent / "verilog" / "bitsmith_verilog.json").read_text())
        assert [s["da4ml_cost"] for s in rtl["steps"] if s["kind"] == "linear"] == [
            r["kernel_luts"] for r in entry["luts_layers"]]  # the RTL is the solution the search costed
        hw = entry["hardware_metrics"]
        assert hw["luts"] == entry["values"][1] == sum(r["luts"] for r in entry["luts_layers"])
        assert hw["adder_depth"] > 0 and hw["latency_cycles"] >= 3 and hw["bops"] > 0
    code, again, err = cli(capsys, "report", *args)
    assert code == 0, err
    shown = lambda text: text[text.index("Per-layer LUTs"):].split("export: ")[0]  # noqa: E731 - before --export
    assert shown(again) == shown(out)


@pytest.fixture(scope="module")
def quantized_ckpt(tmp_path_factory, ckpt):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("transform-luts")
    cfg = out / "t.toml"
    cfg.write_text(TRANSFORM.replace("data_in_width = 6\nweight_width = 4",
                                     "data_in_width = 4\nweight_width = 2\nweight_frac_width = 2"))
    with pytest.raises(SystemExit) as e:
        main(["transform", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(out)])
    assert e.value.code == 0
    return out / "digits-mlp_digits" / "transform" / "latest" / "transformed.ckpt"


@pytest.mark.slow  # about 25 s: yosys on a 4.6k-LUT design, Icarus on 360 rows
def test_export_to_verilog_is_bit_exact_and_yosys_counts_luts_per_layer(tmp_path, capsys, quantized_ckpt):
    code, out, err = cli(capsys, "export", "--load", str(quantized_ckpt), "--to", "verilog", "--output-dir",
                         str(tmp_path / "rtl"), "--verify", "--synth", "yosys", "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "max |diff| of the outputs: 0; predictions agree on 100.00% of 360 rows (bit-exact)" in out
    table = out[out.index("LUTs per layer"):out.index("CARRY4 in all")]
    rows = [line for line in table.splitlines() if "seq_blocks_" in line]
    assert len(rows) == 3
    for row in rows:  # every layer mapped to real logic, within a third of the estimate
        cells = row.split()
        yosys, estimate = (int(cells[i].replace(",", "")) for i in (3, 4))
        assert yosys > 0 and abs(yosys - estimate) <= estimate / 3, row
    info = json.loads((tmp_path / "rtl" / "bitsmith_verilog.json").read_text())
    synth = json.loads((tmp_path / "rtl" / "yosys_luts.json").read_text())
    assert synth["luts"] > 0 and info["top"] == "digits_mlp"


def test_export_to_verilog_without_the_tools_says_what_to_install(tmp_path, capsys, quantized_ckpt, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys, iverilog or verilator on it
    base = ["export", "--load", str(quantized_ckpt), "--to", "verilog", "--output-dir", str(tmp_path / "rtl"),
            "--project-dir", str(tmp_path)]
    code, _, err = cli(capsys, *base, "--synth", "yosys")
    assert code == 2 and "synthesis needs yosys: apt install yosys" in err and not (tmp_path / "rtl").exists()
    code, _, err = cli(capsys, *base, "--verify")
    assert code == 2 and "apt install iverilog (or verilator)" in err
