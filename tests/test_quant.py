"""Property tests of the fixed-point quantizer and the quantized modules."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from bitsmith.quant import Fixed, IntegerConfig, QConv2d, QLinear, QReLU, quantize, quantized_copy

formats = st.integers(1, 16).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, w)))
values = st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(formats, values)
def test_idempotent_on_grid_and_in_range(fmt, xs):
    f = Fixed(*fmt)
    x = torch.tensor(xs)
    q = quantize(x, f)
    assert torch.equal(quantize(q, f), q)  # quantizing twice equals once
    k = q * 2 ** f.frac
    assert torch.equal(k, k.round())  # on the grid
    assert k.min() >= f.qmin and k.max() <= f.qmax  # in range
    inside = (x >= f.lo) & (x <= f.hi)
    assert torch.all((q[inside] - x[inside]).abs() <= f.scale / 2 + 1e-6)  # round to nearest
    assert torch.all(q[x > f.hi] == f.hi) and torch.all(q[x < f.lo] == f.lo)  # saturate


@settings(max_examples=100, deadline=None)
@given(formats, values)
def test_gradient_passes_straight_through_inside_the_range(fmt, xs):
    f = Fixed(*fmt)
    x = torch.tensor(xs, requires_grad=True)
    quantize(x, f).sum().backward()
    v = x.detach()
    inside = (v >= f.lo) & (v <= f.hi)
    outside = (v < f.lo - f.scale / 2) | (v > f.hi + f.scale / 2)  # beyond what rounds into range
    assert torch.all(x.grad[inside] == 1.0)
    assert torch.all(x.grad[outside] == 0.0)


@settings(max_examples=200, deadline=None)
@given(formats, values)
def test_inference_path_equals_training_path(fmt, xs):
    f = Fixed(*fmt)
    x = torch.tensor(xs)
    with torch.no_grad():
        fast = quantize(x, f)
    slow = quantize(x.clone().requires_grad_(), f).detach()
    assert torch.equal(fast, slow)


def test_known_values():
    f = Fixed(4, 2)  # step 0.25, range [-2, 1.75]
    x = torch.tensor([0.1, 0.13, -0.3, 5.0, -5.0, 1.6])
    assert quantize(x, f).tolist() == [0.0, 0.25, -0.25, 1.75, -2.0, 1.5]


def _cfg(w=4, f=2):
    return IntegerConfig(Fixed(w, f), Fixed(w, f), Fixed(w, f))


def test_qlinear_matches_explicit_fake_quant_and_shares_parameters():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 3)
    q = quantized_copy(lin, _cfg())
    assert isinstance(q, QLinear) and isinstance(q, torch.nn.Linear)
    assert q.weight is lin.weight  # shared, not copied: the pass output costs no weight copy
    x = torch.randn(5, 6)
    f = Fixed(4, 2)
    expected = torch.nn.functional.linear(quantize(x, f), quantize(lin.weight, f), quantize(lin.bias, f))
    with torch.no_grad():
        assert torch.equal(q(x), expected)
    assert list(q.state_dict()) == ["weight", "bias"]  # checkpoints line up with the float model


def test_weight_cache_follows_in_place_updates():
    lin = torch.nn.Linear(4, 2)
    q = quantized_copy(lin, _cfg(8, 4))
    x = torch.randn(3, 4)
    with torch.no_grad():
        first = q(x)
        lin.weight.add_(1.0)  # an optimizer step changes the tensor in place
        second = q(x)
    assert not torch.equal(first, second)


def test_qat_step_changes_weights():
    torch.manual_seed(0)
    q = quantized_copy(torch.nn.Linear(4, 2), _cfg(8, 4))
    before = q.weight.detach().clone()
    opt = torch.optim.SGD(q.parameters(), lr=0.1)
    q(torch.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(before, q.weight)


def test_qrelu_quantizes_its_input():
    r = quantized_copy(torch.nn.ReLU(), IntegerConfig(Fixed(3, 1)))
    assert isinstance(r, QReLU)
    assert r(torch.tensor([-1.0, 0.3, 0.8, 9.0])).tolist() == [0.0, 0.5, 1.0, 1.5]


# --- Conv2d, unsigned ReLU input, fractions outside [0, width] ---------------------------------------


def ref_q(x: torch.Tensor, width: int, frac: int, signed: bool = True) -> torch.Tensor:
    """Hand-written fixed point: round half to even onto k / 2**frac, saturate k to the width's range."""
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    return torch.clamp(torch.round(x * 2.0**frac), lo, hi) / 2.0**frac


def ref_q_ste(x: torch.Tensor, width: int, frac: int) -> torch.Tensor:
    """The same values with a straight-through gradient where the rounded value is in range."""
    lo, hi = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    k = torch.round(x.detach() * 2.0**frac)
    q = ref_q(x.detach(), width, frac)
    return torch.where((k >= lo) & (k <= hi), x + (q - x).detach(), q)


