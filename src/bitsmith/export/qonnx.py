"""A plan as a QONNX model: ``Quant`` nodes carry bitsmith's formats, standard ONNX nodes do the rest.

Per step (each step's output tensor is named after the step, so per-layer outputs can be read back):

* linear: ``Quant(x, data_in)`` -> ``MatMul`` with ``Quant(Wᵀ, weight)`` -> ``Add`` of ``Quant(b, bias)``; when a
  ReLU produces ``x`` (values >= 0) and ``data_in`` is signed with w >= 2 bits, the input ``Quant`` is unsigned
  with w - 1 bits and the same scale: the same grid and largest value, so the same results, and QONNX tools
  (FINN, hls4ml) see the unsigned type that bitsmith's luts metric costs;
* relu: ``Quant(x, data_in)`` (unsigned) -> ``Relu``;
* batchnorm1d: ``Mul(scale)`` -> ``Add(shift)`` in float32.

A part without a format gets no ``Quant``. Quant nodes use scale 2^-frac, zero point 0, ``narrow=0`` and
``rounding_mode="ROUND"`` (numpy's round: half to even), which is bitsmith's quantizer exactly. Everything runs
in float32, as bitsmith does, so a quantized chain is bit-exact while its sums fit float32 (``Plan.inexact``).
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bitsmith.errors import BitsmithError
from bitsmith.export.plan import Plan, Step
from bitsmith.quant import Fixed

QUANT_DOMAIN = "qonnx.custom_op.general"
OPSET = 13  # MatMul, Add, Mul, Relu are unchanged since 13/14; old enough for any onnxruntime
IR_VERSION = 8  # the oldest IR that opset 13 allows, so older runtimes load the file too
INPUT = "global_in"  # what hls4ml's and FINN's QONNX readers call the input
BATCH = "batch"  # the symbolic batch dimension in the saved file
FLOAT32_EXPONENT = 126  # |frac| beyond this makes 2^-frac or 2^frac no normal float32
META_STEPS = "bitsmith:steps"
NEEDS_EXTRA = "export to QONNX needs the qonnx extra: pip install 'bitsmith[qonnx]'"


def _onnx():
    try:
        import onnx
        from onnx import checker, helper, numpy_helper  # noqa: F401  (submodules used as onnx.*)
    except ImportError as e:
        raise BitsmithError(NEEDS_EXTRA) from e
    return onnx


def _qonnx_exec():
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx  # imports onnxruntime
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError as e:
        raise BitsmithError(NEEDS_EXTRA) from e
    return ModelWrapper, execute_onnx, InferShapes


def _fmt_json(fmt: Fixed | None) -> dict[str, Any] | None:
    return None if fmt is None else {"width": fmt.width, "frac": fmt.frac, "signed": fmt.signed}


def input_quant(plan: Plan, i: int) -> Fixed | None:
    """The format of step ``i``'s input ``Quant``: a Linear after a ReLU reads values >= 0, so a signed w-bit
    format is written unsigned with w - 1 bits (1 bit stays: ``_check_format`` refuses it)."""
    fmt = plan.steps[i].data_in
    if (fmt is not None and fmt.signed and fmt.width >= 2 and plan.steps[i].kind == "linear" and i > 0
            and plan.steps[i - 1].kind == "relu"):
        return Fixed(fmt.width - 1, fmt.frac, False)
    return fmt


def _check_format(step: Step, part: str, fmt: Fixed | None) -> None:
    if fmt is None:
        return
    if fmt.width == 1 and fmt.signed:
        # qonnx executes a 1-bit signed Quant as bipolar {-1, +1}; bitsmith's grid is {-1, 0}.
        raise BitsmithError(f"cannot export {step.name} ({step.kind}) to QONNX: its {part} format is 1-bit "
                            f"signed (values {{-1, 0}} x 2^-{fmt.frac}), which a QONNX Quant node runs as "
                            f"bipolar {{-1, +1}}; use 2 or more bits, or an unsigned 1-bit input")
    if fmt.width < 1 or abs(fmt.frac) > FLOAT32_EXPONENT:
        raise BitsmithError(f"cannot export {step.name} ({step.kind}) to QONNX: its {part} format "
                            f"(width {fmt.width}, frac {fmt.frac}) has no float32 scale; QONNX needs width >= 1 "
                            f"and |frac| <= {FLOAT32_EXPONENT}")


class _Builder:
    """Collects nodes and initializers; refuses a tensor name used twice."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.inits, self.names = onnx, [], [], {INPUT}

    def name(self, name: str) -> str:
        if name in self.names:
            raise BitsmithError(f"cannot export to QONNX: tensor name {name!r} would be used twice; rename the "
                                f"layer of that name")
        self.names.add(name)
        return name

    def const(self, name: str, value) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=np.float32), self.name(name)))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [self.name(output)], name=name, **attrs))
        return output

    def quant(self, src: str, fmt: Fixed | None, out: str) -> str:
        """``src`` rounded to ``fmt`` (half to even, saturating); ``src`` itself when there is no format."""
        if fmt is None:
            return src
        inputs = [src, self.const(f"{out}_scale", 2.0 ** -fmt.frac), self.const(f"{out}_zero_point", 0.0),
                  self.const(f"{out}_bitwidth", float(fmt.width))]
        self.node("Quant", inputs, out, name=out, domain=QUANT_DOMAIN, signed=int(fmt.signed), narrow=0,
                  rounding_mode="ROUND")
        self.nodes[-1].doc_string = f"bitsmith Fixed(width={fmt.width}, frac={fmt.frac}, signed={fmt.signed})"
        return out


