"""Export a planned design as synthesizable Verilog: da4ml's adder graphs for the Linear layers, bitsmith's own
rounding between them.

Each Linear's kernel is da4ml's combinational logic for ``x @ W + b`` from the SAME solution the luts metric
costs (``network.problems`` -> ``_da4ml.cmvm_logic`` with the same options), so the RTL is what was costed. da4ml
rounds half up; bitsmith rounds half to even, so the glue between kernels is written here:

* a quantized ReLU rounds its input to its unsigned ``data_in`` (ties to even) and saturates (below at 0: the
  ReLU itself); a float ReLU is ``max(x, 0)``;
* a Linear rounds its input to its ``data_in`` (ties to even, saturating) before its kernel; the top input bus
  carries the first step's ``data_in`` integers, already rounded (``verilog_sim.to_input`` does it).

Sums are exact (the kernel's outputs are as wide as they need). The design is combinational. Files, one module
each: ``<top>.v`` (ports ``model_inp``/``model_out`` in one stated format each; a wire ``n_<step>`` per step with
that step's values, each in its own format, for testbenches), ``<top>_<step>.v`` (a step: its glue, and for a
Linear its kernel ``<top>_<step>_cmvm.v``), da4ml's library modules; ``bitsmith_verilog.json`` (written last)
gives the formats and bus layouts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitsmith.cost import _da4ml
from bitsmith.cost.network import EXACT_BITS, Problem, kif_of, problems, show
from bitsmith.errors import BitsmithError
from bitsmith.export.plan import Plan, Step
from bitsmith.files import write_atomic
from bitsmith.graph import Graph
from bitsmith.quant import Fixed

INFO_FILE = "bitsmith_verilog.json"
SYNTH_FILE = "yosys_luts.json"  # export/synth.py's result: removed when the design is written again
SCHEMA = "bitsmith-verilog/1"
LAYOUT = ("value j of a bus sits in bits [j*width, (j+1)*width) of the flat port (value 0 in the low bits), "
          "two's complement when signed; its real value is the integer times 2^-frac")
DELAY = "BITSMITH_STEP_DELAY"
# Simulation only (synthesis never defines BITSMITH_SETTLE): each step reads the previous step's output one time
# unit late, so an event-driven simulator runs a step once per row, not once per transient value of the step
# before it (Icarus: about 13x faster on digits-mlp).
SETTLE = (f"// Simulation only: define BITSMITH_SETTLE to let each step settle one time unit before the next reads "
          f"it.\n`ifdef BITSMITH_SETTLE\n`define {DELAY} #1\n`else\n`define {DELAY}\n`endif\n")
ROUNDING = ("between kernels: round half to even, then saturate, to each ReLU's unsigned data_in and to each "
            "Linear's data_in (bitsmith's arithmetic); kernels: exact sums (da4ml)")


@dataclass(frozen=True)
class Value:
    """One value on a bus: da4ml's (sign bit, integer bits, fraction bits) and its exact bounds."""

    k: int
    i: int
    f: int
    lo: float
    hi: float

    @property
    def width(self) -> int:
        return max(self.k + self.i + self.f, 0)


def _values(fmt: Fixed, n: int) -> list[Value]:
    k, i, f = kif_of(fmt)
    return [Value(k, i, f, fmt.lo, fmt.hi)] * n


def uniform(bus: list[Value]) -> Fixed:
    """The one format that holds every value of ``bus`` exactly (what the ``s_<step>`` wires carry)."""
    live = [v for v in bus if v.width > 0]
    if not live:
        return Fixed(1, 0, False)
    k, i, f = (max(getattr(v, a) for v in live) for a in "kif")
    return Fixed(max(k + i + f, 1), f, bool(k))


def _port(width: int) -> str:
    return f"[{max(width, 1) - 1}:0]"


def _hex(value: int, width: int) -> str:
    """A ``width``-bit two's complement constant, as a signed Verilog literal."""
    return f"$signed({width}'h{value & ((1 << width) - 1):x})"


def _bits(src: str, lo: int, width: int) -> str:
    return f"{src}[{lo + width - 1}:{lo}]"


def _rep(count: int, bit: str) -> str | None:
    """``count`` copies of one bit; None for none (Verilog-2005 forbids zero replications)."""
    return f"{{{count}{{{bit}}}}}" if count > 0 else None


def _concat(*parts: str | None) -> str:
    return "{" + ", ".join(p for p in parts if p is not None) + "}"


