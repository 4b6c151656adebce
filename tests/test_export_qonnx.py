"""QONNX export: the written model reproduces bitsmith's arithmetic step by step, and is a valid QONNX file."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("qonnx")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bitsmith.errors import BitsmithError  # noqa: E402
from bitsmith.export.plan import compare, plan_of, reference  # noqa: E402
from bitsmith.export.qonnx import INPUT, META_STEPS, NEEDS_EXTRA, qonnx_model, run_qonnx, write_qonnx  # noqa: E402
from bitsmith.passes.quantize import quantize_pass  # noqa: E402
from bitsmith.quant import Fixed  # noqa: E402
from tests.helpers import graph_of, integer  # noqa: E402

EIGHT_BIT = {"by": "type", "linear": integer(8), "relu": integer(8, relu=True)}


def quantized(name, shape, classes, config=EIGHT_BIT, train_steps=2):
    graph, _ = quantize_pass(graph_of(name, shape, classes, train_steps=train_steps), config)
    return graph, plan_of(graph, name)


def formats_config(x, w, b, r):
    """A quantize config with its own (width, frac) for a Linear's input, weight and bias, and a ReLU's input."""
    lin = {"name": "integer", "data_in_width": x[0], "data_in_frac_width": x[1], "weight_width": w[0],
           "weight_frac_width": w[1], "bias_width": b[0], "bias_frac_width": b[1]}
    relu = {"name": "integer", "data_in_width": r[0], "data_in_frac_width": r[1]}
    return {"by": "type", "linear": {"config": lin}, "relu": {"config": relu}}


def rows(n, features, frac, spread, seed=0):
    """Random rows, then as many on the ties of a 2^-frac grid (odd multiples of 2^-(frac+1)), some saturating."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, spread, (n, features))
    ties = (2 * rng.integers(-n, n, (n, features)) + 1) * 2.0 ** -(frac + 1)
    return np.concatenate([noise, ties]).astype(np.float32)


def run_both(graph, plan, x, tmp_path=None):
    model = qonnx_model(plan)
    if tmp_path is not None:
        write_qonnx(plan, tmp_path / "model.onnx")
        model = tmp_path / "model.onnx"
    theirs = run_qonnx(model, x)
    ours = reference(graph, torch.from_numpy(x))
    assert list(theirs) == [s.name for s in plan.steps] == list(ours)
    return ours, theirs, compare(ours, theirs, plan.steps[-1].name)


def assert_exact(cmp):
    assert all(d == 0.0 for d, _ in cmp.per_step.values()), cmp.per_step
    assert cmp.max_abs_diff == 0.0 and cmp.agreement == 1.0


def test_digits_mlp_is_bit_exact_on_random_rows_and_ties(tmp_path):
    graph, plan = quantized("digits-mlp", (64,), 10)
    assert plan.exact and plan.input_format == Fixed(8, 4)
    x = rows(300, 64, plan.input_format.frac, spread=4.0)
    ours, theirs, cmp = run_both(graph, plan, x, tmp_path)
    assert_exact(cmp)
    assert cmp.rows == 600 and all(v.shape[0] == 600 for v in theirs.values())
    last = ours[plan.steps[-1].name]
    assert np.ptp(last) > 1.0  # the outputs are not trivially constant


def representable_batchnorm():
    """jsc-three-linear-layers, whose first layer is a float BatchNorm, with statistics on a coarse dyadic grid and
    eps 0, and rows on a grid: x * scale + shift is exact in float32 whichever way it is evaluated."""
    graph = graph_of("jsc-three-linear-layers", (16,), 5, train_steps=2)
    bn = graph.gm.get_submodule("seq_blocks.0")
    with torch.no_grad():
        bn.eps = 0.0
        bn.running_var.fill_(0.25)  # 1/sqrt(var) = 2 exactly
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.round(t * 16) / 16)
    graph, _ = quantize_pass(graph, EIGHT_BIT)
    plan = plan_of(graph, "jsc-three-linear-layers")
    assert [s.kind for s in plan.steps][:2] == ["batchnorm1d", "relu"] and not plan.exact  # BN is float
    rng = np.random.default_rng(1)
    x = (rng.integers(-2**9, 2**9, (600, 16)) / 64).astype(np.float32)  # 10 bits: products and sums stay exact
    return graph, plan, x


