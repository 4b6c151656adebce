"""Verilog export: the RTL (da4ml's kernels, bitsmith's rounding between them) reproduces bitsmith bit for bit in
Icarus, including ties and saturation between layers; yosys maps every kernel to real LUTs, and a netlist whose
logic yosys deleted is refused. About 30 s: Icarus on digits-mlp (~6 s), both simulators on a tiny design (~7 s),
two small yosys runs (~5 s each); Verilator on digits-mlp (~30 s to compile) only with the slow tests."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from bitsmith.cost import _da4ml
from bitsmith.errors import BitsmithError
from bitsmith.export.plan import compare, plan_of, reference
from bitsmith.graph import trace
from bitsmith.models.jsc import SeqModel
from bitsmith.passes.quantize import quantize_pass
from tests.helpers import graph_of, integer

pytest.importorskip("da4ml")
from bitsmith.export import synth, verilog, verilog_sim

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                  reason="apt install iverilog")
needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None, reason="apt install verilator")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="apt install yosys")


def fmt(xw, xf, ww, wf, bw, bf):
    return {"config": {"name": "integer", "data_in_width": xw, "data_in_frac_width": xf, "weight_width": ww,
                       "weight_frac_width": wf, "bias_width": bw, "bias_frac_width": bf}}


# digits-mlp on 16 features: every rounding between layers drops bits (ties happen there) and saturates;
# seq_blocks_2 reads steps of 2 (frac -1), its weights have frac > width.
MIXED = {"by": "name", "seq_blocks_0": fmt(7, 3, 4, 3, 6, 4), "seq_blocks_1": integer(4, 1, relu=True),
         "seq_blocks_2": fmt(3, -1, 5, 6, 8, 9), "seq_blocks_3": integer(4, 2, relu=True),
         "seq_blocks_4": fmt(4, 1, 4, 4, 8, 4)}
ROWS, TIES = 400, 100  # the first TIES rows: every input exactly half-way between two input steps


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    graph, _ = quantize_pass(graph_of("digits-mlp", (16,), 5), MIXED)
    plan = plan_of(graph, "digits-mlp")
    out = tmp_path_factory.mktemp("rtl") / "digits"
    info = verilog.write_verilog(plan, graph, out, _da4ml.OPTIONS)
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, (ROWS, 16))  # beyond the input's +-8: it saturates too
    x[:TIES] = (2 * rng.integers(-60, 60, (TIES, 16)) + 1) / 16  # odd multiples of 2^-4, data_in has frac 3
    x = x.astype(np.float32)
    return graph, plan, out, info, x, reference(graph, torch.from_numpy(x))


@needs_icarus
def test_rtl_is_bit_exact_with_ties_and_saturation_between_layers(design):
    _, plan, out, _, x, ours = design
    assert plan.exact
    assert ((x[:TIES].astype(np.float64) * 2.0**plan.steps[0].data_in.frac) % 1 == 0.5).all()
    # The rows exercise the glue: ties and saturation at every rounding between kernels.
    for before, step in zip(plan.steps, plan.steps[1:]):
        scaled = ours[before.name] * 2.0**step.data_in.frac
        assert ((scaled % 1) == 0.5).sum() > 50, f"no ties rounding into {step.name}"
        assert (ours[before.name] > step.data_in.hi).sum() > 0, f"nothing saturates into {step.name}"
    theirs = verilog_sim.simulate(out, x.astype(np.float64), "icarus")
    assert set(theirs) == {s.name for s in plan.steps}
    cmp = compare(ours, theirs, plan.steps[-1].name)
    assert cmp.rows == ROWS and cmp.max_abs_diff == 0.0 and cmp.agreement == 1.0
    assert all(d == 0.0 and rows == 0 for d, rows in cmp.per_step.values()), cmp.per_step


def test_half_up_rounding_would_differ(design):
    """The check above can fail: rounding ties up (da4ml's RND) instead of to even changes ReLU outputs."""
    _, plan, _, _, _, ours = design
    relu = plan.steps[1].data_in
    scaled = ours[plan.steps[0].name] * 2.0**relu.frac
    half_up = np.clip(np.floor(scaled + 0.5), relu.qmin, relu.qmax) / 2.0**relu.frac
    assert (half_up != ours[plan.steps[1].name]).any()


def test_info_file_states_the_buses(design):
    _, plan, out, info, x, _ = design
    on_disk = json.loads((out / verilog.INFO_FILE).read_text())
    assert on_disk == json.loads(json.dumps(info))
    assert sorted(p.name for p in out.iterdir()) == sorted([*info["files"], verilog.INFO_FILE])  # nothing else
    assert info["input"] == {"port": "model_inp", "count": 16, "width": 7, "frac": 3, "signed": True,
                             "format": "fixed<7,4>", "bits": 112}
    assert info["output"]["step"] == "seq_blocks_4" and info["output"]["count"] == 5
    assert [s["name"] for s in info["steps"]] == [s.name for s in plan.steps]
    kernels = [s for s in info["steps"] if s["kind"] == "linear"]
    assert all(s["kernel_module"] == f"{s['module']}_cmvm" and s["da4ml_cost"] > 0 for s in kernels)
    top = (out / "digits_mlp.v").read_text()
    assert re.search(r"input \[111:0\] model_inp", top)
    assert re.search(rf"output \[{info['output']['bits'] - 1}:0\] model_out", top)
    packed = verilog_sim.to_input(x[:3], info["input"])
    again = [verilog_sim.unpack(p, verilog_sim.uniform_values(info["input"])) for p in packed]
    rounded = np.clip(np.round(x[:3].astype(np.float64) * 8), -64, 63) / 8
    assert np.array_equal(np.array(again), rounded)


def test_same_solution_as_the_metric(design):
    graph, _, _, info, _, _ = design
    from bitsmith.cost.network import CostSettings, network_cost

    cost = network_cost(graph, CostSettings(cache_dir=None))
    assert [c.kernel for c in cost.layers] == [s["da4ml_cost"] for s in info["steps"] if s["kind"] == "linear"]


def test_float_batchnorm_is_refused_and_nothing_written(tmp_path):
    graph, _ = quantize_pass(graph_of("jsc-three-linear-layers", (16,), 5),
                             {"by": "type", "linear": integer(8, 4), "relu": integer(8, 4, relu=True)})
    out = tmp_path / "jsc"
    with pytest.raises(BitsmithError, match=r"needs every layer in fixed point.*'seq_blocks_0'.*BatchNorm1d") as e:
        verilog.write_verilog(plan_of(graph, "jsc"), graph, out, _da4ml.OPTIONS)
    assert "\n" not in str(e.value)
    assert not out.exists()


def test_sums_too_wide_are_refused(tmp_path):
    graph, _ = quantize_pass(graph_of("digits-mlp", (16,), 5), {"by": "type", "linear": integer(32, 8)})
    with pytest.raises(BitsmithError, match=r"exact sums need \d+ bits.*narrow its input or weight format"):
        verilog.write_verilog(plan_of(graph), graph, tmp_path / "wide", _da4ml.OPTIONS)


def _tiny(tmp_path, name="tiny"):
    """6-4-3 with ReLUs; with this seed da4ml negates some outputs, so its ``negative`` module is written too."""
    torch.manual_seed(2)
    model = SeqModel(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU())
    graph, _ = quantize_pass(trace(model.eval(), (6,)), {"by": "type", "linear": integer(6, 3),
                                                          "relu": integer(5, 2, relu=True)})
    out = tmp_path / name
    verilog.write_verilog(plan_of(graph, name), graph, out, _da4ml.OPTIONS)
    return graph, out


@needs_icarus
@needs_verilator
def test_both_simulators_agree_with_bitsmith_on_a_small_design(tmp_path):
    """Verilator 5.006 rejects da4ml's negative.v as shipped (a lint code it does not know): the export fixes it."""
    graph, out = _tiny(tmp_path)
    info = json.loads((out / verilog.INFO_FILE).read_text())
    assert "negative.v" in info["files"] and "WIDTHTRUNC" not in (out / "negative.v").read_text()
    x = np.random.default_rng(3).uniform(-9, 9, (300, 6)).astype(np.float32)
    ours = reference(graph, torch.from_numpy(x))
    for simulator in ("icarus", "verilator"):
        theirs = verilog_sim.simulate(out, x.astype(np.float64), simulator)
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours), simulator