def _extend(src: str, v: Value, lo: int, width: int, shift: int = 0) -> str:
    """The value at ``src[lo +: v.width]`` as ``width`` bits, shifted left by ``shift`` (sign or zero fill)."""
    if v.width == 0:
        return f"{{{width}{{1'b0}}}}"
    top = width - v.width - shift
    assert top >= 0 and shift >= 0
    fill = f"{src}[{lo + v.width - 1}]" if v.k else "1'b0"
    return _concat(_rep(top, fill), _bits(src, lo, v.width), _rep(shift, "1'b0"))


def _round_half_even(x: float) -> int:
    return round(x)  # Python rounds half to even


def _requant(lines: list[str], tag: str, src: str, lo: int, v: Value, to: Fixed) -> str:
    """Verilog for bitsmith's quantize(value, ``to``): round half to even, saturate. Returns ``to.width`` bits."""
    k, i, f = kif_of(to)
    rlo, rhi = (_round_half_even(b * 2.0**to.frac) for b in (v.lo, v.hi))
    clo, chi = (min(max(r, to.qmin), to.qmax) for r in (rlo, rhi))
    if v.width == 0 or clo == chi:  # a constant after rounding and saturating (both are monotonic)
        return f"{to.width}'h{(clo if v.width else 0) & ((1 << to.width) - 1):x}"
    if (v.k, v.i, v.f) == (k, i, f):  # already in the format: nothing rounds or saturates
        return _bits(src, lo, v.width)
    s = v.f - to.frac  # fraction bits dropped (> 0) or added (< 0)
    width = max(v.width + 1 + max(-s, 0), s + 1, to.width + 1) + 1
    lines.append(f"wire [{width - 1}:0] {tag}_x = {_extend(src, v, lo, width, max(-s, 0))};")
    x = f"{tag}_x"
    if s > 0:  # floor, then +1 when the dropped part is over half, or exactly half and the kept part is odd
        sticky = f" | (|{x}[{s - 2}:0])" if s >= 2 else ""
        lines.append(f"wire {tag}_up = {x}[{s - 1}] & ({x}[{s}]{sticky});")
        floor = _concat(_rep(s, f"{x}[{width - 1}]"), f"{x}[{width - 1}:{s}]")
        lines.append(f"wire [{width - 1}:0] {tag}_r = {floor} + {{{{{width - 1}{{1'b0}}}}, {tag}_up}};")
        x = f"{tag}_r"
    y = x
    if rhi > to.qmax:
        y = f"($signed({x}) > {_hex(to.qmax, width)}) ? {width}'h{to.qmax:x} : {y}"
    if rlo < to.qmin:
        y = f"($signed({x}) < {_hex(to.qmin, width)}) ? {width}'h{to.qmin & ((1 << width) - 1):x} : {y}"
    lines.append(f"wire [{width - 1}:0] {tag}_y = {y};")
    return f"{tag}_y[{to.width - 1}:0]"


def _relu(src: str, lo: int, v: Value) -> tuple[str, Value]:
    """A float ReLU, max(x, 0): no rounding."""
    if v.width == 0 or v.lo >= 0:
        return _bits(src, lo, v.width) if v.width else "", v
    if v.hi <= 0 or v.width == 1:
        return "", Value(0, 0, 0, 0.0, 0.0)
    out = Value(0, v.i, v.f, 0.0, v.hi)
    return f"({src}[{lo + v.width - 1}] ? {out.width}'h0 : {_bits(src, lo, out.width)})", out


def _offsets(bus: list[Value]) -> list[int]:
    out, at = [], 0
    for v in bus:
        out.append(at)
        at += v.width
    return out


def _relu_body(bus: list[Value], to: Fixed | None) -> tuple[list[str], list[Value]]:
    """The body lines turning ``d_in`` (values ``bus``) into ``to`` (None: a float ReLU), and the new values."""
    lines, new, parts = [], [], []
    for j, (v, lo) in enumerate(zip(bus, _offsets(bus))):
        if to is None:
            expr, out = _relu("d_in", lo, v)
        else:
            expr, out = _requant(lines, f"v{j}", "d_in", lo, v, to), _values(to, 1)[0]
        new.append(out)
        if out.width:
            parts.append(expr)
    body = [f"assign d_out = {{{', '.join(reversed(parts))}}};" if parts else "assign d_out = 1'b0;"]
    return lines + body, new


def _module(name: str, width_in: int, width_out: int, body: list[str], doc: str) -> str:
    inner = "\n".join(f"    {line}" for line in body)
    return (f"`timescale 1ns/1ps\n// {doc}\nmodule {name} (\n    input {_port(width_in)} d_in,\n"
            f"    output {_port(width_out)} d_out\n);\n{inner}\nendmodule\n")


