"""Learned fixed-point widths: trainable fractional bits per layer, output channel or weight.

The arithmetic is ``quant.py``'s (round half to even; activations saturate),
with the number of fractional bits ``f`` a trainable tensor, rounded to an
integer in the forward pass (straight through in the backward one). Weights
and biases do not saturate: the frozen layer's format is the narrowest that
holds their values. Its gradient comes
from the rounding error ``d = q - x``: a value on a grid with ``f`` fractional
bits is off by about ``2**-f``, so ``dd/df = -ln 2 * d`` (the surrogate of HGQ,
Sun et al. 2024). A cost penalty (``ebops``) pulls ``f`` down; a weight whose
``f`` falls low enough rounds to 0 and is pruned.

Activations have one learned width per tensor (per layer): a per-channel
activation width has no bit-exact per-layer type in the export targets. Their
integer bits come from calibration on the training split (``observe``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bitsmith.quant import Fixed

LN2 = math.log(2.0)
GRANULARITIES = ("layer", "channel", "weight")


def grid(frac: torch.Tensor, int_bits: int, signed: bool) -> tuple[float, int, int]:
    """(scale, lo, hi) of ``round(frac)`` fractional bits and ``int_bits`` integer bits: the integers a value
    times ``scale`` rounds to lie in [lo, hi]; both 0 when ``i + f < 0`` (everything rounds to zero)."""
    f = round(float(frac))
    top = 2.0 ** (int_bits + f)  # steps from 0 to the range's edge
    return 2.0 ** f, (-math.floor(top) if signed else 0), max(math.ceil(top) - 1, 0)


def act_width(frac: int, int_bits: int, signed: bool) -> int:
    """Bits of an activation format with ``frac`` fractional and ``int_bits`` integer bits, sign included (no
    fewer than 0 beside the sign)."""
    return max(int_bits + frac, 0) + int(signed)


def _round_saturate(x, frac, int_bits: int, signed: bool):
    """(``x`` rounded and saturated, where it was not saturated, the rounding error)."""
    scale, lo, hi = grid(frac, int_bits, signed)
    k = torch.round(x * scale)
    q = k.clamp(lo, hi)
    inside = q == k
    q = q.div_(scale)
    return q, inside, q - x


class _Round(torch.autograd.Function):
    """``x`` on the grid of ``round(frac)`` fractional bits (a number: one format for the whole tensor) with
    ``int_bits`` integer bits, saturated. One autograd node with its bounds computed as Python numbers: a
    training step of a small model is mostly per-operation overhead."""

    @staticmethod
    def forward(ctx, x, frac, int_bits: int, signed: bool):
        q, inside, err = _round_saturate(x, frac, int_bits, signed)
        ctx.save_for_backward(inside, err)
        return q

    @staticmethod
    def backward(ctx, grad):
        inside, err = ctx.saved_tensors
        g_x = grad * inside  # straight through inside the range, zero where saturated
        return g_x, (g_x * err).sum() * -LN2, None, None


class _RoundBits(torch.autograd.Function):
    """A weight tensor on the grids of its own ``round(frac)`` (per tensor, channel or weight), and the sum of
    its values' bits (``log2|k| + 1`` of each nonzero integer ``k``: a zero costs nothing). No saturation:
    the frozen format is the narrowest that holds the values. The bits are ``log2|q| + frac + 1`` on nonzero
    values, and their gradient passes to ``w`` as the values' does (straight through): it lowers ``frac``
    and shrinks weights towards zero, which is what prunes. The values' gradient is straight through for
    ``w`` and ``-ln 2 * error`` for ``frac``."""

    @staticmethod
    def forward(ctx, w, frac):
        scale = torch.exp2(torch.round(frac))
        k = torch.round(w * scale)
        q = k / scale
        nonzero = k != 0
        bits = (torch.log2(k.abs().clamp_(min=1)) + nonzero).sum()
        ctx.save_for_backward(q, q - w, nonzero)
        ctx.frac_shape = frac.shape
        return q, bits

    @staticmethod
    def backward(ctx, grad_q, grad_bits):
        q, err, nonzero = ctx.saved_tensors
        g_f = (grad_q * err * -LN2 + grad_bits * nonzero).sum_to_size(ctx.frac_shape)
        g_w = grad_q + grad_bits * nonzero / (torch.where(nonzero, q, 1.0) * LN2)  # d log2|q| / dq, q ~ w
        return g_w, g_f


class _LinearStep(torch.autograd.Function):
    """A learned-width Linear in training, as one autograd node: (input rounding,) weight and bias rounding,
    ``x @ W.T + b``, and the layer's EBOPs (weight bits x input bits + bias bits). The same arithmetic and
    gradients as ``_Round``, ``_RoundBits`` and ``F.linear`` chained (a test checks), in one node instead of
    several: a small layer's training step is mostly per-node overhead."""

    @staticmethod
    def forward(ctx, x, w, b, w_frac, b_frac, a_frac, a_int: int, a_signed: bool, round_input: bool):
        f = round(float(a_frac))
        a_bits = act_width(f, a_int, a_signed)
        x_err = inside = None
        if round_input:
            xq, inside, x_err = _round_saturate(x, a_frac, a_int, a_signed)
        else:
            xq = x
        ws, bs = torch.exp2(torch.round(w_frac)), torch.exp2(torch.round(b_frac))
        kw, kb = torch.round(w * ws), torch.round(b * bs)
        wq, bq = kw / ws, kb / bs
        nzw, nzb = kw != 0, kb != 0
        w_bits = (torch.log2(kw.abs().clamp_(min=1)) + nzw).sum()
        b_bits = (torch.log2(kb.abs().clamp_(min=1)) + nzb).sum()
        out = torch.addmm(bq, xq, wq.t())
        ctx.save_for_backward(xq, wq, bq, wq - w, bq - b, nzw, nzb, x_err, inside, w_bits)
        ctx.meta = (a_bits, a_int + f > 0, w_frac.shape, b_frac.shape, round_input)
        return out, w_bits * a_bits + b_bits

    @staticmethod
    def backward(ctx, g_out, g_e):
        xq, wq, bq, w_err, b_err, nzw, nzb, x_err, inside, w_bits = ctx.saved_tensors
        a_bits, a_active, w_shape, b_shape, round_input = ctx.meta
        g_xq, g_wq, g_bq = g_out @ wq, g_out.t() @ xq, g_out.sum(0)
        g_wb = g_e * a_bits  # d EBOPs / d weight bits
        g_w = g_wq + g_wb * nzw / (torch.where(nzw, wq, 1.0) * LN2)
        g_wf = (g_wq * w_err * -LN2 + g_wb * nzw).sum_to_size(w_shape)
        g_b = g_bq + g_e * nzb / (torch.where(nzb, bq, 1.0) * LN2)
        g_bf = (g_bq * b_err * -LN2 + g_e * nzb).sum_to_size(b_shape)
        g_af = g_e * w_bits if a_active else torch.zeros_like(g_e)  # d EBOPs / d input bits (0 where clipped)
        if round_input:
            g_x = g_xq * inside
            g_af = g_af + (g_x * x_err).sum() * -LN2
        else:
            g_x = g_xq
        return g_x, g_w, g_b, g_wf, g_bf, g_af, None, None, None


