"""The one module that imports da4ml (LGPL-3.0, the optional extra ``bitsmith[da]``).

Everything bitsmith asks of the solver goes through the functions here, with plain arguments and plain
results (numbers, lists, numpy arrays), so that they cross a process boundary and so that moving to
another solver (alkaid, da4ml's successor) is a new adapter, not a rewrite. Nothing else imports da4ml;
a test checks that.

What a layer's cost is, exactly as hls4ml 1.3 computes the ``da_kernel_cost`` of a Dense layer with
``Strategy: distributed_arithmetic``: trace ``x @ kernel + bias`` on an input array of the layer's input
intervals, with ``HWConfig(1, -1, -1)`` (costs in adder bits, depth in adder levels) and the solver
options given, and read the combinational logic's ``cost``.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

import numpy as np

from bitsmith.errors import BitsmithError

NAME = "da4ml"
TESTED = ("0.6",)  # minor versions whose results this adapter was checked on
MISSING = "the luts metric needs da4ml: pip install 'bitsmith[da]'"
# The solver options bitsmith passes on, with hls4ml 1.3's values (its DA_HARD_DC default, and
# search_all_decompose_dc=True): the cost is then the one hls4ml stores.
OPTIONS = {"hard_dc": 2, "search_all_decompose_dc": True}


@functools.cache
def version() -> str | None:
    """The installed da4ml's version, or None when it is not installed."""
    try:
        return importlib.metadata.version("da4ml")
    except importlib.metadata.PackageNotFoundError:
        return None


def require() -> str:
    """The version, or a one-line BitsmithError saying what to install."""
    v = version()
    if v is None:
        raise BitsmithError(MISSING)
    return v


def _trace():
    try:
        from da4ml.trace import FixedVariableArray, HWConfig, comb_trace
    except ImportError:
        raise BitsmithError(MISSING) from None
    return FixedVariableArray, HWConfig, comb_trace


def _input(kif: np.ndarray, options: dict[str, Any]):
    array, hw, _ = _trace()
    k, i, f = (np.asarray(kif[:, j], dtype=np.int64) for j in range(3))
    return array.from_kif(k, i, f, hw(1, -1, -1), solver_options=dict(options))


def cmvm_logic(kernel: np.ndarray, kif: np.ndarray, bias: np.ndarray | None, options: dict[str, Any]):
    """da4ml's combinational logic for ``x @ kernel + bias``: kernel (n_in, n_out), kif (n_in, 3)."""
    _, _, comb_trace = _trace()
    x = _input(kif, options)
    y = x @ np.asarray(kernel, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return comb_trace(x, y)


def _summary(logic) -> dict[str, Any]:
    lat = [float(v) for v in logic.out_latency] or [0.0]
    return {"cost": float(logic.cost), "depth": max(lat),
            "out_kif": [[int(a), int(b), int(c)] for a, b, c in np.asarray(logic.out_kifs).T]}


def solve_cmvm(kernel: np.ndarray, kif: np.ndarray, bias: np.ndarray | None, options: dict[str, Any]) -> dict:
    """Cost (adder bits, ~LUTs), depth (adder levels) and output formats of ``x @ kernel + bias``."""
    return _summary(cmvm_logic(kernel, kif, bias, options))


def requant_logic(kif: np.ndarray, to: tuple[int, int, int], relu: bool):
    """The logic that rounds (half up: da4ml has no ties-to-even) and saturates values of formats ``kif``
    to ``to`` (k, i, f), after a ReLU when ``relu``."""
    _, _, comb_trace = _trace()
    x = _input(kif, {})
    k, i, f = to
    y = x.relu() if relu else x
    y = y.quantize(np.full(len(kif), k), np.full(len(kif), i), np.full(len(kif), f), "SAT", "RND")
    return comb_trace(x, y)


def solve_requant(kif: np.ndarray, to: tuple[int, int, int], relu: bool) -> dict:
    return _summary(requant_logic(kif, to, relu))


def logic_outputs(logic, x: np.ndarray) -> np.ndarray:
    """Run ``x`` (rows of input values on their grids) through the logic, bit-exactly (da4ml's own model)."""
    return np.asarray(logic.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)


# --- RTL (export/verilog.py) ---

STATIC_MODULES = ("shift_adder", "negative", "mux", "multiplier", "binop", "lookup_table")
# da4ml's negative.v names a lint code (WIDTHTRUNC) that Verilator before 5.008 rejects as an error.
_LINT_FIXES = (("lint_off WIDTHTRUNC", "lint_off WIDTH"), ("lint_on WIDTHTRUNC", "lint_on WIDTH"))


def logic_ports(logic) -> dict[str, list]:
    """The packed port layout of ``logic``'s Verilog: per input [k, i, f]; per output [k, i, f, min, max].

    Each value takes ``k + i + f`` bits (da4ml's minimal format of its interval; 0 bits: the constant 0), values
    packed from bit 0 up in order; ``min``/``max`` are the output's exact bounds.
    """
    from da4ml.types import minimal_kif

    ins = [[int(v) for v in minimal_kif(q)] for q in logic.inp_qint]
    outs = [[*(int(v) for v in minimal_kif(q)), float(q.min), float(q.max)] for q in logic.out_qint]
    return {"inputs": ins, "outputs": outs}


def logic_verilog(logic, module: str) -> tuple[str, list[str]]:
    """The combinational Verilog module ``module`` of ``logic`` (da4ml's generator), and the names of da4ml's
    library modules it instantiates (``library_verilog`` gives their sources)."""
    from da4ml.codegen.rtl.verilog import comb_logic_gen

    if logic.lookup_tables:
        raise BitsmithError(f"da4ml's solution for {module} uses lookup tables, which the verilog export does "
                            "not write; report this with the design")
    code = comb_logic_gen(logic, module, print_latency=False, timescale="`timescale 1ns/1ps")
    used = [m for m in STATIC_MODULES if f" {m} #(" in code]
    return code, used


def library_verilog(name: str) -> str:
    """The source of da4ml's library module ``name`` (lint pragmas made readable by Verilator 5.006)."""
    from pathlib import Path

    from da4ml.codegen import rtl

    text = (Path(rtl.__file__).parent / "verilog" / "source" / f"{name}.v").read_text()
    for old, new in _LINT_FIXES:
        text = text.replace(old, new)
    return text
