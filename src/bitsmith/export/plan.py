"""What an exporter needs of a design, independent of the target: the chain of layers, their fixed-point
formats and their (already rounded) parameters; and bitsmith's own output of every layer, to verify against.

bitsmith's arithmetic, which every target must reproduce:

* a quantizer maps ``x`` to ``clamp(round(x * 2^frac), qmin, qmax) / 2^frac``, rounding half to even
  (hls4ml ``AP_RND_CONV``, QONNX ``ROUND``) and saturating (``AP_SAT``);
* a Linear rounds its input to ``data_in``, its weight to ``weight`` and its bias to ``bias``, then sums
  exactly (no rounding of its result: the accumulator is as wide as the sum needs);
* a ReLU rounds its input to ``data_in``, which is unsigned (``ap_ufixed``), and passes it on;
* BatchNorm1d (not quantized by bitsmith) computes in float: ``x * scale + shift``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph
from bitsmith.quant import Fixed, float_type, formats, quantize

KINDS = ("linear", "relu", "batchnorm1d")  # what the exporters write
FLOAT_INPUT = Fixed(32, 16)  # how hls4ml reads an input with no format: +-32768 in steps of 2^-16
FLOAT32_EXACT_BITS = 24  # float32 holds integers exactly up to 2^24: bitsmith's own sums are exact below it


@dataclass(frozen=True)
class Step:
    """One layer of the chain. Parameters are float64 arrays, on their format's grid when quantized."""

    name: str  # the fx node's name (also the exported layer's name)
    kind: str  # one of KINDS
    data_in: Fixed | None = None  # the format the layer's input is rounded to; None: not rounded
    weight: np.ndarray | None = None  # (out, in) for linear
    bias: np.ndarray | None = None
    weight_fmt: Fixed | None = None
    bias_fmt: Fixed | None = None
    scale: np.ndarray | None = None  # batchnorm1d at inference: x * scale + shift
    shift: np.ndarray | None = None

    @property
    def quantized(self) -> bool:
        if self.kind == "linear":
            return None not in (self.data_in, self.weight_fmt, self.bias_fmt if self.bias is not None else True)
        return self.kind == "relu" and self.data_in is not None

    def accumulator_bits(self) -> int | None:
        """Bits a Linear's exact sum needs (sign included), from its formats; None when not quantized."""
        if self.kind != "linear" or not self.quantized:
            return None
        x, w = self.data_in, self.weight_fmt
        frac = x.frac + w.frac
        product = max(abs(x.qmin), x.qmax) * max(abs(w.qmin), w.qmax)
        bound = product * self.weight.shape[1]
        if self.bias is not None:
            b = self.bias_fmt
            frac = max(frac, b.frac)
            bound = bound * 2.0 ** (frac - x.frac - w.frac) + max(abs(b.qmin), b.qmax) * 2.0 ** (frac - b.frac)
        else:
            bound *= 2.0 ** (frac - x.frac - w.frac)
        return int(math.ceil(math.log2(bound + 1))) + 1


@dataclass(frozen=True)
class Inexact:
    """One reason an export cannot be bit-exact, and the layers it concerns."""

    what: str  # short, for a summary line: "float BatchNorm1d"
    layers: tuple[str, ...]
    why: str  # every target
    why_in: tuple[tuple[str, str], ...] = ()  # (target, why) where a target has its own reason

    def describe(self, target: str | None = None) -> str:
        why = dict(self.why_in).get(target, self.why)
        return f"{self.what} in {', '.join(self.layers)} ({why})"


@dataclass(frozen=True)
class Plan:
    """A design as a chain of steps from an input of ``in_features`` values to the logits."""

    model: str
    in_features: int
    steps: tuple[Step, ...]
    inexact: tuple[Inexact, ...] = field(default=())  # why an export cannot be bit-exact, if it cannot

    def notes(self, target: str | None = None) -> tuple[str, ...]:
        """The reasons as sentences, one per reason (not per layer), for ``target`` or for every target."""
        return tuple(r.describe(target) for r in self.inexact)

    @property
    def input_format(self) -> Fixed | None:
        """The first step's input format: the precision of the exported model's input."""
        return self.steps[0].data_in if self.steps else None

    @property
    def exact(self) -> bool:
        """True when every step is quantized and bitsmith's own float32 sums are exact."""
        return not self.inexact