# digits-cnn's conv layers: data_in, weight and bias at distinct widths so that each is counted apart.
CONV_Q = {"name": "integer", "data_in_width": 7, "data_in_frac_width": 3, "weight_width": 6,
          "weight_frac_width": 5, "bias_width": 5, "bias_frac_width": 4}
CONVS = {"seq_blocks_0": dict(macs=1 * 9 * 16 * 8 * 8, in_elems=1 * 8 * 8, weights=16 * 1 * 9, biases=16),
         "seq_blocks_4": dict(macs=16 * 9 * 32 * 4 * 4, in_elems=16 * 4 * 4, weights=32 * 16 * 9, biases=32)}


@pytest.fixture(scope="module")
def digits_cnn():
    from bitsmith.passes.quantize import quantize_pass
    from tests.helpers import graph_of

    g = graph_of("digits-cnn", (1, 8, 8), 10, train_steps=2)
    q, info = quantize_pass(g, {"by": "type", "conv2d": {"config": CONV_Q}})
    return g, q, info


def _conv_reference(float_gm: torch.nn.Module, ste: bool) -> torch.nn.Module:
    """A copy of the float model whose Conv2d layers compute on hand-quantized values."""
    ref = copy.deepcopy(float_gm)
    qa = ref_q_ste if ste else ref_q
    for m in ref.modules():
        if type(m) is torch.nn.Conv2d:
            def forward(x, m=m):
                return F.conv2d(qa(x, 7, 3), qa(m.weight, 6, 5), qa(m.bias, 5, 4), m.stride, m.padding,
                                m.dilation, m.groups)
            m.forward = forward
    return ref


def _digit_images(n=64):
    from bitsmith.data import get_dataset

    data = get_dataset("digits-image")
    x, y = data.val.x[:n], data.val.y[:n]
    return x, y


def test_quantize_by_type_turns_digits_cnn_convs_into_qconv2d(digits_cnn):
    g, q, info = digits_cnn
    kinds = {n: type(q.gm.get_submodule(i.target)) for n, i in q.nodes.items() if i.op == "call_module"}
    assert [n for n, k in kinds.items() if k is QConv2d] == list(CONVS)
    assert kinds["seq_blocks_9"] is torch.nn.Linear and kinds["seq_blocks_2"] is torch.nn.ReLU  # left in float
    assert set(info["quantized"]) == set(CONVS)
    for name in CONVS:
        m = q.gm.get_submodule(q.nodes[name].target)
        assert m.qconfig.data_in == Fixed(7, 3) and m.qconfig.weight == Fixed(6, 5) and m.qconfig.bias == Fixed(5, 4)
        assert m.weight is g.gm.get_submodule(g.nodes[name].target).weight  # shared with the float graph
        assert q.nodes[name].quant == {k: v for k, v in CONV_Q.items()}


def test_qconv2d_forward_equals_hand_written_fixed_point(digits_cnn):
    g, q, _ = digits_cnn
    x, _ = _digit_images()
    x = torch.cat([x, torch.randn(16, 1, 8, 8) * 6])  # real images plus values beyond the input range
    ref = _conv_reference(g.gm, ste=False)
    with torch.no_grad():
        got, want, plain = q.gm(x), ref(x), g.gm(x)
        assert torch.equal(got, want)
        assert not torch.equal(got, plain)  # the quantization did something
        # Layer by layer as well: the first conv alone.
        conv = q.gm.get_submodule("seq_blocks.0")
        assert torch.equal(conv(x), F.conv2d(ref_q(x, 7, 3), ref_q(conv.weight, 6, 5), ref_q(conv.bias, 5, 4),
                                             padding=1))


def test_bits_and_bops_count_conv_weights_at_their_widths(digits_cnn):
    from bitsmith.passes import get_pass

    _, q, _ = digits_cnn
    _, bits = get_pass("bits").fn(q, {})
    _, bops = get_pass("bops").fn(q, {})
    for name, c in CONVS.items():
        assert bits["nodes"][name]["weight_bits"] == c["weights"] * 6
        assert bits["nodes"][name]["bias_bits"] == c["biases"] * 5
        assert bits["nodes"][name]["activation_bits"] == c["in_elems"] * 7
        assert bops["nodes"][name] == c["macs"] * 6 * 7
    assert bits["nodes"]["seq_blocks_9"]["weight_bits"] == 32 * 10 * 32  # the float Linear at 32 bits
    assert bits["weight_bits"] == sum(c["weights"] for c in CONVS.values()) * 6 + 320 * 32
    assert bits["bias_bits"] == sum(c["biases"] for c in CONVS.values()) * 5 + 10 * 32
    assert bops["bops"] == sum(c["macs"] for c in CONVS.values()) * 6 * 7 + 320 * 32 * 32


