"""`bitsmith export` end to end: a quantized digits design to QONNX and to hls4ml (compiled with g++), verified
bit-exact against bitsmith; `search --export`; and what export refuses."""

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bitsmith.data import get_dataset
from bitsmith.errors import BitsmithError
from bitsmith.export.plan import plan_of
from bitsmith.graph import trace
from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A digits-mlp trained briefly, then quantized to 8 bits by configs/digits_quantize_8bit.toml."""
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("design")
    for argv in (["train", "digits-mlp", "digits", "--max-epochs", "5", "--project-dir", str(out)],
                 ["transform", "--config", str(CONFIGS / "digits_quantize_8bit.toml"), "--load",
                  str(out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"), "--project-dir", str(out)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    return out / "digits-mlp_digits" / "transform" / "transformed.ckpt"


def stages(out: str) -> list[str]:
    """The progress lines export prints when its output is not a terminal."""
    return [line for line in out.splitlines() if line.startswith("export: ")]


def test_qonnx_export_is_bit_exact_on_the_test_split(tmp_path, capsys, quantized):
    rows = len(get_dataset("digits").test)
    code, out, err = cli(capsys, "export", "--load", str(quantized), "--to", "qonnx", "--output",
                         str(tmp_path / "m.onnx"), "--verify")
    assert code == 0, err
    assert out.rstrip().endswith(f"max |diff| of the outputs: 0; predictions agree on 100.00% of {rows} rows "
                                 "(bit-exact)")
    assert stages(out) == [f"export: loading {quantized} ...",
                           f"export: writing the QONNX model {tmp_path / 'm.onnx'} ...",
                           f"export: running the test split ({rows} rows) through bitsmith ...",
                           "export: running the test split through QONNX's executor ..."]
    assert "ap_ufixed<8,4>" in out and "warning" not in out + err  # the ReLU's unsigned input; nothing inexact
    assert (tmp_path / "m.onnx").stat().st_size > 0 and list(tmp_path.iterdir()) == [tmp_path / "m.onnx"]


@pytest.mark.slow
def test_hls4ml_export_compiles_and_is_bit_exact_on_the_test_split(tmp_path, capsys, quantized, monkeypatch):
    """What CI checks with g++: one small design, compiled by hls4ml, equal to bitsmith bit for bit."""
    import yaml

    rows = len(get_dataset("digits").test)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "export", "--load", str(quantized), "--to", "hls4ml", "--output-dir", "prj",
                         "--verify")
    assert code == 0, err
    assert out.rstrip().endswith(f"max |diff| of the outputs: 0; predictions agree on 100.00% of {rows} rows "
                                 "(bit-exact)")
    assert stages(out)[1:] == ["export: writing the hls4ml project prj ...",
                               f"export: running the test split ({rows} rows) through bitsmith ...",
                               "export: compiling the project with g++ and running the test split through it ..."]
    written = json.loads((tmp_path / "prj" / "bitsmith_export.json").read_text())
    assert "AP_RND_CONV" in json.dumps(written) and "AP_SAT" in json.dumps(written)
    assert any(p.suffix == ".cpp" for p in (tmp_path / "prj").rglob("*"))
    # hls4ml's link_existing_project compiles in OutputDir: relative, it would only work from this directory.
    config = yaml.safe_load((tmp_path / "prj" / "hls4ml_config.yml").read_text())
    assert config["OutputDir"] == str((tmp_path / "prj").resolve()) and config["InputShape"] == [[64]]


@pytest.mark.slow
def test_search_exports_every_design_on_the_front(tmp_path, capsys, quantized):
    ckpt = quantized.parents[1] / "checkpoints" / "best.ckpt"
    code, out, err = cli(capsys, "search", "--config", str(CONFIGS / "search_digits_quantize.toml"), "--load",
                         str(ckpt), "--project-dir", str(tmp_path), "--n-trials", "6", "--export", "hls4ml")
    assert code == 0, err
    best = json.loads(next(tmp_path.rglob("best.json")).read_text())["best"]
    assert best
    for entry in best:
        project = Path(entry["checkpoint"]).parent / "hls4ml"
        written = json.loads((project / "bitsmith_export.json").read_text())
        assert "AP_RND_CONV" in json.dumps(written), f"no hls4ml project beside {entry['checkpoint']}"


def test_a_layer_the_targets_cannot_express_is_named():
    model = nn.Sequential(nn.Linear(16, 8), nn.LayerNorm(8), nn.Linear(8, 5))
    with pytest.raises(BitsmithError, match=r"export cannot write layer '_1': LayerNorm \(layernorm\); bitsmith "
                                            r"exports chains of Linear, ReLU and BatchNorm1d layers"):
        plan_of(trace(model.eval(), (16,)), "ln-mlp")


def test_an_image_model_is_refused_with_its_input_shape(tmp_path, capsys):
    from bitsmith.cli import main

    with pytest.raises(SystemExit):
        main(["train", "digits-cnn", "digits-image", "--max-epochs", "1", "--project-dir", str(tmp_path)])
    cfg = tmp_path / "q.toml"
    cfg.write_text('[passes.quantize]\nby = "type"\n[passes.quantize.default.config]\nname = "NA"\n'
                   '[passes.quantize.conv2d.config]\nname = "integer"\ndata_in_width = 8\nweight_width = 8\n'
                   'bias_width = 8\n')
    code, _, err = cli(capsys, "transform", "--config", str(cfg), "--load",
                       str(tmp_path / "digits-cnn_digits-image" / "checkpoints" / "best.ckpt"),
                       "--project-dir", str(tmp_path))
    assert code == 0, err
    ckpt = tmp_path / "digits-cnn_digits-image" / "transform" / "transformed.ckpt"
    code, out, err = cli(capsys, "export", "--load", str(ckpt), "--to", "qonnx", "--output", str(tmp_path / "c.onnx"))
    assert code == 2 and "export writes models with one flat input; digits-cnn takes input of shape (1, 8, 8)" in err
    assert not (tmp_path / "c.onnx").exists() and "Traceback" not in err


def test_a_missing_extra_names_the_pip_command(monkeypatch):
    import importlib.util

    from bitsmith.export import check_target

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hls4ml" else real(name, *a))
    with pytest.raises(BitsmithError, match=r"^export to hls4ml needs hls4ml: pip install 'bitsmith\[hls4ml\]'$"):
        check_target("hls4ml")
    check_target("qonnx")  # the QONNX export does not need hls4ml


def test_verify_reads_every_row_and_layer(quantized):
    """The comparison is over the whole test split and names every layer of the design."""
    from bitsmith.config import load_settings
    from bitsmith.export import load_design
    from bitsmith.export.plan import reference

    plan, graph, p = load_design(load_settings(None, load_name=str(quantized)))
    ours = reference(graph, p.data.test.x)
    assert list(ours) == [s.name for s in plan.steps]
    assert all(len(v) == len(p.data.test) for v in ours.values())
    assert torch.equal(torch.from_numpy(ours[plan.steps[-1].name]).float(), p.model.eval()(p.data.test.x).detach())


@pytest.fixture(scope="module")
def quantized_bn(tmp_path_factory):
    """jsc-toy (four float BatchNorm1d layers) on digits, trained briefly, its Linear and ReLU layers quantized."""
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("bn")
    cfg = out / "q.toml"
    cfg.write_text((CONFIGS / "digits_quantize_8bit.toml").read_text().replace('model = "digits-mlp"\n', ""))
    for argv in (["train", "jsc-toy", "digits", "--max-epochs", "3", "--project-dir", str(out)],
                 ["transform", "--config", str(cfg), "--load",
                  str(out / "jsc-toy_digits" / "checkpoints" / "best.ckpt"), "--project-dir", str(out)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    return out / "jsc-toy_digits" / "transform" / "transformed.ckpt"


def test_a_batchnorm_design_is_warned_about_once_and_never_called_bit_exact(tmp_path, capsys, quantized_bn):
    code, out, err = cli(capsys, "export", "--load", str(quantized_bn), "--to", "qonnx", "--output",
                         str(tmp_path / "m.onnx"), "--verify")
    assert code == 0, err  # not exit 1: the design says it cannot be bit-exact
    norms = ", ".join(f"seq_blocks_{i}" for i in (0, 3, 6, 9))
    warnings = [line for line in out.splitlines() if "warning" in line]
    assert warnings == [f"warning: not bit-exact: float BatchNorm1d in {norms} (float32 in bitsmith, float32 with "
                        "its own rounding in QONNX)"]
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("max |diff| of the outputs: ") and "(bit-exact)" not in out
    assert re.search(r"\((not bit-exact: float BatchNorm1d; layers match within [0-9.e+-]+, the first to differ is "
                     r"seq_blocks_\d+|equal on these rows, but not bit-exact: float BatchNorm1d)\)$", last), last


def test_a_terminal_gets_a_spinner_instead_of_stage_lines(tmp_path, quantized):
    """On a terminal (a pseudo-terminal here) each stage is a transient rich status, not a line of its own."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "bitsmith", "export", "--load", str(quantized), "--to", "qonnx",
                             "--output", str(tmp_path / "m.onnx"), "--verify"],
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=tmp_path)
    os.close(follower)
    seen = b""
    while True:  # read until the child closes its end (EIO on Linux)
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=300) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert "running the test split through QONNX's executor ..." in text and "export: " not in text
    assert "\x1b[" in text  # the status line is drawn and erased with terminal escapes
    assert "(bit-exact)" in text