def test_jsc_three_linear_layers_is_bit_exact_with_a_representable_batchnorm():
    """Every step must agree exactly where float32 rounds nothing."""
    graph, plan, x = representable_batchnorm()
    _, _, cmp = run_both(graph, plan, x)
    assert_exact(cmp)


def test_jsc_toy_float_batchnorm_agrees():
    """Real BatchNorm statistics: bitsmith (torch) evaluates x * scale + shift with a fused multiply-add from
    float32 parameters, QONNX with a float32 Mul then Add, so BN outputs differ by an ulp or two, and a quantized
    layer after it may rarely round the other way."""
    graph, plan = quantized("jsc-toy", (16,), 5)
    x = rows(500, 16, 4, spread=2.0, seed=2)
    ours, theirs, cmp = run_both(graph, plan, x)
    first_bn = next(i for i, s in enumerate(plan.steps) if s.kind == "batchnorm1d")
    for s in plan.steps[:first_bn]:
        assert cmp.per_step[s.name][0] == 0.0  # quantized steps before any float BN are exact
    for s in plan.steps:
        if s.kind == "batchnorm1d":
            assert np.allclose(theirs[s.name], ours[s.name], rtol=1e-5, atol=1e-5)
        else:
            assert cmp.per_step[s.name][1] <= 0.01 * cmp.rows  # rows off by a rounding flip
    assert cmp.agreement >= 0.99
    assert np.isfinite(theirs[plan.steps[-1].name]).all()


# (data_in, weight, bias, relu) as (width, frac); each case keeps every sum within float32's 24 bits.
FORMATS = {
    "2-bit": ((2, 1), (2, 1), (2, 1), (2, 1)),
    "4-bit": ((4, 2), (4, 2), (4, 2), (4, 2)),
    "frac>width": ((4, 6), (4, 7), (6, 9), (3, 5)),
    "negative-frac": ((6, -2), (4, -1), (6, -3), (5, -2)),
    "mixed": ((8, 3), (3, 2), (10, 8), (6, 3)),
    "1-bit-unsigned-relu": ((4, 1), (4, 3), (6, 4), (1, 0)),
    "wide": ((10, 5), (8, 6), (16, 12), (12, 6)),
}


@pytest.fixture(scope="module")
def digits_graph():
    graph = graph_of("digits-mlp", (64,), 10)
    with torch.no_grad():  # larger weights, so coarse (negative-frac) weight formats keep some nonzero values
        for m in graph.gm.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(8)
                m.bias.mul_(8)
    return graph


def check_formats(digits_graph, x_fmt, w_fmt, b_fmt, r_fmt, seed=0):
    graph, _ = quantize_pass(digits_graph, formats_config(x_fmt, w_fmt, b_fmt, r_fmt))
    plan = plan_of(graph, "digits-mlp")
    if not plan.exact:
        return None
    width, frac = x_fmt
    x = rows(200, 64, frac, spread=2.0 ** (width - 1 - frac), seed=seed)  # spans the range, some saturate
    _, _, cmp = run_both(graph, plan, x)
    assert_exact(cmp)
    return cmp


@pytest.mark.parametrize("formats", FORMATS.values(), ids=FORMATS.keys())
def test_formats_are_bit_exact(digits_graph, formats):
    assert check_formats(digits_graph, *formats) is not None


fmt = st.tuples(st.integers(2, 8), st.integers(-3, 10))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x_fmt=fmt, w_fmt=fmt, b_fmt=st.tuples(st.integers(2, 12), st.integers(-3, 12)),
       r_fmt=st.tuples(st.integers(1, 8), st.integers(-3, 10)), seed=st.integers(0, 2**16))
