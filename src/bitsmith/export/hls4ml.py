"""Export a planned design to an hls4ml project whose C++ emulation computes as bitsmith does.

Route: a plain torch chain (``nn.Linear``/``nn.ReLU``/``nn.BatchNorm1d`` holding the plan's already rounded
float64 parameters, plus a cast layer before each Linear that rounds its input) through hls4ml's PyTorch
frontend, with every layer's precision set from bitsmith's formats (``granularity='name'``):

* the input layer: the first step's ``data_in``; when the first step is not quantized (jsc's BatchNorm on the
  raw features) ``ap_fixed<32,16>`` (``STAND_IN``), as no format exists for float input;
* Linear: ``weight``/``bias`` from its formats; ``accum`` and ``result`` one exact type, as wide as the sum
  needs (``Step.accumulator_bits()``), so nothing rounds there, as in bitsmith. An explicit ``result`` also
  stops hls4ml fusing a following BatchNorm into the weights or dropping the following cast;
* a Linear's ``data_in`` after another layer: a cast (an hls4ml linear Activation) of that format, because
  hls4ml has no input quantizer per layer; before the first layer the input layer does it. When a ReLU
  produces the cast's input (values >= 0), the cast is the unsigned format with one bit fewer and the same
  fraction bits (``ap_ufixed<w-1,...>``): the same grid and the same largest value ``(2^(w-1) - 1) * 2^-frac``,
  so the same values under every rounding mode and every saturation mode but ``AP_WRAP`` (there a positive
  overflow wraps differently: the cast stays signed), and not for a 1-bit format (it stays signed). hls4ml's
  distributed-arithmetic kernel then takes the input interval that bitsmith's luts metric costs
  (``cost.network.problems``);
* ReLU: ``result`` = its unsigned ``data_in`` (rounding after the ReLU gives the same values as before it);
* BatchNorm1d (float in bitsmith): ``scale``/``bias`` 32-bit types fitted to the values, ``result`` a 32-bit
  type fitted to the largest output its input type allows, so it never saturates. Not bit-exact.
* layers bitsmith leaves in float otherwise get the same kind of 32-bit fitted types.

Every type that rounds carries ``rounding``/``saturation`` (bitsmith: AP_RND_CONV, AP_SAT; hls4ml's own
default is AP_TRN, AP_WRAP). The exact accumulator types carry no modes: nothing rounds or overflows there.

Strategy: ``latency`` (hls4ml's multiply-accumulate kernels) or ``distributed_arithmetic``: every Linear gets
hls4ml 1.3's ``Strategy: distributed_arithmetic`` (ReuseFactor 1, which bitsmith always writes), and hls4ml
has da4ml solve each as a constant adder graph over the exact sum, from the layer's input type, with
hls4ml's options (``DA_HARD_DC``, default 2, as ``cost._da4ml.OPTIONS``). The sums are exact either way, so
the values are the same. hls4ml stores each kernel's cost (adder bits, ~LUTs) as the layer's
``da_kernel_cost``; bitsmith records it per layer in ``bitsmith_export.json`` and on the returned model
(``bitsmith_da_costs``). Every Linear must be quantized: a float one has no formats to build the graph from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from bitsmith.cost import _da4ml
from bitsmith.errors import BitsmithError
from bitsmith.export.hls4ml_da import DA, STRATEGIES, check_strategy, da_costs, hard_dc
from bitsmith.export.plan import FLOAT_INPUT, Plan, Step
from bitsmith.quant import Fixed

BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_parallel", "io_stream")
ROUNDING = ("AP_RND_CONV", "AP_TRN", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_TRN_ZERO")
SATURATION = ("AP_SAT", "AP_WRAP", "AP_SAT_ZERO", "AP_SAT_SYM")
STAND_IN = FLOAT_INPUT  # float input with no format
FIT_WIDTH = 32  # width of the types fitted to float parameters and BatchNorm outputs
INFO_FILE = "bitsmith_export.json"
CHOICES = {  # written into INFO_FILE, for the user
    "input": "the first layer's data_in; ap_fixed<32,16> when the first layer is not quantized",
    "linear": "weight and bias from bitsmith's formats (values already rounded); accum = result = the exact "
              "type of the sum (Step.accumulator_bits()), so nothing rounds there",
    "cast": "a linear activation before a Linear rounding its input to its data_in (hls4ml has no per-layer "
            "input quantizer); when a ReLU produces that input (values >= 0), ap_ufixed with one bit fewer and the "
            "same fraction bits: the same values and saturation bound, and the input interval bitsmith's luts "
            "metric costs (kept signed under AP_WRAP, where overflow would wrap differently, and at 1 bit)",
    "relu": "result = its data_in, unsigned (rounding after the ReLU gives the same values)",
    "batchnorm1d": "float in bitsmith: 32-bit scale, bias and result types fitted to their ranges (not exact)",
    "modes": "every type that rounds carries the rounding and saturation modes; the exact types carry none",
    "strategy": "latency: hls4ml's multiply-accumulate kernels; distributed_arithmetic: each Linear gets "
                "Strategy distributed_arithmetic (ReuseFactor 1), an adder graph da4ml solves from the layer's "
                "input type; hls4ml's da_kernel_cost (adder bits, ~LUTs) is recorded per layer",
}
MISSING = "export to hls4ml needs the hls4ml extra: pip install 'bitsmith[hls4ml]'"
NO_COMPILER = "--verify compiles hls4ml's C++ emulation and needs g++ (apt install g++)"


def ap_type(fmt: Fixed, rounding: str | None = None, saturation: str | None = None) -> str:
    """``Fixed`` -> an ap_[u]fixed string; hls4ml's integer bits are ``width - frac`` (may be < 0 or > width)."""
    modes = f",{rounding},{saturation}" if rounding else ""
    return f"ap_{'' if fmt.signed else 'u'}fixed<{fmt.width},{fmt.width - fmt.frac}{modes}>"