def qonnx_model(plan: Plan):
    """The QONNX ``onnx.ModelProto`` of ``plan``, checked by ``onnx.checker``; the batch dimension is symbolic."""
    onnx = _onnx()
    if not plan.steps:
        raise BitsmithError(f"cannot export {plan.model} to QONNX: it has no layers")
    b, h, features, meta = _Builder(onnx), INPUT, plan.in_features, []
    for i, s in enumerate(plan.steps):
        for part, fmt in (("input", s.data_in), ("weight", s.weight_fmt), ("bias", s.bias_fmt)):
            _check_format(s, part, fmt)
        x_fmt = input_quant(plan, i)
        if s.kind == "linear":
            out_f, in_f = s.weight.shape
            if in_f != features:
                raise BitsmithError(f"cannot export {s.name}: it takes {in_f} features but gets {features}")
            x = b.quant(h, x_fmt, f"{s.name}_in_q")
            w = b.quant(b.const(f"{s.name}_weight", s.weight.T), s.weight_fmt, f"{s.name}_weight_q")
            if s.bias is None:
                h = b.node("MatMul", [x, w], s.name, name=s.name)
            else:
                mm = b.node("MatMul", [x, w], f"{s.name}_matmul", name=f"{s.name}_matmul")
                bias = b.quant(b.const(f"{s.name}_bias", s.bias), s.bias_fmt, f"{s.name}_bias_q")
                h = b.node("Add", [mm, bias], s.name, name=s.name)
            features = out_f
        elif s.kind == "relu":
            h = b.node("Relu", [b.quant(h, s.data_in, f"{s.name}_in_q")], s.name, name=s.name)
        elif s.kind == "batchnorm1d":
            if len(s.scale) != features:
                raise BitsmithError(f"cannot export {s.name}: it has {len(s.scale)} channels but gets {features}")
            mul = b.node("Mul", [h, b.const(f"{s.name}_scale", s.scale)], f"{s.name}_mul", name=f"{s.name}_mul")
            h = b.node("Add", [mul, b.const(f"{s.name}_shift", s.shift)], s.name, name=s.name)
        else:
            raise BitsmithError(f"cannot export {s.name} to QONNX: unknown layer kind {s.kind!r}")
        meta.append({"name": s.name, "kind": s.kind, "data_in": _fmt_json(s.data_in), "input_quant": _fmt_json(x_fmt),
                     "weight": _fmt_json(s.weight_fmt), "bias": _fmt_json(s.bias_fmt)})

    helper, f32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(b.nodes, plan.model,
                              [helper.make_tensor_value_info(INPUT, f32, [BATCH, plan.in_features])],
                              [helper.make_tensor_value_info(h, f32, [BATCH, features])], initializer=b.inits)
    from bitsmith import __version__

    model = helper.make_model(graph, producer_name="bitsmith", producer_version=__version__, ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(QUANT_DOMAIN, 1)])
    model.doc_string = (f"bitsmith design {plan.model}: " + ("bit-exact with bitsmith" if plan.exact else
                        "not bit-exact: " + "; ".join(plan.notes("qonnx"))))
    helper.set_model_props(model, {META_STEPS: json.dumps(meta), "bitsmith:model": plan.model,
                                   "bitsmith:notes": json.dumps(list(plan.notes("qonnx")))})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:  # a bug here, not the user's: say so plainly
        raise BitsmithError(f"the QONNX model of {plan.model} fails onnx.checker: {e}") from e
    return model


