"""hls4ml export: the C++ emulation reproduces bitsmith bit for bit (four g++ compiles in all, ~12 s each)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bitsmith.errors import BitsmithError
from bitsmith.export.plan import compare, plan_of, reference
from bitsmith.passes.quantize import quantize_pass
from tests.helpers import graph_of, integer

pytest.importorskip("hls4ml")
import yaml  # noqa: E402 - hls4ml's dependency

from bitsmith.export import hls4ml as hx  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C++ emulation needs g++")


def _fmt(w, f, bw=None, bf=None, xw=None, xf=None):
    return {"config": {"name": "integer", "data_in_width": xw or w, "data_in_frac_width": f if xf is None else xf,
                       "weight_width": w, "weight_frac_width": f, "bias_width": bw or w,
                       "bias_frac_width": f if bf is None else bf}}


# Widths differ per layer; seq_blocks_2's weights and bias have frac > width (ap_fixed<6,-2>, <8,-1>),
# seq_blocks_4's input has frac < 0 (ap_fixed<8,9>: steps of 2).
MIXED = {"by": "name", "seq_blocks_0": integer(8, 4), "seq_blocks_1": integer(6, 2, relu=True),
         "seq_blocks_2": _fmt(6, 8, bw=8, bf=9, xw=4, xf=1), "seq_blocks_3": integer(8, 3, relu=True),
         "seq_blocks_4": _fmt(5, 6, bw=12, bf=10, xw=8, xf=-1)}
TIES = 200  # the first rows: every input an odd multiple of 2^-5, a tie for seq_blocks_0's data_in (frac 4)


@pytest.fixture(scope="module")
def mixed():
    graph, _ = quantize_pass(graph_of("digits-mlp", (64,), 10), MIXED)
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, (400, 64))  # beyond ap_fixed<8,4>'s range: saturation too
    x[:TIES] = (2 * rng.integers(-127, 127, (TIES, 64)) + 1) / 32  # inside the range: rounding only
    x = x.astype(np.float32)
    return graph, plan_of(graph, "digits-mlp"), x, reference(graph, torch.from_numpy(x))


@pytest.fixture(scope="module")
def exported(mixed, tmp_path_factory):
    graph, plan, x, ours = mixed
    out = tmp_path_factory.mktemp("hls") / "digits"
    hls_model = hx.write_hls4ml(plan, out)
    return out, compile_and_compare(hls_model, plan, x, ours)


def compile_and_compare(hls_model, plan, x, ours):
    theirs = hx.compile_and_run(hls_model, x.astype(np.float64))
    return theirs, compare(ours, theirs, plan.steps[-1].name)


@needs_gxx
def test_mixed_formats_bit_exact_on_ties(mixed, exported):
    _, plan, x, ours = mixed
    _, (theirs, cmp) = exported
    first = plan.steps[0].data_in
    scaled = x[:TIES].astype(np.float64) * 2.0**first.frac
    assert (scaled % 1 == 0.5).all()  # the tie rows are ties
    assert cmp.rows == len(x) and cmp.max_abs_diff == 0.0 and cmp.agreement == 1.0
    assert set(cmp.per_step) == {s.name for s in plan.steps}  # hls4ml traced every step
    assert all(d == 0.0 and rows == 0 for d, rows in cmp.per_step.values()), cmp.per_step
    assert set(theirs) == {s.name for s in plan.steps}


@needs_gxx
def test_export_info_file(mixed, exported):
    _, plan, _, _ = mixed
    out, _ = exported
    info = json.loads((out / hx.INFO_FILE).read_text())
    assert info["rounding"] == "AP_RND_CONV" and info["exact"] is True
    assert info["input"]["precision"] == "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"
    layers = {entry["layer"]: entry for entry in info["layers"]}
    assert layers["seq_blocks_2"]["precision"]["weight"] == "ap_fixed<6,-2,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_2"]["precision"]["bias"] == "ap_fixed<8,-1,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_1"]["precision"]["result"] == "ap_ufixed<6,4,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_4_in"]["precision"]["result"] == "ap_fixed<8,9,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_4_in"]["rounds_input_of"] == "seq_blocks_4"
    for s in plan.steps:
        if s.kind == "linear":  # exact accumulators: the plan's width, no modes
            bits = s.accumulator_bits()
            frac = max(s.data_in.frac + s.weight_fmt.frac, s.bias_fmt.frac)
            assert layers[s.name]["precision"]["accum"] == f"ap_fixed<{bits},{bits - frac}>"
            assert layers[s.name]["accumulator_bits"] == bits


@needs_gxx
def test_project_reopens_with_hls4ml_link_existing_project(mixed, exported, tmp_path):
    """hls4ml's own API, in a fresh process elsewhere: it reads hls4ml_config.yml with yaml.safe_load, compiles
    in the project, and predicts what bitsmith's export run computed."""
    _, plan, x, _ = mixed
    out, (theirs, _) = exported
    config = yaml.safe_load((out / "hls4ml_config.yml").read_text())  # no python/tuple, no pickled torch model
    assert config["OutputDir"] == str(out.resolve()) and "PytorchModel" not in config
    for lib in (out / "firmware").glob("*.so"):
        lib.unlink()  # so compile() must build it
    picked = slice(0, len(x), 20)  # tie rows and saturating rows
    np.save(tmp_path / "x.npy", x[picked].astype(np.float64))
    code = ("import sys, numpy as np, hls4ml\n"
            "m = hls4ml.converters.link_existing_project(sys.argv[1])\n"
            "m.compile()\n"
            "np.save('y.npy', m.predict(np.load('x.npy')))\n")
    run = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert list((out / "firmware").glob("*.so"))
    y = np.load(tmp_path / "y.npy").reshape(len(x[picked]), -1)
    assert np.array_equal(y, theirs[plan.steps[-1].name][picked])