def fitted(bound: float, width: int = FIT_WIDTH) -> Fixed:
    """The signed ``width``-bit format with the most fraction bits whose range holds ``[-bound, bound]``."""
    if not math.isfinite(bound):
        raise BitsmithError(f"export cannot choose a fixed-point type for a value of magnitude {bound}")
    whole = math.floor(math.log2(bound)) + 1 if bound > 0 else 0  # bits left of the point
    return Fixed(width, width - whole - 1)


def _bound(fmt: Fixed) -> float:
    return max(abs(fmt.lo), abs(fmt.hi))


def unsigned_cast(fmt: Fixed, saturation: str) -> Fixed:
    """The format a cast of values >= 0 (a ReLU's) into ``fmt`` is written as, with the same results.

    Signed ``fmt``: ``ap_ufixed`` with one bit fewer and the same fraction bits has the same grid and the same
    largest value, so rounding and saturating (to the largest value, or to zero) give the same values; kept as
    it is under ``AP_WRAP`` (a positive overflow wraps to a negative value in ``fmt``) and at 1 bit (no
    ``ap_ufixed<0>``).
    """
    if not fmt.signed or fmt.width < 2 or saturation == "AP_WRAP":
        return fmt
    return Fixed(fmt.width - 1, fmt.frac, False)


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One hls4ml layer to write: a step (``step`` set) or the cast in front of one."""

    name: str  # the torch submodule's name; also the hls4ml layer's name
    kind: str  # linear, relu, batchnorm1d or cast
    precision: dict[str, str]  # hls4ml Precision keys -> type
    out: Fixed  # the type of its output
    step: Step  # the step it is, or for a cast the step whose input it rounds
    after_relu: bool = False  # a cast whose input a ReLU produces (values >= 0)


def _layers(plan: Plan, rounding: str, saturation: str) -> tuple[Fixed, list[_Layer]]:
    """The input type and the hls4ml layers of ``plan``, each with its precisions."""
    rnd = lambda f: ap_type(f, rounding, saturation)  # noqa: E731 - a type that rounds
    first = plan.steps[0].data_in
    current = first if first is not None else STAND_IN  # the type flowing into the next layer
    layers: list[_Layer] = []
    taken = {s.name for s in plan.steps}
    for i, s in enumerate(plan.steps):
        if s.kind == "linear":
            if s.data_in is not None and i > 0:
                cast = f"{s.name}_in"
                while cast in taken:  # never shadow a step
                    cast += "_"
                taken.add(cast)
                after_relu = plan.steps[i - 1].kind == "relu"
                fmt = unsigned_cast(s.data_in, saturation) if after_relu else s.data_in
                layers.append(_Layer(cast, "cast", {"result": rnd(fmt)}, fmt, s, after_relu))
            x = s.data_in if s.data_in is not None else current
            w = s.weight_fmt if s.weight_fmt is not None else fitted(float(np.abs(s.weight).max(initial=0.0)))
            b = None if s.bias is None else s.bias_fmt if s.bias_fmt is not None else fitted(
                float(np.abs(s.bias).max(initial=0.0)))
            full = dataclasses.replace(s, data_in=x, weight_fmt=w, bias_fmt=b)
            bits = full.accumulator_bits()  # exact sum of these formats; the plan's own figure when quantized
            frac = max(x.frac + w.frac, b.frac if b is not None else x.frac + w.frac)
            acc = Fixed(bits, frac)
            precision = {"weight": rnd(w), "accum": ap_type(acc), "result": ap_type(acc)}
            if b is not None:
                precision["bias"] = rnd(b)
            layers.append(_Layer(s.name, s.kind, precision, acc, s))
            current = acc
        elif s.kind == "relu":
            if s.data_in is not None:
                out, result = s.data_in, rnd(s.data_in)
            else:  # unquantized: a ReLU of its input type, exact
                out, result = current, ap_type(current)
            layers.append(_Layer(s.name, s.kind, {"result": result}, out, s))
            current = out
        else:  # batchnorm1d: x * scale + shift in fixed point, fitted to the values it can meet
            scale, shift = np.abs(s.scale), np.abs(s.shift)
            out = fitted(float((scale * _bound(current) + shift).max(initial=0.0)))
            precision = {"scale": rnd(fitted(float(scale.max(initial=0.0)))),
                         "bias": rnd(fitted(float(shift.max(initial=0.0)))), "result": rnd(out)}
            layers.append(_Layer(s.name, s.kind, precision, out, s))
            current = out
    return (first if first is not None else STAND_IN), layers


@functools.cache
def _hls4ml():
    """hls4ml, with bitsmith's cast layer registered once per process."""
    try:
        import hls4ml
        import torch
        from hls4ml.converters.pytorch_to_hls import get_supported_pytorch_layers, register_pytorch_layer_handler
        from hls4ml.utils.torch import HLS4MLModule
    except ImportError:
        raise BitsmithError(MISSING) from None

    class BitsmithCast(HLS4MLModule):
        """Identity in torch; in hls4ml a linear Activation whose result type rounds (a cast)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    def parse_cast(operation, layer_name, input_names, input_shapes, node, class_object, data_reader, config):
        return ({"class_name": "Activation", "activation": "linear", "name": layer_name, "inputs": input_names},
                input_shapes[0])

    if BitsmithCast.__name__ not in get_supported_pytorch_layers():
        register_pytorch_layer_handler(BitsmithCast.__name__, parse_cast)
    return hls4ml, BitsmithCast


def _torch_chain(plan: Plan, layers: list[_Layer], cast_type: type):
    """An nn.Sequential of plain float64 layers named as ``layers``, holding the plan's parameters."""
    import torch
    from torch import nn

    mods: OrderedDict[str, nn.Module] = OrderedDict()
    n = plan.in_features
    for layer in layers:
        s = layer.step
        if layer.kind == "cast":
            mods[layer.name] = cast_type()
        elif layer.kind == "linear":
            out_f, in_f = s.weight.shape
            if in_f != n:
                raise BitsmithError(f"export: {s.name!r} takes {in_f} inputs but receives {n}")
            lin = nn.Linear(in_f, out_f, bias=s.bias is not None, dtype=torch.float64)
            with torch.no_grad():  # already on their grids: hls4ml writes them without rounding again
                lin.weight.copy_(torch.from_numpy(s.weight))
                if s.bias is not None:
                    lin.bias.copy_(torch.from_numpy(s.bias))
            mods[layer.name] = lin
            n = out_f
        elif layer.kind == "relu":
            mods[layer.name] = nn.ReLU()
        else:  # hls4ml computes gamma / sqrt(var + eps) and beta - mean * scale: give it scale and shift
            bn = nn.BatchNorm1d(len(s.scale), eps=0.0, dtype=torch.float64)
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(s.scale))
                bn.bias.copy_(torch.from_numpy(s.shift))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
            mods[layer.name] = bn.eval()
    return nn.Sequential(mods).eval()


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BitsmithError(f"unknown hls4ml {what} {value!r}; allowed: {', '.join(allowed)}")