def write_qonnx(plan: Plan, path: str | Path) -> None:
    """Save ``plan`` as a QONNX model at ``path``, atomically (a failure leaves no file, old or half)."""
    path = Path(path)
    model = qonnx_model(plan)  # everything that can fail on the design fails before the disk is touched
    if path.is_dir():
        raise BitsmithError(f"cannot write the QONNX model to {path}: it is a directory; give a file name such "
                            f"as {path / 'model.onnx'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent is a file, or no permission
        raise BitsmithError(f"cannot write the QONNX model to {path}: cannot create {path.parent}: "
                            f"{e.strerror or e}") from e
    data = model.SerializeToString()
    tmp = None
    try:
        # os.open with 0o666 gives the file the usual umask permissions (mkstemp would make it 0600)
        name = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        tmp = name
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise BitsmithError(f"cannot write the QONNX model to {path}: {e.strerror or e}") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _load(path_or_model):
    onnx = _onnx()
    if isinstance(path_or_model, onnx.ModelProto):
        return copy.deepcopy(path_or_model)  # the batch is fixed on a copy, never on the caller's model
    path = Path(path_or_model)
    if not path.is_file():
        raise BitsmithError(f"no QONNX model at {path}")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise BitsmithError(f"{path} is not an ONNX model: {e}") from e


def run_qonnx(path_or_model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every step's output for the rows ``x`` (float32), from qonnx's reference executor, keyed by step name.

    ``path_or_model``: a file written by ``write_qonnx`` or a model from ``qonnx_model``. The executor needs a
    fixed batch, so it runs a copy whose batch is ``len(x)``. A model without bitsmith's metadata gives its
    graph outputs only.
    """
    model = _load(path_or_model)
    ModelWrapper, execute_onnx, InferShapes = _qonnx_exec()
    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    x = np.asarray(x)
    features = dims[1].dim_value if len(dims) == 2 else None
    if x.ndim != 2 or (features and x.shape[1] != features):
        raise BitsmithError(f"run_qonnx: the model takes rows of {features} features, got an array of shape "
                            f"{x.shape}")
    rows = len(x)
    if rows == 0:  # an executor cannot run an empty batch; one dummy row gives the output shapes
        return {k: v[:0] for k, v in run_qonnx(model, np.zeros((1, x.shape[1]), np.float32)).items()}
    for value in (*graph.input, *graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = rows
    del graph.value_info[:]  # inferred afresh for this batch
    props = {p.key: p.value for p in model.metadata_props}
    names = [s["name"] for s in json.loads(props[META_STEPS])] if META_STEPS in props else \
        [o.name for o in graph.output]
    mw = ModelWrapper(model).transform(InferShapes())
    ctx = execute_onnx(mw, {graph.input[0].name: x.astype(np.float32, copy=False)}, return_full_exec_context=True)
    return {name: ctx[name] for name in names}
