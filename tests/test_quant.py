"""Property tests of the fixed-point quantizer and the quantized modules."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitsmith.quant import Fixed, IntegerConfig, QLinear, QReLU, quantize, quantized_copy

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