@needs_yosys
def test_yosys_maps_every_kernel_to_luts(tmp_path):
    _, out = _tiny(tmp_path)
    result = synth.synth_yosys(out)
    kernels = {k: s for k, s in result["steps"].items() if "kernel_luts" in s}
    assert set(kernels) == {"seq_blocks_0", "seq_blocks_2"}
    assert all(s["kernel_luts"] > 0 and s["da4ml_cost"] > 0 for s in kernels.values()), result
    assert result["steps"]["seq_blocks_1"]["glue_luts"] > 0  # rounding half to even costs logic
    assert result["luts"] == sum(s["luts"] for s in result["steps"].values())
    assert json.loads((out / synth.RESULT_FILE).read_text()) == result
    assert result["warnings"] == []
    _tiny(tmp_path)  # writing the design again drops the synthesis result of the old one
    assert not (out / synth.RESULT_FILE).exists()


@needs_yosys
def test_yosys_deleting_a_kernel_is_refused(tmp_path):
    """The trap: out-of-range part-selects read as undefined bits, and yosys deletes the logic they reach."""
    _, out = _tiny(tmp_path, "broken")
    kernel = out / "broken_seq_blocks_0_cmvm.v"
    code = kernel.read_text()
    broken = re.sub(r"model_inp\[(\d+):(\d+)\]", lambda m: f"model_inp[{int(m[1]) + 1000}:{int(m[2]) + 1000}]", code)
    assert broken != code
    kernel.write_text(broken)
    with pytest.raises(BitsmithError, match=r"'seq_blocks_0'.*0 LUTs with constant outputs.*out of bounds") as e:
        synth.synth_yosys(out)
    assert "\n" not in str(e.value)
    assert not (out / synth.RESULT_FILE).exists()


