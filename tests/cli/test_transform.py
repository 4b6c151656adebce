"""`bitsmith transform` end to end, and the example configs it runs."""

import json
from pathlib import Path

import pytest
import torch

from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def acc(out: str, marker: str = "test accuracy ") -> float:
    return float(out.split(marker)[1].split()[0])


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    from bitsmith.cli import main

    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "10", "--project-dir", str(out)])
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def test_ptq_8bit_then_test_then_qat(tmp_path, capsys, digits_ckpt):
    code, out, err = cli(capsys, "transform", "--config", str(CONFIGS / "digits_quantize_8bit.toml"),
                         "--load", str(digits_ckpt), "--project-dir", str(tmp_path), "--project", "q8")
    assert code == 0, err
    assert "nodes per op: placeholder=1" in out and "quantization" in out
    before, after = (float(v) for v in out.split("test accuracy ")[1].split(" after")[0].split(" before, "))
    assert after >= before - 0.02  # 8-bit PTQ costs little on digits
    d = tmp_path / "q8" / "transform" / "latest"  # the run this transform made
    rows = (d / "quantize_summary.csv").read_text().splitlines()
    assert rows[0].startswith("node,type,format,data_in_width") and "seq_blocks_0,Linear,integer,8,4,8,6,8,6" in rows
    summary = json.loads((d / "transform.json").read_text())
    assert summary["totals"]["average_bitwidth"] == 8.0
    # The saved model reloads as the quantized model.
    code, out, _ = cli(capsys, "test", "--load", str(d / "transformed.ckpt"))
    assert code == 0 and acc(out) == pytest.approx(after)
    # Quantization-aware fine-tuning: train starts from the transformed checkpoint.
    code, out, err = cli(capsys, "train", "--load", str(d / "transformed.ckpt"), "--max-epochs", "2",
                         "--project-dir", str(tmp_path), "--project", "qat")
    assert code == 0, err
    meta = torch.load(tmp_path / "qat" / "checkpoints" / "best.ckpt", weights_only=True)["bitsmith"]
    assert meta["passes"][0][0] == "quantize"


def test_widen_preserve_vs_random(tmp_path, capsys, digits_ckpt):
    code, out, _ = cli(capsys, "transform", "--config", str(CONFIGS / "digits_widen_x2.toml"),
                       "--load", str(digits_ckpt), "--project-dir", str(tmp_path), "--project", "p")
    assert code == 0
    before, after = out.split("test accuracy ")[1].split(" after")[0].split(" before, ")
    assert before == after
    rand = tmp_path / "random.toml"
    rand.write_text((CONFIGS / "digits_widen_x2.toml").read_text().replace('"preserve"', '"random"'))
    code, out, _ = cli(capsys, "transform", "--config", str(rand), "--load", str(digits_ckpt),
                       "--project-dir", str(tmp_path), "--project", "r")
    before, after = out.split("test accuracy ")[1].split(" after")[0].split(" before, ")
    assert float(after) < float(before) - 0.3
    code, out, _ = cli(capsys, "test", "--load", str(tmp_path / "p" / "transform" / "transformed.ckpt"))
    assert code == 0 and acc(out) == float(before)


def test_jsc_channel_example_builds_16_32_64_5(tmp_path, capsys, jsc_files):
    code, out, err = cli(capsys, "transform", "--config", str(CONFIGS / "jsc_three_linear_layers_channels.toml"),
                         "--data-path", str(jsc_files["csv"]), "--project-dir", str(tmp_path))
    assert code == 0, err
    lines = [line for line in out.splitlines() if "Linear" in line and "│" in line][:3]
    assert [tuple(c.strip() for c in line.split("│")[3:5]) for line in lines] == [
        ("16", "32"), ("32", "64"), ("64", "5")]


def test_4bit_example_runs(tmp_path, capsys, digits_ckpt):
    code, out, _ = cli(capsys, "transform", "--config", str(CONFIGS / "digits_quantize_4bit.toml"),
                       "--load", str(digits_ckpt), "--project-dir", str(tmp_path))
    assert code == 0 and "4/2" in out


@pytest.mark.parametrize("text,message", [
    ('model = "digits-mlp"\n', "needs at least one [passes.<name>] table"),
    ('model = "digits-mlp"\n[passes.quantise]\nby = "type"\n', "did you mean 'quantize'"),
    ('model = "digits-mlp"\n[passes.quantize]\nby = "name"\n[passes.quantize.seq_blocks_7.config]\nname = "NA"\n',
     "[passes.quantize.seq_blocks_7] matches no node of this model"),
])
def test_transform_mistakes_exit_2(tmp_path, capsys, text, message):
    cfg = tmp_path / "t.toml"
    cfg.write_text(text)
    code, _, err = cli(capsys, "transform", "--config", str(cfg), "--project-dir", str(tmp_path), "--strict")
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "digits-mlp_digits" / "transform").exists()


def test_unmatched_table_warns_and_the_rest_applies(tmp_path, capsys, digits_ckpt):
    """MASE's lenient reading: a by-name table keyed by a type is ignored with one warning line."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('model = "digits-mlp"\n[passes.quantize]\nby = "name"\n'
                   '[passes.quantize.linear.config]\nname = "integer"\ndata_in_width = 8\n'
                   'weight_width = 8\nbias_width = 8\n'
                   '[passes.quantize.seq_blocks_0.config]\nname = "integer"\ndata_in_width = 4\n'
                   'weight_width = 4\nbias_width = 4\n')
    code, out, err = cli(capsys, "transform", "--config", str(cfg), "--load", str(digits_ckpt),
                         "--project-dir", str(tmp_path))
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1
    assert "[passes.quantize.linear] matches no node" in warnings[0] and 'need by = "type"' in warnings[0]
    assert "4/2" in out  # seq_blocks_0 was quantized