def identifier(name: str) -> str:
    """``name`` as a Verilog identifier."""
    out = re.sub(r"\W", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else f"m_{out}"


def check_plan(plan: Plan) -> None:
    """Refuse what the verilog target cannot write exactly, in one line each."""
    for s in plan.steps:
        if s.kind not in ("linear", "relu") or (s.kind == "linear" and not s.quantized):
            what = "a float BatchNorm1d" if s.kind == "batchnorm1d" else f"a {s.kind} not fully quantized"
            raise BitsmithError(f"the verilog target needs every layer in fixed point, and {s.name!r} is {what}; "
                                "quantize it (data_in, weight, bias), remove it, or export to hls4ml instead")
        bits = s.accumulator_bits() or 0
        if bits > EXACT_BITS:
            raise BitsmithError(f"layer {s.name!r}: its exact sums need {bits} bits, and da4ml solves exactly "
                                f"up to {EXACT_BITS}; narrow its input or weight format")
    if not plan.steps or plan.steps[0].data_in is None:
        raise BitsmithError("the verilog target needs the first layer quantized (its data_in is the input bus "
                            "format); quantize it with [passes.quantize]")


def write_verilog(plan: Plan, graph: Graph, out_dir: Path, options: dict[str, Any], top: str | None = None
                  ) -> dict[str, Any]:
    """Write the design's Verilog and ``bitsmith_verilog.json`` into ``out_dir``; returns that info.

    ``options``: da4ml's solver options, the metric's (``_da4ml.OPTIONS`` or ``CostSettings().options()``), so the
    kernels are the solutions it costed; ``top``: the top module's name (default: the model's name).
    """
    check_plan(plan)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BitsmithError(f"{out_dir} is a file; give a directory for the Verilog files")
    _da4ml.require()
    top = identifier(top or plan.model)
    probs = {p.name: p for p in problems(graph)}
    stale = _previous_files(out_dir)
    for name in (INFO_FILE, SYNTH_FILE):  # the info file is written last: no info, no design
        (out_dir / name).unlink(missing_ok=True)
    files: dict[str, str] = {}
    library: set[str] = set()
    bus = _values(plan.steps[0].data_in, plan.in_features)
    first_bus = bus
    steps_info, wires = [], []
    for s in plan.steps:
        module = f"{top}_{identifier(s.name)}"
        width_in = sum(v.width for v in bus)
        entry: dict[str, Any] = {"name": s.name, "kind": s.kind, "module": module,
                                 "data_in": show(s.data_in) if s.data_in is not None else "float"}
        if s.kind == "linear":
            body, bus, logic_info = _linear(s, probs.get(s.name), module, bus, options, files, library)
            entry.update(logic_info)
            doc = f"{s.name}: round the input to {show(s.data_in)} (half to even, saturating), then x @ W + b"
        else:
            body, bus = _relu_body(bus, s.data_in)
            doc = (f"{s.name}: ReLU, rounding to {show(s.data_in)} (half to even, saturating)" if s.data_in
                   else f"{s.name}: ReLU, max(x, 0)")
        width_out = sum(v.width for v in bus)
        files[f"{module}.v"] = _module(module, width_in, width_out, body, doc)
        wires.append((module, f"n_{identifier(s.name)}", width_out))
        entry.update({"wire": wires[-1][1], "bits": width_out, "values": [[v.k, v.i, v.f] for v in bus]})
        steps_info.append(entry)
    out_fmt = uniform(bus)
    files[f"{top}.v"] = _top(top, plan, sum(v.width for v in first_bus), wires, bus, out_fmt)
    for name in sorted(library):
        files[f"{name}.v"] = _da4ml.library_verilog(name)
    order = sorted(n for n in files if n[:-2] in library) + [n for n in files if n[:-2] not in library]
    for name in order:
        write_atomic(out_dir / name, files[name], "Verilog file")
    for name in stale - set(order):  # a previous export's modules this design does not have
        (out_dir / name).unlink(missing_ok=True)
    info = {"schema": SCHEMA, "model": plan.model, "top": top, "combinational": True, "latency_cycles": 0,
            "files": order, "input": {"port": "model_inp", **_bus_info(plan.steps[0].data_in, plan.in_features)},
            "output": {"port": "model_out", "step": plan.steps[-1].name, **_bus_info(out_fmt, len(bus))},
            "layout": LAYOUT, "rounding": ROUNDING, "steps": steps_info,
            "da4ml": {"version": _da4ml.version(), "options": dict(options)}, "notes": list(plan.notes())}
    write_atomic(out_dir / INFO_FILE, json.dumps(info, indent=2) + "\n", "export info")
    return info


def _previous_files(out_dir: Path) -> set[str]:
    """The Verilog files a previous export into ``out_dir`` listed (none when there is no readable one)."""
    try:
        files = json.loads((out_dir / INFO_FILE).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str) and f.endswith(".v") and Path(f).name == f}