def plan_of(graph: Graph, model_name: str = "model") -> Plan:
    """The chain of ``graph``, or a BitsmithError naming the first node an exporter cannot write."""
    nodes = [n for n in graph.gm.graph.nodes]
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1 or len(graph.in_shape) != 1:
        raise BitsmithError(f"export writes models with one flat input; {model_name} takes input of shape "
                            f"{tuple(graph.in_shape)}")
    steps, previous = [], inputs[0]
    for node in nodes:
        if node.op in ("placeholder", "output"):
            continue
        module = graph.gm.get_submodule(node.target) if node.op == "call_module" else None
        kind = float_type(module).__name__.lower() if module is not None else None
        if kind not in KINDS:
            what = f"{type(module).__name__} ({kind})" if module is not None else f"{node.op} {node.target}"
            raise BitsmithError(f"export cannot write layer {node.name!r}: {what}; bitsmith exports chains of "
                                f"Linear, ReLU and BatchNorm1d layers")
        if list(node.all_input_nodes) != [previous]:
            raise BitsmithError(f"export writes a chain of layers; {node.name!r} does not take exactly the "
                                f"output of {previous.name!r}")
        steps.append(_step(node.name, kind, module))
        previous = node
    out = [n for n in nodes if n.op == "output"]
    if not steps or [a for a in out[0].all_input_nodes] != [previous]:
        raise BitsmithError(f"export writes a chain of layers ending in the output; {model_name} does not")
    return Plan(model_name, graph.in_shape[0], tuple(steps), _inexact(steps))


def _step(name: str, kind: str, module: torch.nn.Module) -> Step:
    fmts = formats(module) or {}
    as64 = lambda t: None if t is None else t.detach().double().cpu().numpy()  # noqa: E731
    if kind == "linear":
        w, b = module.weight.detach(), None if module.bias is None else module.bias.detach()
        if "weight" in fmts:  # the values bitsmith computes with: rounded once, here
            w = quantize(w, fmts["weight"])
        if b is not None and "bias" in fmts:
            b = quantize(b, fmts["bias"])
        return Step(name, kind, fmts.get("data_in"), as64(w), as64(b), fmts.get("weight"), fmts.get("bias"))
    if kind == "relu":
        return Step(name, kind, fmts.get("data_in"))
    m = module  # batchnorm1d, in eval mode: running statistics
    scale = m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)
    shift = m.bias.detach().double() - m.running_mean.double() * scale
    return Step(name, kind, scale=as64(scale), shift=as64(shift))


KIND_NAMES = {"linear": "Linear", "relu": "ReLU", "batchnorm1d": "BatchNorm1d"}
HLS4ML_FLOAT = "a wide fixed-point type in hls4ml"
QONNX_FLOAT = "float32 with its own rounding in QONNX"


def _inexact(steps: list[Step]) -> tuple[Inexact, ...]:
    """The reasons, grouped: one per kind of float layer, one for sums float32 cannot hold."""
    reasons = []
    for kind, label in KIND_NAMES.items():
        if kind == "relu":  # max(x, 0) rounds nothing: a float ReLU is exact
            continue
        floats = tuple(s.name for s in steps if s.kind == kind and not s.quantized)
        if floats:
            reasons.append(Inexact(f"float {label}", floats, f"float32 in bitsmith, {HLS4ML_FLOAT}, {QONNX_FLOAT}",
                                   (("hls4ml", f"float32 in bitsmith, {HLS4ML_FLOAT}"),
                                    ("qonnx", f"float32 in bitsmith, {QONNX_FLOAT}"))))
    if steps and steps[0].kind == "relu" and not steps[0].quantized:  # other float first layers are named above
        w, frac = FLOAT_INPUT.width, FLOAT_INPUT.frac
        reasons.append(Inexact("float input", (steps[0].name,),
                               f"it reads the raw input, which hls4ml rounds to ap_fixed<{w},{w - frac}>"))
    wide = tuple(s.name for s in steps if (s.accumulator_bits() or 0) - 1 > FLOAT32_EXACT_BITS)
    if wide:
        reasons.append(Inexact("sums beyond float32", wide,
                               f"exact sums need more bits than float32 holds exactly ({FLOAT32_EXACT_BITS} + "
                               "sign), so bitsmith's own figures are rounded there"))
    return tuple(reasons)


@torch.no_grad()
def reference(graph: Graph, x: torch.Tensor) -> dict[str, np.ndarray]:
    """bitsmith's output of every step for the rows ``x``, keyed by step name (float64 copies)."""
    from bitsmith.train import eval_mode

    outputs: dict[str, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n.op == "call_module":
                outputs[n.name] = result.detach().double().cpu().numpy()
            return result

    with eval_mode(graph.gm):
        Recorder(graph.gm).run(x)
    return outputs


@dataclass(frozen=True)
class Comparison:
    """How an exported model's outputs differ from bitsmith's, per step and at the end."""

    rows: int
    max_abs_diff: float  # of the final outputs
    agreement: float  # share of rows whose predicted class (argmax) is the same
    per_step: dict[str, tuple[float, int]]  # step -> (max |diff|, rows differing), for the steps compared


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], last: str) -> Comparison:
    """Compare the exported model's per-step outputs (those it gives) with bitsmith's."""
    per_step = {}
    for name, mine in ours.items():
        if name in theirs:
            d = np.abs(np.asarray(theirs[name], dtype=np.float64).reshape(mine.shape) - mine)
            per_step[name] = (float(d.max(initial=0.0)), int((d.reshape(len(d), -1) > 0).any(axis=1).sum()))
    a, b = ours[last], np.asarray(theirs[last], dtype=np.float64).reshape(ours[last].shape)
    return Comparison(len(a), float(np.abs(a - b).max(initial=0.0)),
                      float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0, per_step)