def rounded(frac: torch.Tensor) -> torch.Tensor:
    """``frac`` rounded to integers, the gradient passing straight through."""
    return frac + (torch.round(frac) - frac).detach()


def learned_quantize(x: torch.Tensor, frac: torch.Tensor, int_bits: int, signed: bool = True) -> torch.Tensor:
    """``x`` on one learned grid (``frac`` a one-element tensor), saturated to ``int_bits`` integer bits."""
    if not (x.requires_grad or frac.requires_grad) or not torch.is_grad_enabled():
        scale, lo, hi = grid(frac, int_bits, signed)
        return x.mul(scale).round_().clamp_(lo, hi).div_(scale)
    return _Round.apply(x, frac, int_bits, signed)


def learned_weights(w: torch.Tensor, frac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``w`` on the grids of ``frac``, the sum of its values' bits)."""
    return _RoundBits.apply(w, frac)


def peak_of(values: list[torch.Tensor], quantile: float) -> float:
    """The ``quantile`` of the magnitudes seen (1: the largest); the values above it will saturate."""
    v = torch.cat(values) if values else torch.zeros(1)
    if quantile >= 1:
        return float(v.max())
    return float(v.kthvalue(max(1, math.ceil(quantile * len(v)))).values)


def int_bits_for(peak: float) -> int:
    """Integer bits (beside the sign) that hold ``peak``: ``2**i >= peak``."""
    return math.ceil(math.log2(peak)) if peak > 0 else 0


class LearnedActivation(nn.Module):
    """One tensor's learned format; its integer bits come from the largest magnitude seen (``observe``)."""

    def __init__(self, signed: bool, init_frac: float):
        super().__init__()
        self.signed = signed
        self.frac = nn.Parameter(torch.tensor(float(init_frac)))
        self.register_buffer("int_bits", torch.tensor(0, dtype=torch.long))
        self.observing = False
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            x = x if self.signed else F.relu(x)
            self.seen.append(x.detach().abs().flatten())
            return x
        return learned_quantize(x, self.frac, int(self.int_bits), self.signed)

    def bits(self) -> torch.Tensor:
        """Differentiable width (sign included)."""
        return F.relu(self.int_bits + rounded(self.frac)) + (1 if self.signed else 0)

    def fixed(self) -> Fixed:
        f = int(torch.round(self.frac.detach()))
        return Fixed(int(self.int_bits) + f + self.signed, f, self.signed)


def _frac_shape(weight: torch.Tensor, granularity: str) -> tuple[int, ...]:
    if granularity == "weight":
        return tuple(weight.shape)
    if granularity == "channel":
        return (weight.shape[0],) + (1,) * (weight.dim() - 1)
    return ()


class _LearnedKernel(nn.Module):
    """Shared by Linear and Conv2d: learned weight and bias widths, and an input quantizer unless a learned
    ReLU feeds the layer (its format is then the ReLU's, and rounding again would change nothing)."""

    float_type: type

    def _setup(self, module: nn.Module, granularity: str, init_frac: float, own_input: bool, init_act: float):
        self.weight = nn.Parameter(module.weight.detach().clone())
        self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())
        self.granularity = granularity
        self.w_frac = nn.Parameter(torch.full(_frac_shape(self.weight, granularity), float(init_frac)))
        b_shape = () if granularity == "layer" or self.bias is None else tuple(self.bias.shape)
        self.b_frac = None if self.bias is None else nn.Parameter(torch.full(b_shape, float(init_frac)))
        self.act = LearnedActivation(True, init_act) if own_input else None
        self.producer: LearnedActivation | None = None  # set by the graph conversion when a ReLU feeds it
        self._ebops = None

    def quantized(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias on their grids; their bits are kept for ``ebops`` (this step's penalty)."""
        self._ebops = None
        w, self._w_bits = learned_weights(self.weight, self.w_frac)
        b, self._b_bits = (None, 0) if self.bias is None else learned_weights(self.bias, self.b_frac)
        return w, b

    def q_weight(self) -> torch.Tensor:
        return self.quantized()[0]

    def q_bias(self) -> torch.Tensor | None:
        return self.quantized()[1]

    def input_act(self) -> LearnedActivation:
        return self.act if self.act is not None else self.producer

    def ebops(self) -> torch.Tensor:
        """Of the last forward: sum over the kernel of weight bits x input bits (one kernel instance), plus
        the bias bits."""
        if self._ebops is not None:
            return self._ebops
        return self._w_bits * self.input_act().bits() + self._b_bits


class LearnedLinear(_LearnedKernel):
    float_type = nn.Linear

    def __init__(self, module: nn.Linear, granularity: str, init_frac: float, own_input: bool, init_act: float):
        super().__init__()
        self.in_features, self.out_features = module.in_features, module.out_features
        self._setup(module, granularity, init_frac, own_input, init_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.input_act()
        if torch.is_grad_enabled() and self.bias is not None and a is not None and x.dim() == 2:
            out, self._ebops = _LinearStep.apply(x, self.weight, self.bias, self.w_frac, self.b_frac, a.frac,
                                                 int(a.int_bits), a.signed, self.act is not None)
            return out
        if self.act is not None:
            x = self.act(x)
        return F.linear(x, *self.quantized())


class LearnedConv2d(_LearnedKernel):
    float_type = nn.Conv2d

    def __init__(self, module: nn.Conv2d, granularity: str, init_frac: float, own_input: bool, init_act: float):
        super().__init__()
        self.conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation,
                         groups=module.groups)
        if module.padding_mode != "zeros":
            raise ValueError(f"padding_mode {module.padding_mode!r}")
        self.in_channels, self.out_channels = module.in_channels, module.out_channels
        self.kernel_size = module.kernel_size
        self._setup(module, granularity, init_frac, own_input, init_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            x = self.act(x)
        return F.conv2d(x, *self.quantized(), **self.conv)


class LearnedReLU(nn.Module):
    """Rounds its input to a learned unsigned format (which also zeroes negatives), as QReLU does."""

    float_type = nn.ReLU

    def __init__(self, init_act: float):
        super().__init__()
        self.act = LearnedActivation(False, init_act)
        self.channels = 0  # values per sample, seen in the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.channels = x[0].numel() if x.dim() > 0 and len(x) else 0
        return self.act(x)

    def rounding_bits(self) -> torch.Tensor:
        """The bits this layer rounds and saturates into, per sample: what its rounding logic costs grows with
        them (the ``requant`` share of the luts metric)."""
        return self.channels * self.act.bits()


LEARNED: dict[type, type] = {nn.Linear: LearnedLinear, nn.Conv2d: LearnedConv2d, nn.ReLU: LearnedReLU}
