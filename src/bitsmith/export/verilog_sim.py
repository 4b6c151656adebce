"""Run rows through the exported Verilog (``export/verilog.py``) with Icarus Verilog or Verilator, to compare it
with bitsmith's own outputs (``plan.reference``, ``plan.compare``).

A generated testbench reads the rows from a hex file, sets the top's input bus, lets every step settle (Icarus
gets ``BITSMITH_SETTLE``, see ``export/verilog.py``) and writes every step's ``n_<step>`` wire and the output port;
everything is compiled and run in a temporary directory, so nothing is left in the export.

``auto``: Icarus up to ``AUTO_ICARUS_ROWS`` rows, else Verilator (each falls back to the other when missing).
Measured on digits-mlp (64-64-32-10), 360 rows, 2 cores: Icarus 11.4 s (8-bit, 24.6k adder bits) and 15.0 s
(mixed formats, 31.9k), nearly all of it running (~0.03 s a row); Verilator 44 s and 57 s, nearly all of it
compiling (running: 0.01 s). Both grow with the design, so the crossover is about 1500 rows for either.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bitsmith.errors import BitsmithError
from bitsmith.export.verilog import INFO_FILE

SIMULATORS = ("icarus", "verilator")
AUTO_ICARUS_ROWS = 1500  # above this, Verilator's compile costs less than Icarus' time per row (see above)
INSTALL = {"icarus": "apt install iverilog", "verilator": "apt install verilator"}
# Small C++ functions, unoptimised: g++ spends minutes optimising Verilator's one large function otherwise
# (digits-mlp: 575 s with -O1 unsplit, 49 s like this; running 360 rows takes 0.01 s either way).
VERILATOR_BUILD = ("--output-split-cfuncs", "200", "--output-split", "3000", "-CFLAGS", "-O0")
TOOLS = {"icarus": ("iverilog", "vvp"), "verilator": ("verilator",)}


def load_info(out_dir: Path) -> dict[str, Any]:
    """The export's ``bitsmith_verilog.json``; a one-line error when the directory holds no finished export."""
    path = Path(out_dir) / INFO_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BitsmithError(f"{out_dir} holds no Verilog export ({INFO_FILE} is missing); run the export to "
                            "verilog first") from None
    except (OSError, ValueError) as e:
        raise BitsmithError(f"cannot read {path}: {e}; export to verilog again") from None


def _tool(simulator: str, rows: int) -> tuple[str, dict[str, str]]:
    """The simulator to use and the paths of its programs; one line naming the package when missing."""
    if simulator not in ("auto", *SIMULATORS):
        raise BitsmithError(f"simulator {simulator!r}: choose auto, {', '.join(SIMULATORS)}")
    order = (simulator,) if simulator != "auto" else SIMULATORS if rows <= AUTO_ICARUS_ROWS else SIMULATORS[::-1]
    for name in order:
        found = {t: shutil.which(t) for t in TOOLS[name]}
        if all(found.values()):
            return name, found  # type: ignore[return-value]
    if simulator == "auto":
        raise BitsmithError("simulating the Verilog needs Icarus Verilog or Verilator: apt install iverilog (or "
                            "verilator)")
    raise BitsmithError(f"simulating with {simulator} needs {' and '.join(TOOLS[simulator])}: {INSTALL[simulator]}")


def to_input(x: np.ndarray, bus: dict[str, Any]) -> list[int]:
    """Rows of real values -> the input bus's integers, packed: bitsmith's rounding (half to even, saturating)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != bus["count"]:
        raise BitsmithError(f"simulate takes rows of {bus['count']} values; got an array of shape {x.shape}")
    if not np.isfinite(x).all():
        raise BitsmithError("simulate takes finite values; the rows hold NaN or infinity")
    width, frac, signed = bus["width"], bus["frac"], bus["signed"]
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    ints = np.clip(np.round(x * 2.0**frac), lo, hi).astype(object)  # np.round: half to even
    mask, rows = (1 << width) - 1, []
    for row in ints:
        packed = 0
        for j, v in enumerate(row):
            packed |= (int(v) & mask) << (j * width)
        rows.append(packed)
    return rows


def unpack(packed: int, values: list[list[int]]) -> list[float]:
    """One bus -> its real values; ``values``: each value's [sign bit, integer bits, fraction bits], low first."""
    out, at = [], 0
    for k, i, f in values:
        width = max(k + i + f, 0)
        v = (packed >> at) & ((1 << width) - 1)
        if k and width and v >> (width - 1):
            v -= 1 << width
        out.append(v * 2.0**-f)
        at += width
    return out


def uniform_values(bus: dict[str, Any]) -> list[list[int]]:
    """The per-value formats of a bus whose values share one format (the input and output ports)."""
    k = int(bus["signed"])
    return [[k, bus["width"] - bus["frac"] - k, bus["frac"]]] * bus["count"]


