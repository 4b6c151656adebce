"""Map the exported Verilog (``export/verilog.py``) to Xilinx 7-series LUTs with yosys, per layer module, to check
the luts metric (da4ml's adder bits) against a real technology mapping.

The flow: read every file, keep the hierarchy of the step modules and of the da4ml kernels (``keep_hierarchy``),
flatten the rest (da4ml's ``shift_adder`` instances) into them, ``synth_xilinx``, count cells per module
(``stat -json``) and write the mapped netlist. LUTs are LUT1..LUT6; CARRY4 is reported beside them.

The trap this guards against: yosys turns an out-of-range part-select into undefined bits, and undefined bits let
its optimiser delete everything they reach, without an error: a kernel then maps to 0 LUTs. A kernel may honestly
need 0 LUTs (``16*x + 7`` is wiring: da4ml counts 3 adder bits, yosys none), so the refusal looks at the netlist:
a kernel with 0 LUTs whose outputs are all constants, though da4ml's solution has outputs that vary, lost its
logic. yosys' "out of bounds" warnings are returned with the result.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bitsmith.errors import BitsmithError
from bitsmith.export.verilog import SYNTH_FILE
from bitsmith.export.verilog_sim import load_info
from bitsmith.files import write_atomic

MISSING = "synthesis needs yosys: apt install yosys"
LUTS = tuple(f"LUT{n}" for n in range(1, 7))
TRAP_WARNINGS = re.compile(r"out of bounds|to undef", re.IGNORECASE)
RESULT_FILE = SYNTH_FILE
FLOW = "yosys synth_xilinx (7-series), hierarchy kept per step module and per da4ml kernel"


def _script(info: dict[str, Any], out_dir: Path) -> str:
    files = " ".join(f'"{out_dir / f}"' for f in info["files"])
    keep = [s["module"] for s in info["steps"]] + [s["kernel_module"] for s in info["steps"] if "kernel_module" in s]
    return "\n".join([f"read_verilog {files}", f"hierarchy -check -top {info['top']}",
                      f"setattr -mod -set keep_hierarchy 1 {' '.join(keep)}",
                      f"synth_xilinx -flatten -top {info['top']}", "tee -q -o stat.json stat -json",
                      "write_verilog -noattr netlist.v"]) + "\n"


def parse_stat(text: str) -> dict[str, dict[str, int]]:
    """Cells by type per module from yosys 0.23's ``stat -json`` (whose "design" part also holds plain-text
    hierarchy lines, ``name  1``, dropped here)."""
    stat = json.loads("\n".join(line for line in text.splitlines()
                                if not re.fullmatch(r'\s*[^\s"{}]+\s+\d+\s*', line)))
    return {name.lstrip("\\"): {k: int(v) for k, v in m.get("num_cells_by_type", {}).items()}
            for name, m in stat.get("modules", {}).items()}


def outputs_constant(netlist: str, module: str) -> bool:
    """Whether the mapped ``module`` drives its outputs with constants only (nothing reads its input)."""
    m = re.search(rf"^module {re.escape(module)}\(.*?^endmodule", netlist, re.MULTILINE | re.DOTALL)
    if m is None:
        return False
    body = m.group(0)
    if re.search(r"\(\s*model_out\b", body):  # a cell drives an output
        return False
    drivers = " ".join(re.findall(r"^\s*assign model_out\S*\s*=\s*(.*?);", body, re.MULTILINE))
    return not re.search(r"[A-Za-z_\\]", re.sub(r"\d+'[hbd][0-9a-fA-FxXzZ]+", "", drivers))


def synth_yosys(out_dir: Path, timeout_s: float = 1800.0, netlist: Path | None = None) -> dict[str, Any]:
    """LUTs per step module, per da4ml kernel and in total, from yosys' ``synth_xilinx``; also written to
    ``yosys_luts.json`` in ``out_dir``. ``netlist``: where to keep the mapped netlist (Xilinx cells, Verilog).

    Refuses (BitsmithError) a kernel whose logic yosys deleted (0 LUTs, constant outputs: see the module doc).
    """
    out_dir = Path(out_dir).resolve()
    info = load_info(out_dir)
    yosys = shutil.which("yosys")
    if yosys is None:
        raise BitsmithError(MISSING)
    with tempfile.TemporaryDirectory(prefix="bitsmith-yosys-") as tmp:
        work = Path(tmp)
        (work / "synth.ys").write_text(_script(info, out_dir))
        try:
            run = subprocess.run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, check=False,
                                 capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BitsmithError(f"yosys took longer than {timeout_s:.0f} s; synthesize a smaller design or raise "
                                "the time limit") from None
        log = (work / "yosys.log").read_text(errors="replace") if (work / "yosys.log").exists() else ""
        if run.returncode != 0 or not (work / "stat.json").exists() or not (work / "netlist.v").exists():
            tail = " | ".join((run.stderr or log).strip().splitlines()[-3:])
            raise BitsmithError(f"yosys failed (exit {run.returncode}): {tail}")
        cells = parse_stat((work / "stat.json").read_text())
        mapped = (work / "netlist.v").read_text()
        if netlist is not None:
            write_atomic(netlist, mapped, "netlist")
    warnings = [w.strip() for w in log.splitlines() if "Warning" in w and TRAP_WARNINGS.search(w)]
    result = summarize(info, cells, mapped, warnings)
    write_atomic(out_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n", "synthesis result")
    return result


def summarize(info: dict[str, Any], cells: dict[str, dict[str, int]], netlist: str, warnings: list[str]
              ) -> dict[str, Any]:
    """Per step: LUTs of its own logic (glue) and of its kernel; refuses a kernel whose logic yosys deleted."""
    def count(module: str, types: tuple[str, ...]) -> int:
        return sum(cells.get(module, {}).get(t, 0) for t in types)

    steps, total, carry = {}, 0, 0
    for s in info["steps"]:
        row: dict[str, Any] = {"kind": s["kind"], "module": s["module"], "glue_luts": count(s["module"], LUTS),
                               "carry4": count(s["module"], ("CARRY4",))}
        kernel = s.get("kernel_module")
        if kernel is not None:
            luts = count(kernel, LUTS)
            if luts == 0 and s["varying_outputs"] and outputs_constant(netlist, kernel):
                seen = f"; yosys warned: {warnings[0]}" if warnings else ""
                raise BitsmithError(
                    f"yosys mapped layer {s['name']!r} ({kernel}, {s['nonzero_weights']} non-zero weights) to 0 LUTs "
                    f"with constant outputs: undefined bits (an out-of-range part-select) let it delete the logic, "
                    f"so the count is wrong; fix the Verilog (or report it with the design){seen}")
            row.update({"kernel_module": kernel, "kernel_luts": luts, "da4ml_cost": s["da4ml_cost"]})
            row["carry4"] += count(kernel, ("CARRY4",))
        row["luts"] = row["glue_luts"] + row.get("kernel_luts", 0)
        steps[s["name"]] = row
        total, carry = total + row["luts"], carry + row["carry4"]
    return {"flow": FLOW, "top": info["top"], "steps": steps, "luts": total, "carry4": carry,
            "warnings": warnings[:20]}