def _project_name(model: str) -> str:
    name = re.sub(r"\W", "_", model).strip("_") or "model"
    return name if name[0].isalpha() else f"m_{name}"


def _fmt_json(fmt: Fixed | None) -> dict[str, Any] | None:
    return None if fmt is None else {"width": fmt.width, "frac": fmt.frac, "signed": fmt.signed}


def _layer_json(layer: _Layer, name: str) -> dict[str, Any]:
    s = layer.step
    if layer.kind == "cast":  # format: bitsmith's; written_as: the type hls4ml gets (unsigned after a ReLU)
        return {"layer": name, "kind": "cast", "rounds_input_of": s.name, "format": _fmt_json(s.data_in),
                "after_relu": layer.after_relu, "written_as": _fmt_json(layer.out), "precision": layer.precision}
    parts = {"data_in": s.data_in, "weight": s.weight_fmt, "bias": s.bias_fmt}
    entry = {"layer": name, "kind": s.kind, "step": s.name,
             "formats": {k: _fmt_json(v) for k, v in parts.items() if v is not None}, "precision": layer.precision}
    if s.kind == "linear":
        entry["accumulator_bits"] = layer.out.width
    return entry


def write_hls4ml(plan: Plan, out_dir: Path, backend: str = "Vitis", io_type: str = "io_parallel",
                 rounding: str = "AP_RND_CONV", saturation: str = "AP_SAT", strategy: str = "latency"):
    """Write ``plan`` as an hls4ml project in ``out_dir`` (plus ``bitsmith_export.json``); the hls4ml model.

    ``strategy``: ``latency`` or ``distributed_arithmetic`` (each Linear; needs da4ml). The model then carries
    ``bitsmith_steps`` ({hls4ml layer: step}) and ``bitsmith_da_costs`` ({step: hls4ml's da_kernel_cost}, empty
    for latency).
    """
    _check_choice("backend", backend, BACKENDS)
    _check_choice("io_type", io_type, IO_TYPES)
    _check_choice("rounding mode", rounding, ROUNDING)
    _check_choice("saturation mode", saturation, SATURATION)
    _check_choice("strategy", strategy, STRATEGIES)
    check_strategy(plan, strategy)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BitsmithError(f"hls4ml output directory {str(out_dir)!r} is a file; name a directory")
    hls4ml, cast_type = _hls4ml()
    from hls4ml.utils.torch import CustomFXTracer

    in_fmt, layers = _layers(plan, rounding, saturation)
    model = _torch_chain(plan, layers, cast_type)
    # hls4ml names layers by fx node name; trace as it does to learn them (a clash gets a suffix).
    nodes = list(CustomFXTracer().trace(model).nodes)
    hls_name = {n.target: n.name for n in nodes if n.op == "call_module"}
    input_name = next(n.name for n in nodes if n.op == "placeholder")
    in_type = ap_type(in_fmt, rounding, saturation)

    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config_from_pytorch_model(
            model, input_shape=(plan.in_features,), granularity="name", backend=backend,
            default_precision=ap_type(STAND_IN, rounding, saturation))
    # hls4ml copies InputShape into hls4ml_config.yml, which link_existing_project reads with yaml.safe_load:
    # the tuple config_from_pytorch_model insists on is a !!python/tuple there. [[n]]: one input of n values.
    config["InputShape"] = [[plan.in_features]]
    per_layer = config["LayerName"]
    per_layer[input_name]["Precision"]["result"] = in_type
    for layer in layers:
        entry = per_layer[hls_name[layer.name]]
        entry["Precision"].update(layer.precision)
        entry["Trace"] = layer.kind != "cast"
        if strategy == DA and layer.kind == "linear":
            entry["Strategy"] = DA
            entry["ReuseFactor"] = 1  # hls4ml's DA kernels are fully parallel; it refuses any other

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BitsmithError(f"cannot create the hls4ml output directory {str(out_dir)!r}: {e.strerror}") from None
    # Absolute: link_existing_project compiles in the yml's OutputDir, from whatever directory it is called.
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model = hls4ml.converters.convert_from_pytorch_model(
            model, hls_config=config, output_dir=str(out_dir.resolve()), project_name=_project_name(plan.model),
            backend=backend, io_type=io_type)
        # Else write() pickles the torch chain (bitsmith's cast class included) into hls4ml_config.yml, which
        # safe_load refuses; the project is its C++, and hls4ml's own save() drops the model too.
        hls_model.config.config.pop("PytorchModel", None)
        hls_model.write()
    present = {layer.name for layer in hls_model.get_layers()}
    lost = [layer.name for layer in layers if layer.kind != "cast" and hls_name[layer.name] not in present]
    if lost:  # hls4ml fused or dropped a layer: its arithmetic would no longer be bitsmith's
        raise BitsmithError(f"hls4ml merged away layer(s) {', '.join(lost)}; the export would not compute as "
                            f"bitsmith does")
    hls_model.bitsmith_steps = {hls_name[layer.name]: layer.name for layer in layers if layer.kind != "cast"}
    costs = da_costs(hls_model, layers, hls_name) if strategy == DA else {}
    hls_model.bitsmith_da_costs = costs

    info = {
        "model": plan.model, "backend": backend, "io_type": io_type, "rounding": rounding,
        "saturation": saturation, "strategy": strategy, "exact": plan.exact, "notes": list(plan.notes("hls4ml")),
        "choices": CHOICES,
        "input": {"layer": input_name, "format": _fmt_json(plan.input_format), "precision": in_type},
        "layers": [_layer_json(layer, hls_name[layer.name]) for layer in layers],
    }
    if strategy == DA:
        info["da4ml"] = _da4ml.version()
        info["da_hard_dc"] = hard_dc()
        for entry in info["layers"]:
            if entry.get("step") in costs:
                entry["da_kernel_cost"] = costs[entry["step"]]
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return hls_model