def _testbench(info: dict[str, Any], rows: int, inputs: Path, outputs: Path) -> str:
    wires = [s["wire"] for s in info["steps"]]
    fmt = " ".join(["%h"] * (len(wires) + 1))
    args = ", ".join([*(f"dut.{w}" for w in wires), "out"])
    bits_in, bits_out = info["input"]["bits"], info["output"]["bits"]
    return f"""`timescale 1ns/1ps
module bitsmith_tb;
    reg [{bits_in - 1}:0] rows [0:{rows - 1}];
    reg [{bits_in - 1}:0] inp;
    wire [{bits_out - 1}:0] out;
    integer i, fd;
    {info['top']} dut (.model_inp(inp), .model_out(out));
    initial begin
        $readmemh("{inputs}", rows);
        fd = $fopen("{outputs}", "w");
        for (i = 0; i < {rows}; i = i + 1) begin
            inp = rows[i];
            #{len(wires) + 1};
            $fwrite(fd, "{fmt}\\n", {args});
        end
        $fclose(fd);
        $finish;
    end
endmodule
"""


def _run(cmd: list[str], cwd: Path, what: str, timeout_s: float) -> None:
    try:
        run = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BitsmithError(f"{what} took longer than {timeout_s:.0f} s; simulate fewer rows or use the other "
                            "simulator") from None
    if run.returncode != 0:
        tail = " | ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
        raise BitsmithError(f"{what} failed (exit {run.returncode}): {tail}")


def _commands(name: str, tools: dict[str, str], top: str, sources: list[str], binary: Path) -> list[list[str]]:
    if name == "icarus":
        return [[tools["iverilog"], "-g2012", "-DBITSMITH_SETTLE", "-s", top, "-o", str(binary), *sources],
                [tools["vvp"], "-n", str(binary)]]
    mdir = binary.parent / "obj"
    jobs = str(min(8, os.cpu_count() or 1))
    return [[tools["verilator"], "--binary", "-j", jobs, "--top-module", top, "-Wno-fatal", "-Wno-lint",
             "-Wno-style", "--Mdir", str(mdir), "-o", "tb", *VERILATOR_BUILD, *sources], [str(mdir / "tb")]]


def simulate(out_dir: Path, x: np.ndarray, simulator: str = "auto", timeout_s: float = 900.0
             ) -> dict[str, np.ndarray]:
    """Every step's outputs (real values, float64, keyed by step name) for the rows ``x``, from the RTL; the
    last step's are read from the output port too, and must agree with its wire.

    ``x`` is rounded to the input bus's format with bitsmith's rounding first (values already on that grid are
    unchanged), so the result compares with ``plan.reference`` of the same rows (give it the float32 rows
    bitsmith saw, as float64: bitsmith rounds the float32 values).
    """
    out_dir = Path(out_dir).resolve()
    info = load_info(out_dir)
    packed = to_input(x, info["input"])
    name, tools = _tool(simulator, len(packed))
    if not packed:
        return {s["name"]: np.zeros((0, len(s["values"]))) for s in info["steps"]}
    digits = max(1, -(-info["input"]["bits"] // 4))
    with tempfile.TemporaryDirectory(prefix="bitsmith-sim-") as tmp:
        work = Path(tmp)
        inputs, outputs = work / "inputs.hex", work / "outputs.hex"
        inputs.write_text("".join(f"{v:0{digits}x}\n" for v in packed))
        (work / "tb.v").write_text(_testbench(info, len(packed), inputs, outputs))
        sources = [str(work / "tb.v")] + [str(out_dir / f) for f in info["files"]]
        compile_, run = _commands(name, tools, "bitsmith_tb", sources, work / "tb.bin")
        _run(compile_, work, f"compiling the Verilog with {name}", timeout_s)
        _run(run, work, f"simulating the Verilog with {name}", timeout_s)
        lines = outputs.read_text().split("\n")[:len(packed)] if outputs.exists() else []
    if len(lines) != len(packed):
        raise BitsmithError(f"the {name} simulation wrote {len(lines)} of {len(packed)} rows; see its messages")
    return _decode(info, lines)


def _decode(info: dict[str, Any], lines: list[str]) -> dict[str, np.ndarray]:
    """Every step's values from its wire; the last step's also from the output port, which must agree."""
    buses = [(s["name"], s["wire"], s["values"]) for s in info["steps"]]
    port = info["output"]
    buses.append((port["step"], port["port"], uniform_values(port)))
    out = {name: np.zeros((len(lines), len(values))) for name, _, values in buses}
    for r, line in enumerate(lines):
        words = line.split()
        for j, ((name, wire, values), word) in enumerate(zip(buses, words)):
            if any(c in word.lower() for c in "xz") or len(words) != len(buses):
                raise BitsmithError(f"the RTL gives undefined bits in {wire} (row {r}: {word}); the export is "
                                    "broken: report it with the design")
            row = unpack(int(word, 16), values)
            if j == len(buses) - 1 and list(out[name][r]) != row:
                raise BitsmithError(f"row {r}: the output port and the last step's wire {buses[-2][1]} disagree; "
                                    "the export is broken: report it with the design")
            out[name][r] = row
    return out
