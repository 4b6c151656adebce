"""hls4ml export: the C++ emulation reproduces bitsmith bit for bit, with either strategy.

g++ compiles, measured on 2 cores: four latency projects (~8-12 s each) and one distributed-arithmetic project
(~15 s) in the fast suite; the slow tests add two DA projects (~45 s and ~25 s), one latency project and an
exhaustive check of ap_fixed's modes (~18 s), ~110 s in all.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bitsmith.cost import _da4ml
from bitsmith.errors import BitsmithError
from bitsmith.export.plan import compare, plan_of, reference
from bitsmith.passes.quantize import quantize_pass
from bitsmith.quant import Fixed
from tests.helpers import graph_of, integer

pytest.importorskip("hls4ml")
import yaml  # noqa: E402 - hls4ml's dependency

from bitsmith.export import hls4ml as hx  # noqa: E402

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="hls4ml's C++ emulation needs g++")
needs_da = pytest.mark.skipif(_da4ml.version() is None, reason="the distributed_arithmetic strategy needs da4ml")
DA = "distributed_arithmetic"


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
    # The unsigned casts (ap_ufixed<3,2> after seq_blocks_1, ap_ufixed<7,8> after seq_blocks_3) met ties and
    # the saturation bound: same values as bitsmith's signed formats.
    relu1, relu3 = ours["seq_blocks_1"], ours["seq_blocks_3"]
    assert (relu1 > 3.5).any() and (relu1 * 4 % 2 == 1).any() and (relu3 % 2 == 1).any()


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
    # Fed by ReLUs: unsigned, one bit fewer (bitsmith's formats are ap_fixed<4,3> and ap_fixed<8,9>).
    assert layers["seq_blocks_2_in"]["precision"]["result"] == "ap_ufixed<3,2,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_4_in"]["precision"]["result"] == "ap_ufixed<7,8,AP_RND_CONV,AP_SAT>"
    assert layers["seq_blocks_4_in"]["rounds_input_of"] == "seq_blocks_4"
    assert layers["seq_blocks_4_in"]["after_relu"] is True
    assert layers["seq_blocks_4_in"]["format"] == {"width": 8, "frac": -1, "signed": True}
    assert layers["seq_blocks_4_in"]["written_as"] == {"width": 7, "frac": -1, "signed": False}
    assert info["strategy"] == "latency" and "da4ml" not in info
    assert not any("da_kernel_cost" in entry for entry in info["layers"])
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


# The distributed-arithmetic strategy: hls4ml's da_kernel_cost is bitsmith's luts metric, layer by layer.

# digits-mlp on 16 features: 16-64-32-5 at 6 bits, small enough for a DA compile in the fast suite (~20 s). The
# ReLUs (ap_ufixed<6,2>) feed casts to ap_fixed<6,3>, written ap_ufixed<5,2>: ties (odd multiples of 2^-4)
# and saturation (3.9375 -> 3.875).
SMALL = {"by": "type", "linear": integer(6, 3), "relu": integer(6, 4, relu=True)}
# Per-layer widths with MIXED's edge cases, on 16 features (a DA compile of MIXED itself takes ~100-140 s of g++):
# seq_blocks_2 reads ap_ufixed<3,2> (its ap_fixed<4,3>, saturating the ReLU's 3.9375) with weights ap_fixed<3,-2>
# (frac > width); seq_blocks_4 reads ap_ufixed<7,8> (frac -1: ties at odd integers) with weights ap_fixed<4,-1>.
EDGES = {"by": "name", "seq_blocks_0": integer(6, 3), "seq_blocks_1": integer(6, 4, relu=True),
         "seq_blocks_2": _fmt(3, 5, bw=6, bf=6, xw=4, xf=1), "seq_blocks_3": integer(8, 3, relu=True),
         "seq_blocks_4": _fmt(4, 5, bw=8, bf=7, xw=8, xf=-1)}
JSC8 = {"by": "type", "linear": integer(8), "relu": integer(8, relu=True)}
DESIGNS = {  # name: (model, in_shape, classes, train_steps, config)
    "digits-edges": ("digits-mlp", (16,), 5, 0, EDGES),
    "digits-small": ("digits-mlp", (16,), 5, 0, SMALL),
    "jsc-three": ("jsc-three-linear-layers", (16,), 5, 2, JSC8),  # BatchNorm, ReLU first: every Linear after a ReLU
}


def design(name):
    model, shape, classes, steps, cfg = DESIGNS[name]
    graph, _ = quantize_pass(graph_of(model, shape, classes, train_steps=steps), cfg)
    return graph, plan_of(graph, model)


def metric(graph):
    from bitsmith.cost.network import CostSettings, network_cost

    return {c.name: c.kernel for c in network_cost(graph, CostSettings(cache_dir=None)).layers}


@needs_da
@pytest.mark.parametrize("name", DESIGNS)
def test_da_kernel_cost_is_the_luts_metric(name, tmp_path, monkeypatch):
    """No compile: hls4ml's DA pass runs (and stores da_kernel_cost) while converting."""
    monkeypatch.delenv("DA_HARD_DC", raising=False)  # hls4ml's solver option: its default, the metric's
    graph, plan = design(name)
    hls_model = hx.write_hls4ml(plan, tmp_path / "da", strategy=DA)
    linears = [s.name for s in plan.steps if s.kind == "linear"]
    stored = {layer.name: layer.get_attr("da_kernel_cost") for layer in hls_model.get_layers()
              if layer.get_attr("da_kernel_cost") is not None}
    assert set(stored) == set(linears)  # hls4ml's layer names are the steps'
    assert all(layer.get_attr("strategy") == DA for layer in hls_model.get_layers() if layer.name in linears)
    ours = metric(graph)
    assert stored == ours and hls_model.bitsmith_da_costs == ours  # exactly, every layer
    assert all(cost > 0 for cost in ours.values())
    info = json.loads((tmp_path / "da" / hx.INFO_FILE).read_text())
    assert info["strategy"] == DA and info["da4ml"] == _da4ml.version() and info["da_hard_dc"] == 2
    assert {e["step"]: e["da_kernel_cost"] for e in info["layers"] if e["kind"] == "linear"} == ours
    casts = [e for e in info["layers"] if e["kind"] == "cast"]
    assert casts and all(e["after_relu"] and not e["written_as"]["signed"] for e in casts)
    firmware = "".join(f.read_text() for f in (tmp_path / "da" / "firmware").rglob("*.h"))
    assert all(f"dense_da_{hls_model.graph[n].index}" in firmware for n in linears)