def compile_and_run(hls_model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Compile the project with g++ and run ``x``: {step name: output} for the steps hls4ml traces.

    The last step's output is hls4ml's final output. Rows go in as float64: hls4ml's double bridge.
    """
    if shutil.which("g++") is None:
        raise BitsmithError(NO_COMPILER)
    names: dict[str, str] = getattr(hls_model, "bitsmith_steps", {})
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    n_in = int(np.prod(hls_model.get_input_variables()[0].shape))
    if x.ndim != 2 or x.shape[1] != n_in or not len(x):
        raise BitsmithError(f"hls4ml model takes rows of {n_in} values; got an array of shape {x.shape}")
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise):
            y, traced = hls_model.trace(x)  # compiles with tracing on, then runs every row
    except Exception as e:  # hls4ml raises a bare Exception and prints the compiler's output
        if "Failed to compile" in str(e):
            tail = "\n".join(noise.getvalue().strip().splitlines()[-20:])
            raise BitsmithError(f"hls4ml project did not compile: {e}\n{tail}") from None
        raise
    rows = len(x)
    out = {names.get(k, k): np.asarray(v, dtype=np.float64).reshape(rows, -1) for k, v in traced.items()}
    last = list(names.values())[-1] if names else list(hls_model.get_layers())[-1].name  # chains: the last layer
    out[last] = np.asarray(y, dtype=np.float64).reshape(rows, -1)
    return out