def test_qconv2d_backward_passes_straight_through(digits_cnn):
    g, q, _ = digits_cnn
    x, y = _digit_images()
    gm = copy.deepcopy(q.gm)  # the fixture's graph stays untouched
    ref = _conv_reference(g.gm, ste=True)
    F.cross_entropy(gm(x), y).backward()
    F.cross_entropy(ref(x), y).backward()
    for name in CONVS:
        target = q.nodes[name].target
        got, want = gm.get_submodule(target), ref.get_submodule(target)
        assert isinstance(got, QConv2d)
        for p in ("weight", "bias"):
            grad = getattr(got, p).grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (name, p)
            torch.testing.assert_close(grad, getattr(want, p).grad, rtol=1e-5, atol=1e-7)


def test_relu_input_is_quantized_unsigned_through_the_pass():
    from bitsmith.passes.quantize import quantize_pass
    from tests.helpers import graph_of, integer

    g = graph_of("digits-mlp", (64,), 10)
    q, _ = quantize_pass(g, {"by": "type", "relu": integer(4, 2, relu=True), "linear": integer(4, 2)})
    relu = q.gm.get_submodule(q.nodes["seq_blocks_1"].target)
    lin = q.gm.get_submodule(q.nodes["seq_blocks_0"].target)
    assert isinstance(relu, QReLU)
    assert relu.qconfig.data_in == Fixed(4, 2, signed=False)
    assert lin.qconfig.data_in == Fixed(4, 2, signed=True)  # a Linear's input stays signed
    ties = (torch.arange(-12, 72) + 0.5) / 4  # every tie between grid points, below, inside and above the range
    x = torch.cat([ties, torch.randn(2000) * 3, torch.tensor([-100.0, -0.1, 1.8, 2.6, 3.74, 3.9, 100.0])])
    want = torch.relu(torch.clamp(torch.round(x * 4), 0, 15) / 4)
    with torch.no_grad():
        out = relu(x)
    assert torch.equal(out, want)
    assert torch.equal(relu(x.clone().requires_grad_()).detach(), want)  # the QAT path agrees
    assert out.max().item() == 3.75  # 15/4; a signed 4-bit format would stop at 7/4
    assert relu(torch.tensor([100.0, 2.6])).tolist() == [3.75, 2.5]
    assert torch.all(out[x < 0] == 0)
    assert relu(torch.tensor([0.125, 0.375, 3.625])).tolist() == [0.0, 0.5, 3.5]  # ties to even


@pytest.mark.parametrize("frac,grid_step,known", [
    # width 4, frac 6 (ap_fixed<4,-2>): step 1/64, range [-8/64, 7/64]
    (6, 1 / 64, {0.1: 6 / 64, 0.2: 7 / 64, -0.2: -8 / 64, 0.5 / 64: 0.0, 1.5 / 64: 2 / 64, -2.5 / 64: -2 / 64}),
    # width 4, frac -1: step 2, range [-16, 14]
    (-1, 2.0, {1.0: 0.0, 3.0: 4.0, 5.0: 4.0, 100.0: 14.0, -100.0: -16.0, -3.0: -4.0, 13.9: 14.0}),
])
def test_fractions_beyond_the_width_quantize_onto_their_grid(frac, grid_step, known):
    from bitsmith.passes.quantize import quantize_pass
    from tests.helpers import graph_of, integer

    f = Fixed(4, frac)
    assert f.scale == grid_step and f.lo == -8 * grid_step and f.hi == 7 * grid_step
    grid = [k * grid_step for k in range(-8, 8)]
    x = torch.linspace(-20 * grid_step, 20 * grid_step, 4001)
    for q in (quantize(x, f), quantize(x.clone().requires_grad_(), f).detach()):
        assert sorted(set(q.tolist())) == grid  # every grid point reached, nothing else
        assert torch.equal(q, ref_q(x, 4, frac))
    keys = torch.tensor(list(known))
    assert quantize(keys, f).tolist() == pytest.approx(list(known.values()), abs=0)
    # Through the pass: the format is taken as written, and the layer computes on that grid.
    g = graph_of("jsc-tiny")
    q, _ = quantize_pass(g, {"by": "type", "linear": integer(4, frac)})
    lin = q.gm.get_submodule(q.nodes["seq_blocks_2"].target)
    assert lin.qconfig.data_in == lin.qconfig.weight == lin.qconfig.bias == f
    xin = torch.randn(32, 16) * 10 * grid_step
    with torch.no_grad():
        assert torch.equal(lin(xin), F.linear(ref_q(xin, 4, frac), ref_q(lin.weight, 4, frac),
                                              ref_q(lin.bias, 4, frac)))