@needs_da
def test_da_wrap_keeps_casts_signed(tmp_path):
    """Under AP_WRAP the casts stay signed (an overflow wraps differently unsigned): hls4ml then costs a sign
    bit on the inputs bitsmith's metric knows are >= 0, and only the first layer (no ReLU before it) agrees."""
    graph, plan = design("digits-small")
    hls_model = hx.write_hls4ml(plan, tmp_path / "wrap", strategy=DA, saturation="AP_WRAP")
    info = json.loads((tmp_path / "wrap" / hx.INFO_FILE).read_text())
    assert all(e["written_as"] == e["format"] for e in info["layers"] if e["kind"] == "cast")
    ours, theirs = metric(graph), hls_model.bitsmith_da_costs
    assert theirs["seq_blocks_0"] == ours["seq_blocks_0"]
    assert theirs["seq_blocks_2"] > ours["seq_blocks_2"] and theirs["seq_blocks_4"] > ours["seq_blocks_4"]


def _rows(n_in, frac, seed):
    """Half the rows ties for an input of ``frac`` fraction bits inside [-4, 4), half beyond it (saturation)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-10, 10, (600, n_in))
    x[:300] = (2 * rng.integers(-2 ** (frac + 2), 2 ** (frac + 2) - 1, (300, n_in)) + 1) / 2 ** (frac + 1)
    return x


def _split(x):
    from bitsmith.data._base import Split

    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return Split(x, torch.zeros(len(x)))


def _verify(plan, graph, x, out, hls_model):
    from rich.console import Console

    from bitsmith.export import verify_export

    printed = io.StringIO()
    got = verify_export(plan, graph, _split(x), "hls4ml", out, hls_model, Console(file=printed, width=300))
    return got, printed.getvalue().rstrip().splitlines()[-1]


@needs_gxx
@needs_da
def test_da_small_design_bit_exact(tmp_path):
    graph, plan = design("digits-small")
    x = _rows(16, 3, 3)  # ap_fixed<6,3>'s ties, and saturation
    hls_model = hx.write_hls4ml(plan, tmp_path / "da", strategy=DA)
    got, last = _verify(plan, graph, x, tmp_path / "da", hls_model)
    assert got["bit_exact"] and got["rows"] == 600 and got["max_layer_diff"] == 0.0, got
    assert set(got["per_layer"]) == {s.name for s in plan.steps}  # hls4ml traced every step, DA kernels too
    assert last.endswith("(bit-exact)")
    ours = reference(graph, _split(x).x)
    # The unsigned casts met ties (both) and their saturation bound (the first: 3.9375 -> 3.875).
    assert all((ours[relu] * 16 % 2 == 1).any() for relu in ("seq_blocks_1", "seq_blocks_3"))
    assert (ours["seq_blocks_1"] == 3.9375).any() and (ours["seq_blocks_2"] != 0).any()


@pytest.mark.slow
@needs_gxx
@needs_da
def test_da_edge_formats_bit_exact(tmp_path):
    """frac > width weights, a frac < 0 input, saturating unsigned casts, as DA kernels: ~40 s of g++ on 2 cores."""
    graph, plan = design("digits-edges")
    x = _rows(16, 3, 4)
    hls_model = hx.write_hls4ml(plan, tmp_path / "da", strategy=DA)
    info = json.loads((tmp_path / "da" / hx.INFO_FILE).read_text())
    casts = {e["layer"]: e["precision"]["result"] for e in info["layers"] if e["kind"] == "cast"}
    assert casts == {"seq_blocks_2_in": "ap_ufixed<3,2,AP_RND_CONV,AP_SAT>",
                     "seq_blocks_4_in": "ap_ufixed<7,8,AP_RND_CONV,AP_SAT>"}
    got, last = _verify(plan, graph, x, tmp_path / "da", hls_model)
    assert got["bit_exact"] and got["max_layer_diff"] == 0.0 and last.endswith("(bit-exact)"), got
    ours = reference(graph, _split(x).x)
    relu1, relu3 = ours["seq_blocks_1"], ours["seq_blocks_3"]
    assert (relu1 > 3.5).any() and (relu1 * 4 % 2 == 1).any() and (relu3 % 2 == 1).any()


@pytest.mark.slow
@needs_gxx
@needs_da
def test_da_jsc_stream_vivado_same_as_latency(tmp_path):
    """A float BatchNorm first (not bit-exact against bitsmith), but the two strategies compute the same sums:
    equal outputs in every layer. DA also on Vivado with io_stream (hls4ml's stream wrapper)."""
    graph, plan = design("jsc-three")
    x = (np.random.default_rng(1).standard_normal((1000, 16)) * 2 + 0.5).astype(np.float32)
    lat = hx.compile_and_run(hx.write_hls4ml(plan, tmp_path / "lat"), x.astype(np.float64))
    da_model = hx.write_hls4ml(plan, tmp_path / "da", backend="Vivado", io_type="io_stream", strategy=DA)
    assert da_model.bitsmith_da_costs == metric(graph)
    da = hx.compile_and_run(da_model, x.astype(np.float64))
    assert set(da) == set(lat) == {s.name for s in plan.steps}
    assert all(np.array_equal(da[k], lat[k]) for k in lat)
    cmp = compare(reference(graph, torch.from_numpy(x)), da, plan.steps[-1].name)
    assert cmp.agreement >= 0.99 and cmp.per_step[plan.steps[0].name][0] > 0  # the float BatchNorm


AP_MODES = r"""
#include "ap_fixed.h"
#include <cstdio>
// Every value of ap_ufixed<16,8> (a ReLU's: 0 .. 255.996 in steps of 2^-8) cast into ap_fixed<W,I> and into
// ap_ufixed<W-1,I-1>: how many values differ.
template <int W, int I, ap_q_mode Q, ap_o_mode O> int differ() {
    int n = 0;
    for (int k = 0; k < (1 << 16); k++) {
        ap_ufixed<16, 8> x;
        x.range() = k;
        ap_fixed<W, I, Q, O> s = x;
        ap_ufixed<W - 1, I - 1, Q, O> u = x;
        n += (double)s != (double)u;
    }
    return n;
}
#define ROW(Q) printf("%d %d %s %d %d %d %d\n", W, I, #Q, differ<W, I, Q, AP_SAT>(), \
                      differ<W, I, Q, AP_SAT_ZERO>(), differ<W, I, Q, AP_SAT_SYM>(), differ<W, I, Q, AP_WRAP>());
template <int W, int I> void all() {
    ROW(AP_RND_CONV) ROW(AP_TRN) ROW(AP_RND) ROW(AP_RND_ZERO) ROW(AP_RND_MIN_INF) ROW(AP_RND_INF) ROW(AP_TRN_ZERO)
}
int main() { all<4, 2>(); all<6, -2>(); all<8, 9>(); return 0; }
"""


@pytest.mark.slow
@needs_gxx
def test_unsigned_cast_same_values_in_every_mode_but_wrap(tmp_path):
    """hls4ml's own ap_fixed, exhaustively: for values >= 0, ap_fixed<W,I> and ap_ufixed<W-1,I-1> agree under
    every rounding mode and every saturation mode but AP_WRAP (why export keeps a signed cast there)."""
    import hls4ml

    (tmp_path / "modes.cpp").write_text(AP_MODES)
    types = f"{hls4ml.__path__[0]}/templates/vivado/ap_types"
    subprocess.run(["g++", "-O0", "-std=c++14", f"-I{types}", "modes.cpp", "-o", "modes"], cwd=tmp_path,
                   check=True, timeout=300)
    rows = [line.split() for line in subprocess.run([str(tmp_path / "modes")], capture_output=True, text=True,
                                                    check=True, timeout=120).stdout.splitlines()]
    assert len(rows) == 3 * len(hx.ROUNDING)
    assert {r[2] for r in rows} == set(hx.ROUNDING)
    assert all(r[3:6] == ["0", "0", "0"] for r in rows), rows  # AP_SAT, AP_SAT_ZERO, AP_SAT_SYM
    assert any(int(r[6]) > 0 for r in rows if r[2] == "AP_RND_CONV")  # AP_WRAP: differs
    for width, frac in ((4, 2), (6, 8), (8, -1), (1, 3)):
        fmt = Fixed(width, frac)
        cast = hx.unsigned_cast(fmt, "AP_SAT")
        if width == 1:  # no ap_ufixed<0>
            assert cast == fmt
        else:
            assert cast == Fixed(width - 1, frac, False) and cast.hi == fmt.hi and cast.lo == 0
        assert hx.unsigned_cast(fmt, "AP_WRAP") == fmt


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
    ({"strategy": "resource"}, "strategy 'resource'; allowed: latency, distributed_arithmetic"),
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


def test_da_missing_da4ml(small_plan, tmp_path, monkeypatch):
    monkeypatch.setattr(_da4ml, "version", lambda: None)
    with pytest.raises(BitsmithError, match=r"needs da4ml: pip install 'bitsmith\[da\]'") as err:
        hx.write_hls4ml(small_plan, tmp_path / "p", strategy=DA)
    assert "\n" not in str(err.value) and not (tmp_path / "p").exists()


@needs_da
def test_da_refuses_float_linear(tmp_path):
    graph, _ = quantize_pass(graph_of("digits-mlp", (64,), 10), {"by": "name", "seq_blocks_0": integer(8)})
    plan = plan_of(graph, "digits-mlp")
    with pytest.raises(BitsmithError, match="seq_blocks_2, seq_blocks_4 are not quantized; quantize every "
                                            "Linear or use --strategy latency") as err:
        hx.write_hls4ml(plan, tmp_path / "p", strategy=DA)
    assert "\n" not in str(err.value) and not (tmp_path / "p").exists()