def test_random_formats_are_bit_exact(digits_graph, x_fmt, w_fmt, b_fmt, r_fmt, seed):
    assume(check_formats(digits_graph, x_fmt, w_fmt, b_fmt, r_fmt, seed) is not None)


def test_saved_file_is_valid_qonnx_with_one_quant_per_quantized_tensor(tmp_path):
    """Only onnx and qonnx's ModelWrapper: nothing here executes the model."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    _, plan = quantized("digits-mlp", (64,), 10, config=formats_config((8, 3), (6, 5), (10, 7), (7, 2)))
    path = tmp_path / "sub" / "dir" / "model.onnx"  # missing parents are created
    write_qonnx(plan, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temporary file left
    (path.parent / "plain").write_bytes(b"")
    assert path.stat().st_mode == (path.parent / "plain").stat().st_mode  # the usual permissions, not 0600
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    mw = ModelWrapper(str(path))
    assert {o.domain: o.version for o in model.opset_import}["qonnx.custom_op.general"] == 1

    expected = {}
    for i, s in enumerate(plan.steps):
        after_relu = i > 0 and plan.steps[i - 1].kind == "relu"  # values >= 0: unsigned, one bit fewer
        expected[f"{s.name}_in_q"] = Fixed(7, 3, False) if after_relu else s.data_in
        if s.kind == "linear":
            expected[f"{s.name}_weight_q"], expected[f"{s.name}_bias_q"] = s.weight_fmt, s.bias_fmt
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    assert len(quants) == len(expected) == 3 * 3 + 2
    for node in quants:
        want = expected[node.output[0]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.domain == "qonnx.custom_op.general"
        assert attrs == {"signed": int(want.signed), "narrow": 0, "rounding_mode": b"ROUND"}
        _, scale, zero, bits = node.input
        assert mw.get_initializer(scale) == np.float32(2.0 ** -want.frac)
        assert mw.get_initializer(zero) == 0.0 and mw.get_initializer(bits) == want.width
    assert {s.name: s.data_in.signed for s in plan.steps if s.kind == "relu"} == {"seq_blocks_1": False,
                                                                               "seq_blocks_3": False}
    # initializers hold the already rounded parameters, transposed for MatMul
    first = plan.steps[0]
    assert np.array_equal(mw.get_initializer(f"{first.name}_weight"), first.weight.T.astype(np.float32))
    # the batch is symbolic; every step's output is a tensor named after the step
    assert model.graph.input[0].name == INPUT
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert model.graph.output[0].name == plan.steps[-1].name
    produced = {o for n in model.graph.node for o in n.output}
    assert {s.name for s in plan.steps} <= produced
    meta = {p.key: p.value for p in model.metadata_props}
    steps = json.loads(meta[META_STEPS])
    assert [s["name"] for s in steps] == [s.name for s in plan.steps]
    assert steps[0]["weight"] == {"width": 6, "frac": 5, "signed": True}
    assert steps[2]["data_in"] == {"width": 8, "frac": 3, "signed": True}  # bitsmith's format, and as written:
    assert steps[2]["input_quant"] == {"width": 7, "frac": 3, "signed": False}


@pytest.mark.parametrize("relu", ["quantized", "float"])
def test_a_linear_after_a_relu_reads_an_unsigned_quant_and_stays_bit_exact(tmp_path, relu):
    """A signed w-bit input that a ReLU produces is written unsigned with w - 1 bits and the same scale, what
    QONNX tools read as its type; the values are the same, so the model stays bit-exact (ties and saturation
    included: the rows span beyond the input's range)."""
    import onnx

    config = formats_config((5, 2), (6, 4), (10, 6), (6, 2))
    if relu == "float":
        del config["relu"]
    graph, plan = quantized("digits-mlp", (64,), 10, config=config)
    assert plan.exact and [s.kind for s in plan.steps] == ["linear", "relu", "linear", "relu", "linear"]
    model = qonnx_model(plan)
    quants = {n.output[0]: n for n in model.graph.node if n.op_type == "Quant"}
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, (signed, bits) in {"seq_blocks_0_in_q": (1, 5), "seq_blocks_2_in_q": (0, 4),
                                 "seq_blocks_4_in_q": (0, 4)}.items():
        node = quants[name]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"signed": signed, "narrow": 0, "rounding_mode": b"ROUND"}, name
        assert inits[node.input[1]] == np.float32(2.0 ** -2) and inits[node.input[3]] == bits
    x = rows(300, 64, 2, spread=16.0, seed=3)
    _, theirs, cmp = run_both(graph, plan, x, tmp_path)
    assert_exact(cmp)
    assert (theirs["seq_blocks_2"] != 0).any()  # the layer after the ReLU sees nonzero inputs


