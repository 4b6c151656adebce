"""Fixed-point quantizers and the quantized modules that use them.

A value with ``width`` bits of which ``frac`` are fractional lies on the grid
``k / 2**frac`` for integers ``k`` in ``[-2**(width-1), 2**(width-1) - 1]``
(signed) or ``[0, 2**width - 1]`` (unsigned: a ReLU's input, as MASE quantizes
it, since its output is never negative). ``frac`` may exceed ``width`` or be
negative (``ap_fixed<4,-2>`` is ``width 4, frac 6``). Rounding is to nearest,
ties to even; values outside the range saturate; gradients pass straight
through inside the range (zero outside), so the same modules serve
post-training quantization and quantization-aware training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Fixed:
    """One fixed-point format."""

    width: int
    frac: int
    signed: bool = True

    @property
    def scale(self) -> float:
        return 2.0 ** -self.frac

    @property
    def qmin(self) -> int:
        return -(2 ** (self.width - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.width - 1) - 1 if self.signed else 2**self.width - 1

    @property
    def lo(self) -> float:
        return self.qmin * self.scale

    @property
    def hi(self) -> float:
        return self.qmax * self.scale


def quantize(x: torch.Tensor, fmt: Fixed) -> torch.Tensor:
    """Round ``x`` to the grid of ``fmt`` and saturate; straight-through gradient inside the range."""
    if x.requires_grad and torch.is_grad_enabled():
        # PyTorch's fake-quantize op has exactly this gradient.
        return torch.fake_quantize_per_tensor_affine(x, fmt.scale, 0, fmt.qmin, fmt.qmax)
    # Inference: the same values, about 10x faster (one allocation, in-place steps;
    # scaling by a power of two is exact, and the bounds are integers, so clamping
    # before rounding (ties to even, as above) changes nothing).
    return x.mul(2.0 ** fmt.frac).clamp_(fmt.qmin, fmt.qmax).round_().mul_(fmt.scale)


@dataclass(frozen=True)
class IntegerConfig:
    """The ``name = "integer"`` config of a layer, with every fraction resolved."""

    data_in: Fixed
    weight: Fixed | None = None
    bias: Fixed | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": "integer"}
        for part in ("data_in", "weight", "bias"):
            fmt = getattr(self, part)
            if fmt is not None:
                out[f"{part}_width"], out[f"{part}_frac_width"] = fmt.width, fmt.frac
        return out


def fixed(width: int, frac: int | None, signed: bool = True) -> Fixed:
    """A format from config values; a missing ("NA") fraction is ``width // 2``, as in MASE."""
    return Fixed(width, width // 2 if frac is None else frac, signed)


class _Quantized:
    """Mixin: holds the formats; caches quantized weights while no gradient is needed."""

    qconfig: IntegerConfig
    float_type: type

    @property
    def qconfig_dict(self) -> dict[str, Any]:
        return self.qconfig.as_dict()

    def _q_param(self, name: str, fmt: Fixed | None) -> torch.Tensor | None:
        p = getattr(self, name)
        if p is None or fmt is None:
            return p
        if torch.is_grad_enabled() and p.requires_grad:
            return quantize(p, fmt)
        key = (p.data_ptr(), p._version, fmt)
        cache = self.__dict__.setdefault("_qcache", {})
        hit = cache.get(name)
        if hit is None or hit[0] != key:
            hit = (key, quantize(p.detach(), fmt))
            cache[name] = hit
        return hit[1]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.qconfig_dict}".lstrip(", ")


class QLinear(_Quantized, nn.Linear):
    float_type = nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(quantize(x, self.qconfig.data_in), self._q_param("weight", self.qconfig.weight),
                        self._q_param("bias", self.qconfig.bias))


class QConv2d(_Quantized, nn.Conv2d):
    float_type = nn.Conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(quantize(x, self.qconfig.data_in), self._q_param("weight", self.qconfig.weight),
                                  self._q_param("bias", self.qconfig.bias))


class QReLU(_Quantized, nn.ReLU):
    float_type = nn.ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(quantize(x, self.qconfig.data_in))


QUANTIZED: dict[type, type] = {nn.Linear: QLinear, nn.Conv2d: QConv2d, nn.ReLU: QReLU}
NEEDS = {nn.Linear: ("data_in", "weight", "bias"), nn.Conv2d: ("data_in", "weight", "bias"), nn.ReLU: ("data_in",)}
UNSIGNED_INPUT = {nn.ReLU}  # a ReLU's input is quantized unsigned, as MASE's ReLUInteger does


def float_type(module: nn.Module) -> type:
    return getattr(module, "float_type", type(module))


def quantized_copy(module: nn.Module, qconfig: IntegerConfig) -> nn.Module:
    """A quantized module computing on ``module``'s parameters (shared, not copied)."""
    base = float_type(module)
    cls = QUANTIZED[base]
    new = cls.__new__(cls)
    new.__dict__ = {k: v for k, v in module.__dict__.items() if k != "_qcache"}
    for attr in ("_parameters", "_buffers", "_modules"):
        new.__dict__[attr] = dict(module.__dict__[attr])
    new.qconfig = qconfig
    return new


def dequantized_copy(module: nn.Module) -> nn.Module:
    """The float module a quantized one stands in for (parameters shared)."""
    base = float_type(module)
    if base is type(module):
        return module
    new = base.__new__(base)
    new.__dict__ = {k: v for k, v in module.__dict__.items() if k not in ("qconfig", "_qcache")}
    return new


def formats(module: nn.Module) -> dict[str, Fixed] | None:
    """The module's formats by part (data_in, weight, bias), or None when float."""
    q = getattr(module, "qconfig", None)
    if q is None:
        return None
    return {part: getattr(q, part) for part in ("data_in", "weight", "bias") if getattr(q, part) is not None}