def test_zero_luts_of_plain_wiring_are_accepted():
    """16*x + 7 needs no LUT (da4ml counts 3 adder bits): 0 LUTs alone is no proof of deleted logic."""
    info = {"top": "t", "steps": [{"name": "l", "kind": "linear", "module": "t_l", "kernel_module": "t_l_cmvm",
                                   "da4ml_cost": 3.0, "varying_outputs": 1, "nonzero_weights": 1}]}
    wired = "module t_l_cmvm(model_inp, model_out);\n  assign model_out = { 1'h1, model_inp, 4'h7 };\nendmodule\n"
    assert synth.summarize(info, {"t_l": {}, "t_l_cmvm": {}}, wired, [])["luts"] == 0
    deleted = "module t_l_cmvm(model_inp, model_out);\n  assign model_out = 12'hxxx;\nendmodule\n"
    with pytest.raises(BitsmithError, match="0 LUTs with constant outputs"):
        synth.summarize(info, {"t_l": {}, "t_l_cmvm": {}}, deleted, [])


def test_missing_tools_say_what_to_install(design, monkeypatch):
    _, _, out, _, x, _ = design
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BitsmithError, match=r"^simulating the Verilog needs .*: apt install iverilog \(or verilator\)"):
        verilog_sim.simulate(out, x[:2])
    with pytest.raises(BitsmithError, match=r"^simulating with verilator needs verilator: apt install verilator$"):
        verilog_sim.simulate(out, x[:2], "verilator")
    with pytest.raises(BitsmithError, match=r"^synthesis needs yosys: apt install yosys$"):
        synth.synth_yosys(out)


def test_bad_requests_are_refused(design, tmp_path):
    _, _, out, _, x, _ = design
    with pytest.raises(BitsmithError, match="choose auto, icarus, verilator"):
        verilog_sim.simulate(out, x[:2], "modelsim")
    with pytest.raises(BitsmithError, match="rows of 16 values"):
        verilog_sim.simulate(out, x[:2, :3])
    with pytest.raises(BitsmithError, match="holds no Verilog export"):
        verilog_sim.simulate(tmp_path, x[:2])
    if shutil.which("verilator") and shutil.which("iverilog"):  # auto: Icarus for few rows, Verilator for many
        assert verilog_sim._tool("auto", 360)[0] == "icarus"
        assert verilog_sim._tool("auto", verilog_sim.AUTO_ICARUS_ROWS + 1)[0] == "verilator"


@needs_icarus
def test_float_relu_and_relu_first_are_exact(tmp_path):
    """A ReLU left in float is max(x, 0), exactly; a quantized ReLU may come first (the input bus is its format)."""
    torch.manual_seed(2)
    model = SeqModel(nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    graph, _ = quantize_pass(trace(model.eval(), (5,)), {"by": "name", "seq_blocks_0": integer(5, 2, relu=True),
                                                          "seq_blocks_1": integer(6, 3), "seq_blocks_3": integer(7, 2)})
    plan = plan_of(graph, "relu-first")
    verilog.write_verilog(plan, graph, tmp_path / "r", _da4ml.OPTIONS)
    x = np.random.default_rng(1).uniform(-9, 9, (200, 5)).astype(np.float32)
    theirs = verilog_sim.simulate(tmp_path / "r", x.astype(np.float64), "icarus")
    cmp = compare(reference(graph, torch.from_numpy(x)), theirs, plan.steps[-1].name)
    assert all(d == 0.0 for d, _ in cmp.per_step.values()) and len(cmp.per_step) == 4, cmp.per_step


@pytest.mark.slow
@needs_verilator
def test_verilator_agrees(design):
    """Verilator compiles for ~20 s even on a small design, so this runs with the slow tests."""
    _, plan, out, _, x, ours = design
    theirs = verilog_sim.simulate(out, x.astype(np.float64), "verilator")
    assert compare(ours, theirs, plan.steps[-1].name).max_abs_diff == 0.0
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