def test_any_batch_runs_from_one_file_which_is_left_unchanged(tmp_path):
    graph, plan = quantized("digits-mlp", (64,), 10)
    path = tmp_path / "m.onnx"
    write_qonnx(plan, path)
    before = path.read_bytes()
    x = rows(4, 64, 4, 4.0)
    full = run_qonnx(path, x)
    for n in (1, 3):
        part = run_qonnx(path, x[:n].astype(np.float64))  # float64 rows from float32 values: the same
        assert all(np.array_equal(part[k], full[k][:n]) for k in full)
    empty = run_qonnx(path, x[:0])
    assert [v.shape for v in empty.values()] == [(0, v.shape[1]) for v in full.values()]
    assert path.read_bytes() == before
    model = qonnx_model(plan)
    copy = model.SerializeToString()
    run_qonnx(model, x)
    assert model.SerializeToString() == copy  # the caller's model keeps its symbolic batch
    with pytest.raises(BitsmithError, match="64 features"):
        run_qonnx(path, x[:, :10])
    with pytest.raises(BitsmithError, match="no QONNX model"):
        run_qonnx(tmp_path / "missing.onnx", x)


def test_bad_paths_are_refused_and_leave_nothing(tmp_path):
    _, plan = quantized("digits-mlp", (64,), 10)
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("keep")
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(BitsmithError, match="is a directory"):
        write_qonnx(plan, tmp_path / "a_dir")
    with pytest.raises(BitsmithError, match="cannot create"):
        write_qonnx(plan, tmp_path / "a_file" / "deeper" / "m.onnx")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing
    assert (tmp_path / "a_file").read_text() == "keep"


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    _, plan = quantized("digits-mlp", (64,), 10)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(BitsmithError, match="No space left"):
        write_qonnx(plan, path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_one_bit_signed_is_refused():
    _, plan = quantized("digits-mlp", (64,), 10)
    first = plan.steps[0]
    bad = dataclasses.replace(plan, steps=(dataclasses.replace(first, weight_fmt=Fixed(1, 0)), *plan.steps[1:]))
    with pytest.raises(BitsmithError, match="1-bit signed"):
        qonnx_model(bad)


def test_missing_extra_is_one_clear_error(monkeypatch, tmp_path):
    import onnx

    _, plan = quantized("digits-mlp", (64,), 10)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(BitsmithError) as err:
        write_qonnx(plan, tmp_path / "m.onnx")
    assert str(err.value) == NEEDS_EXTRA and "\n" not in NEEDS_EXTRA
    assert not (tmp_path / "m.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnx", onnx)
    monkeypatch.setitem(sys.modules, "qonnx.core.onnx_exec", None)
    with pytest.raises(BitsmithError, match="qonnx extra"):
        run_qonnx(qonnx_model(plan), np.zeros((1, 64), np.float32))


def test_each_reason_is_stated_once_with_every_layer_it_concerns():
    graph, plan = quantized("jsc-toy", (16,), 5)
    norms = tuple(s.name for s in plan.steps if s.kind == "batchnorm1d")
    assert len(norms) == 4 and [(r.what, r.layers) for r in plan.inexact] == [("float BatchNorm1d", norms)]
    (hls,), (onnx_,) = plan.notes("hls4ml"), plan.notes("qonnx")  # one sentence for the four layers
    assert all(n in hls for n in norms) and "hls4ml" in hls and "QONNX" not in hls
    assert "QONNX" in onnx_ and "hls4ml" not in onnx_


def test_a_float_relu_is_exact_except_on_the_raw_input():
    """max(x, 0) rounds nothing: a float ReLU between quantized layers leaves the design exact (and QONNX agrees
    bit for bit); first in the chain it sees the raw input, which hls4ml reads as fixed point."""
    graph, plan = quantized("digits-mlp", (64,), 10, config={"by": "type", "linear": integer(8, 4)})
    assert [s.quantized for s in plan.steps if s.kind == "relu"] == [False, False] and plan.exact
    _, _, cmp = run_both(graph, plan, rows(200, 64, 4, spread=4.0))
    assert_exact(cmp)
    from bitsmith.graph import trace

    first, _ = quantize_pass(trace(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(16, 5)).eval(), (16,)),
                             {"by": "type", "linear": integer(8, 4)})
    assert [(r.what, r.layers) for r in plan_of(first, "relu-first").inexact] == [("float input", ("_0",))]