def _top(top: str, plan: Plan, in_bits: int, wires: list[tuple[str, str, int]], last: list[Value],
         out_fmt: Fixed) -> str:
    """The top module: the steps in a chain, and the last step's values in one format on ``model_out``."""
    lines, prev = [], "model_inp"
    for j, (module, wire, width) in enumerate(wires):
        if j:
            lines += [f"wire {_port(wires[j - 1][2])} i_{wire[2:]};", f"assign `{DELAY} i_{wire[2:]} = {prev};"]
            prev = f"i_{wire[2:]}"
        lines += [f"wire {_port(width)} {wire};", f"{module} u_{wire[2:]} (.d_in({prev}), .d_out({wire}));"]
        prev = wire
    lines.append(f"assign model_out = {_uniform_expr(prev, last, out_fmt)};")
    inner = "\n".join(f"    {line}" for line in lines)
    return (f"`timescale 1ns/1ps\n// {plan.model} exported by bitsmith: combinational; {ROUNDING}.\n{SETTLE}"
            f"module {top} (\n    input [{in_bits - 1}:0] model_inp,\n"
            f"    output [{out_fmt.width * len(last) - 1}:0] model_out\n);\n{inner}\nendmodule\n")


def _bus_info(fmt: Fixed, count: int) -> dict[str, Any]:
    return {"count": count, "width": fmt.width, "frac": fmt.frac, "signed": fmt.signed, "format": show(fmt),
            "bits": fmt.width * count}


def _uniform_expr(src: str, bus: list[Value], fmt: Fixed) -> str:
    parts = [_extend(src, v, lo, fmt.width, fmt.frac - v.f if v.width else 0) for v, lo in zip(bus, _offsets(bus))]
    return "{" + ", ".join(reversed(parts)) + "}"


def _linear(s: Step, p: Problem | None, module: str, bus: list[Value], options: dict[str, Any], files: dict[str, str],
            library: set[str]) -> tuple[list[str], list[Value], dict[str, Any]]:
    """A Linear step: its input glue and da4ml's kernel module (written into ``files``)."""
    if p is None:
        raise BitsmithError(f"layer {s.name!r} has no cost problem; the verilog target writes Linear layers "
                            "that network.problems finds")
    fmt = p.input_fmt
    if fmt.width < 1:
        raise BitsmithError(f"layer {s.name!r} reads a ReLU with a 1-bit data_in, which holds only 0; widen its "
                            "data_in_width to 2 or more")
    logic = _da4ml.cmvm_logic(p.kernel, p.kif, p.bias, options)
    ports = _da4ml.logic_ports(logic)
    odd = {tuple(q) for q in ports["inputs"]} - {kif_of(fmt), (0, 0, 0)}  # (0, 0, 0): an input it never reads
    if odd:
        raise BitsmithError(f"layer {s.name!r}: da4ml's kernel reads inputs of formats {sorted(odd)}, not "
                            f"{kif_of(fmt)}; report this with the design")
    out = [Value(k, i, f, lo, hi) for k, i, f, lo, hi in ports["outputs"]]
    info: dict[str, Any] = {"kernel_input": show(fmt), "da4ml_cost": float(logic.cost),
                            "nonzero_weights": int((p.kernel != 0).sum()),
                            "varying_outputs": sum(v.width > 0 and v.lo < v.hi for v in out)}
    if not p.kernel.any():  # weights all rounded to 0: the outputs are the bias, constants (no kernel module)
        consts = [f"{v.width}'h{int(v.lo * 2.0**v.f) & ((1 << v.width) - 1):x}" for v in out if v.width]
        return [f"assign d_out = {{{', '.join(reversed(consts))}}};" if consts else "assign d_out = 1'b0;"], out, info
    kernel = info["kernel_module"] = f"{module}_cmvm"
    code, used = _da4ml.logic_verilog(logic, kernel)
    files[f"{kernel}.v"] = code
    library.update(used)
    lines: list[str] = []
    parts = [_requant(lines, f"v{j}", "d_in", lo, v, fmt) for j, (v, lo, q) in
             enumerate(zip(bus, _offsets(bus), ports["inputs"])) if sum(q) > 0]
    width = fmt.width * len(parts)
    lines += [f"wire {_port(width)} x = {{{', '.join(reversed(parts))}}};" if parts else "wire x = 1'b0;",
              f"{kernel} kernel (.model_inp(x), .model_out(d_out));"]
    return lines, out, info