@needs_gxx
def test_hls4ml_default_modes_differ_on_ties(mixed, tmp_path):
    _, plan, x, ours = mixed
    hls_model = hx.write_hls4ml(plan, tmp_path / "trn", rounding="AP_TRN", saturation="AP_WRAP")
    info = json.loads((tmp_path / "trn" / hx.INFO_FILE).read_text())
    assert "AP_RND_CONV" not in json.dumps(info["layers"]) and "AP_TRN,AP_WRAP" in info["input"]["precision"]
    theirs, cmp = compile_and_compare(hls_model, plan, x, ours)
    first, last = plan.steps[0].name, plan.steps[-1].name
    # The tie rows are inside the input range: the first layer differs by truncation alone.
    assert np.abs(theirs[first][:TIES] - ours[first][:TIES]).max() > 0
    assert np.abs(theirs[last][:TIES] - ours[last][:TIES]).max() > 0
    assert cmp.max_abs_diff > 0


@needs_gxx
def test_jsc_toy_float_batchnorm_stream_vivado(tmp_path):
    """BatchNorm is float in bitsmith and fixed point in hls4ml: close, exact only away from rounding ties; export's
    --verify says so, never "bit-exact"."""
    from rich.console import Console

    from bitsmith.data._base import Split
    from bitsmith.export import verify_export

    graph, _ = quantize_pass(graph_of("jsc-toy", (16,), 5, train_steps=2),
                             {"by": "type", "linear": integer(8), "relu": integer(8, relu=True)})
    plan = plan_of(graph, "jsc-toy")
    x = torch.from_numpy((np.random.default_rng(1).standard_normal((1000, 16)) * 2 + 0.5).astype(np.float32))
    hls_model = hx.write_hls4ml(plan, tmp_path / "jsc", backend="Vivado", io_type="io_stream")
    printed = io.StringIO()
    got = verify_export(plan, graph, Split(x, torch.zeros(len(x))), "hls4ml", tmp_path / "jsc", hls_model,
                        Console(file=printed, width=300))
    per_layer = {name: (v["max_abs_diff"], v["rows"]) for name, v in got["per_layer"].items()}
    norms = [s.name for s in plan.steps if s.kind == "batchnorm1d"]
    assert norms and set(norms) <= set(per_layer)
    # Measured on 5,000 rows: 4 rows differ by 1 LSB after the first BatchNorm, none at the output.
    assert got["agreement"] >= 0.99
    # First BatchNorm: input rounded to 2^-17, result to 2^-17 (ap_fixed<32,16>), |scale| < 1 here.
    assert np.abs(plan.steps[0].scale).max() < 1 and 0 < per_layer[norms[0]][0] <= 2.0**-15
    assert per_layer[plan.steps[1].name][1] <= 0.01 * got["rows"]  # rows where a ReLU rounded the other way
    lines = printed.getvalue().rstrip().splitlines()
    assert "export: compiling the project with g++ and running the test split through it ..." in lines
    assert not got["bit_exact"] and got["first_difference"] == norms[0] and "(bit-exact)" not in lines[-1]
    assert lines[-1].endswith(f"(not bit-exact: float BatchNorm1d; layers match within {got['max_layer_diff']:.3g}, "
                              f"the first to differ is {norms[0]})")


@pytest.fixture(scope="module")
def small_plan():
    graph, _ = quantize_pass(graph_of("digits-mlp", (64,), 10),
                             {"by": "type", "linear": integer(8), "relu": integer(8, relu=True)})
    return plan_of(graph, "digits-mlp")


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "Quartus"}, "backend 'Quartus'; allowed: Vitis, Vivado"),
    ({"io_type": "io_serial"}, "io_type 'io_serial'; allowed: io_parallel, io_stream"),
    ({"rounding": "RND"}, "rounding mode 'RND'; allowed: AP_RND_CONV"),
    ({"saturation": "SAT"}, "saturation mode 'SAT'; allowed: AP_SAT"),
])
def test_bad_choices(small_plan, tmp_path, kwargs, words):
    with pytest.raises(BitsmithError, match=words) as err:
        hx.write_hls4ml(small_plan, tmp_path / "p", **kwargs)
    assert "\n" not in str(err.value) and not (tmp_path / "p").exists()


def test_out_dir_is_a_file(small_plan, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(BitsmithError, match="is a file; name a directory") as err:
        hx.write_hls4ml(small_plan, target)
    assert "\n" not in str(err.value)
    with pytest.raises(BitsmithError, match="cannot create the hls4ml output directory"):
        hx.write_hls4ml(small_plan, target / "inside")


def test_missing_hls4ml(small_plan, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "hls4ml", None)  # import hls4ml -> ImportError
    hx._hls4ml.cache_clear()
    try:
        with pytest.raises(BitsmithError, match=r"pip install 'bitsmith\[hls4ml\]'"):
            hx.write_hls4ml(small_plan, tmp_path / "p")
    finally:
        hx._hls4ml.cache_clear()


def test_missing_compiler(monkeypatch):
    monkeypatch.setattr(hx.shutil, "which", lambda name: None)
    with pytest.raises(BitsmithError, match=r"needs g\+\+ \(apt install g\+\+\)"):
        hx.compile_and_run(object(), np.zeros((1, 64)))