def _verify(graph, plan, path, x):
    """export's --verify on the rows ``x`` of a QONNX file, with what it printed."""
    import io

    from rich.console import Console

    from bitsmith.data._base import Split
    from bitsmith.export import verify_export

    out = io.StringIO()
    x = torch.from_numpy(x)
    summary = verify_export(plan, graph, Split(x, torch.zeros(len(x))), "qonnx", path, None,
                            Console(file=out, width=300))
    return summary, out.getvalue()


def test_verify_calls_a_design_bit_exact_only_when_it_is(tmp_path):
    import onnx

    graph, plan = quantized("digits-mlp", (64,), 10)
    x = rows(200, 64, plan.input_format.frac, spread=4.0)
    path = tmp_path / "model.onnx"
    write_qonnx(plan, path)
    summary, printed = _verify(graph, plan, path, x)
    assert summary["bit_exact"] and printed.rstrip().endswith("of 400 rows (bit-exact)")
    # Round the input down instead of to even: every layer is quantized, so a difference is a bug to report.
    model = onnx.load(path)
    quant = next(n for n in model.graph.node if n.op_type == "Quant")
    next(a for a in quant.attribute if a.name == "rounding_mode").s = b"FLOOR"
    onnx.save(model, path)
    summary, printed = _verify(graph, plan, path, x)
    assert not summary["bit_exact"] and summary["first_difference"] == plan.steps[0].name
    assert "bit-exact)" not in printed
    assert printed.rstrip().endswith(f"(NOT bit-exact, though every layer is quantized: first difference at "
                                     f"{plan.steps[0].name}; a bug in the export)")


def test_verify_of_float_batchnorm_is_never_called_bit_exact(tmp_path):
    graph, plan = quantized("jsc-toy", (16,), 5)
    path = tmp_path / "model.onnx"
    write_qonnx(plan, path)
    summary, printed = _verify(graph, plan, path, rows(500, 16, 4, spread=2.0, seed=2))
    assert not summary["bit_exact"] and summary["max_layer_diff"] > 0 and "(bit-exact)" not in printed
    last = printed.rstrip().splitlines()[-1]
    assert (f"(not bit-exact: float BatchNorm1d; layers match within {summary['max_layer_diff']:.3g}, the first to "
            f"differ is {summary['first_difference']})") in last
    assert summary["first_difference"] in {s.name for s in plan.steps if s.kind == "batchnorm1d"}


def test_verify_of_a_float_design_that_matched_says_so_without_bit_exact(tmp_path):
    graph, plan, x = representable_batchnorm()
    path = tmp_path / "model.onnx"
    write_qonnx(plan, path)
    summary, printed = _verify(graph, plan, path, x)
    assert summary["equal_on_split"] and not summary["bit_exact"]
    assert printed.rstrip().endswith("(equal on these rows, but not bit-exact: float BatchNorm1d)")
