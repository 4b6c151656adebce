"""``bitsmith export``: a quantized design to the hardware tools its users run next, bit-exact.

Targets: hls4ml (a project whose per-layer precisions reproduce bitsmith's
arithmetic, ``export/hls4ml.py``) and QONNX (``Quant`` nodes with the same
formats, ``export/qonnx.py``). Both start from one description of the design,
``plan.plan_of``; ``--verify`` runs the test split through the exported model
and through bitsmith and compares them layer by layer (``plan.compare``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError

TARGETS = {"hls4ml": ("hls4ml", "hls4ml"), "qonnx": ("qonnx", "qonnx"), "verilog": ("da4ml", "da")}  # -> (module, extra)
DIRECTORIES = ("hls4ml", "verilog")  # targets written into a directory (--output-dir); qonnx is one file
SIMULATORS = ("auto", "icarus", "verilator")
BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_parallel", "io_stream")


def check_target(to: str, backend: str = "Vitis", io_type: str = "io_parallel", flag: str = "--to",
                 strategy: str = "latency", synth: str | None = None, simulator: str = "auto") -> None:
    """Refuse an unknown target, backend, I/O type, strategy, synthesis tool or simulator, or a missing extra or
    tool, before anything is loaded or written."""
    if to not in TARGETS:
        raise BitsmithError(f"{flag} {to}: export targets are {', '.join(TARGETS)}")
    if synth is not None and (to != "verilog" or synth != "yosys"):
        raise BitsmithError(f"--synth {synth}: synthesis is for --to verilog, with --synth yosys")
    if simulator not in SIMULATORS or (simulator != "auto" and to != "verilog"):
        raise BitsmithError(f"--simulator {simulator}: the verilog target simulates with {', '.join(SIMULATORS)}")
    if to == "verilog":
        from bitsmith.cost import _da4ml
        from bitsmith.export.synth import MISSING as NO_YOSYS

        if _da4ml.version() is None:
            raise BitsmithError("export to verilog needs da4ml: pip install 'bitsmith[da]'")
        if synth == "yosys" and shutil.which("yosys") is None:
            raise BitsmithError(NO_YOSYS)
        return
    if strategy != "latency":
        from bitsmith.cost import _da4ml
        from bitsmith.export.hls4ml_da import DA_MISSING, STRATEGIES

        if to != "hls4ml" or strategy not in STRATEGIES:
            raise BitsmithError(f"--strategy {strategy}: the hls4ml target takes --strategy "
                                f"{' or '.join(STRATEGIES)}")
        if _da4ml.version() is None:
            raise BitsmithError(DA_MISSING)
    if to == "hls4ml":
        if backend not in BACKENDS:
            raise BitsmithError(f"--backend {backend}: hls4ml backends bitsmith configures are "
                                f"{', '.join(BACKENDS)}")
        if io_type not in IO_TYPES:
            raise BitsmithError(f"--io-type {io_type}: bitsmith's hls4ml export writes {', '.join(IO_TYPES)}")
    needed = ["qonnx", "onnx", "onnxruntime"] + (["hls4ml"] if to == "hls4ml" else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BitsmithError(f"export to {to} needs {', '.join(missing)}: pip install 'bitsmith[{TARGETS[to][1]}]'")


def _check_output(to: str, output: Path) -> None:
    if to in DIRECTORIES:
        if output.exists() and not output.is_dir():
            what = "the hls4ml project" if to == "hls4ml" else "the Verilog files"
            raise BitsmithError(f"--output-dir {output} is a file; give a directory for {what}")
    elif output.is_dir():
        raise BitsmithError(f"--output {output} is a directory; give a file name such as {output / 'model.onnx'}")
    for parent in output.parents:
        if parent.exists() and not parent.is_dir():
            raise BitsmithError(f"cannot write {output}: {parent} is a file, not a directory")


def load_design(settings: Settings):
    """The checkpoint ``settings.load_name`` as (plan, graph, prepared); a float design is refused."""
    from bitsmith.export.plan import plan_of
    from bitsmith.graph import trace
    from bitsmith.jobs import prepare

    if not settings.load_name:
        raise BitsmithError("export needs a checkpoint: pass --load CKPT (a transformed checkpoint, or a "
                            "search's best/trial_N/model.ckpt)")
    p = prepare(settings)
    if not any(name == "quantize" for name, _ in p.meta.get("passes", [])):
        raise BitsmithError(f"checkpoint {settings.load_name} holds a float model (no quantize pass), so it has "
                            "no fixed-point formats to export; quantize it first (`bitsmith transform` with "
                            "[passes.quantize]) or export a search's best/trial_N/model.ckpt")
    graph = trace(p.model.eval(), p.data.in_shape)
    plan = plan_of(graph, p.settings.model)
    if not any(step.quantized for step in plan.steps):
        raise BitsmithError(f"checkpoint {settings.load_name}: no layer is quantized, so there are no "
                            "fixed-point formats to export; quantize some layers first")
    return plan, graph, p


@contextlib.contextmanager
def stage(console, what: str):
    """Say what export is doing: a spinner on a terminal; otherwise one line, which a log keeps."""
    if not console.is_terminal:
        console.print(f"export: {what} ...", highlight=False, markup=False)
        yield
        return
    from rich.console import Console

    # Pinned to the terminal: hls4ml's prints are redirected meanwhile, and the spinner would follow them.
    with Console(file=console.file).status(f"{what} ..."):
        yield


def export(settings: Settings, to: str, output: str | Path, backend: str = "Vitis", io_type: str = "io_parallel",
           verify: bool = False, console=None, strategy: str = "latency", synth: str | None = None,
           simulator: str = "auto") -> dict[str, Any]:
    """Write the checkpoint's design for ``to`` at ``output``; with ``verify``, compare it with bitsmith; with
    ``synth`` (verilog), map it to LUTs."""
    from bitsmith.jobs import make_console

    console = console or make_console()
    output = Path(output)
    check_target(to, backend, io_type, strategy=strategy, synth=synth, simulator=simulator)
    _check_output(to, output)
    with stage(console, f"loading {settings.load_name}"):
        plan, graph, p = load_design(settings)
    t0 = time.perf_counter()
    if to == "qonnx":
        from bitsmith.export.qonnx import write_qonnx

        with stage(console, f"writing the QONNX model {output}"):
            write_qonnx(plan, output)
        written = None
    elif to == "verilog":
        from bitsmith.export.rtl import write_rtl

        with stage(console, f"writing the Verilog into {output}"):
            written = write_rtl(plan, graph, output, settings)
        from bitsmith.export.rtl import print_kernels

        print_kernels(written, console)
    else:
        from bitsmith.export.hls4ml import write_hls4ml

        with stage(console, f"writing the hls4ml project {output}"):
            written = write_hls4ml(plan, output, backend=backend, io_type=io_type, strategy=strategy)
    seconds = {"write": time.perf_counter() - t0}
    console.print(f"exported {p.settings.model} from {settings.load_name} to {to}: {output}", highlight=False)
    print_formats(plan, console)
    if plan.inexact:  # one line for the design, however many layers
        console.print(f"warning: not bit-exact: {'; '.join(plan.notes(to))}", highlight=False, markup=False)
    summary: dict[str, Any] = {"output": str(output), "to": to, "exact_design": plan.exact,
                               "inexact": [r.what for r in plan.inexact], "seconds": seconds}
    if getattr(written, "bitsmith_da_costs", None):
        summary["da_costs"] = print_da_costs(written.bitsmith_da_costs, graph, console)
    if to == "verilog" and synth == "yosys":
        from bitsmith.export.rtl import synthesize

        t0 = time.perf_counter()
        summary["synth"] = synthesize(output, graph, settings, console, stage)
        seconds["synth"] = time.perf_counter() - t0
    if verify:
        t0 = time.perf_counter()
        summary.update(verify_export(plan, graph, p.data.test, to, output, written, console, simulator))
        seconds["verify"] = time.perf_counter() - t0  # hls4ml: compiling included
    return summary


def verify_export(plan, graph, split, to: str, output: Path, written, console, simulator: str = "auto"
                  ) -> dict[str, Any]:
    """Run ``split`` through the exported model and through bitsmith; print and return how they differ.

    ``bit_exact`` only for a design that can be (``plan.exact``) and that matched in every layer; a design with
    float layers that happened to match on ``split`` is ``equal_on_split``, never bit-exact.
    """
    from bitsmith.export.plan import compare, reference

    x = split.x.reshape(len(split), -1)
    with stage(console, f"running the test split ({len(split)} rows) through bitsmith"):
        ours = reference(graph, split.x)
    if to == "qonnx":
        from bitsmith.export.qonnx import run_qonnx

        with stage(console, "running the test split through QONNX's executor"):
            theirs = run_qonnx(output, x.double().numpy())
    elif to == "verilog":
        from bitsmith.export.verilog_sim import simulate

        with stage(console, f"simulating the Verilog ({simulator}) on the test split"):
            theirs = simulate(output, x.double().numpy(), simulator)
    else:
        from bitsmith.export.hls4ml import compile_and_run

        with stage(console, "compiling the project with g++ and running the test split through it"):
            theirs = compile_and_run(written, x.double().numpy())
    last = plan.steps[-1].name
    cmp = compare(ours, theirs, last)
    from rich.table import Table

    table = Table(title=f"Verification on the test split ({cmp.rows} rows), layer by layer:", title_justify="left")
    for col in ("layer", "kind", "max |diff|", "rows differing"):
        table.add_column(col)
    kinds = {s.name: s.kind for s in plan.steps}
    for name, (diff, rows) in cmp.per_step.items():
        table.add_row(name, kinds.get(name, ""), f"{diff:.6g}", str(rows))
    console.print(table)
    worst = max([cmp.max_abs_diff, *(d for d, _ in cmp.per_step.values())])
    first = next((n for n, (d, _) in cmp.per_step.items() if d > 0), None)
    equal = worst == 0.0
    exact = plan.exact and equal
    where = first if first is not None else "the outputs"
    reasons = ", ".join(r.what for r in plan.inexact)
    if exact:
        verdict = "bit-exact"
    elif plan.exact:
        verdict = f"NOT bit-exact, though every layer is quantized: first difference at {where}; a bug in the export"
    elif equal:
        verdict = f"equal on these rows, but not bit-exact: {reasons}"
    else:
        verdict = f"not bit-exact: {reasons}; layers match within {worst:.3g}, the first to differ is {where}"
    console.print(f"max |diff| of the outputs: {cmp.max_abs_diff:.6g}; predictions agree on "
                  f"{cmp.agreement * 100:.2f}% of {cmp.rows} rows ({verdict})", highlight=False, markup=False)
    return {"max_abs_diff": cmp.max_abs_diff, "agreement": cmp.agreement, "rows": cmp.rows,
            "per_layer": {k: {"max_abs_diff": d, "rows": r} for k, (d, r) in cmp.per_step.items()},
            "max_layer_diff": worst, "equal_on_split": equal, "bit_exact": exact, "first_difference": first}


def print_da_costs(theirs: dict[str, float], graph, console) -> dict[str, Any]:
    """hls4ml's stored da_kernel_cost of each Linear beside bitsmith's luts metric of the same layer."""
    from rich.table import Table

    from bitsmith.cost.network import network_cost

    ours = {c.name: c.kernel for c in network_cost(graph).layers}
    table = Table(title="Distributed arithmetic: LUTs (adder bits) of each kernel", title_justify="left")
    for col in ("layer", "hls4ml da_kernel_cost", "bitsmith luts (kernel)", "equal"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for name, cost in theirs.items():
        table.add_row(name, f"{cost:,.0f}", f"{ours.get(name, float('nan')):,.0f}",
                      "yes" if ours.get(name) == cost else "NO")
    console.print(table)
    equal = all(ours.get(n) == c for n, c in theirs.items())
    if not equal:
        console.print("warning: hls4ml's cost differs from bitsmith's luts metric (DA_HARD_DC set, or another "
                      "da4ml version?)", highlight=False, markup=False)
    return {"hls4ml": theirs, "bitsmith": {n: ours.get(n) for n in theirs}, "equal": equal}


def print_formats(plan, console) -> None:
    from rich.table import Table

    def show(fmt) -> str:
        if fmt is None:
            return "float"
        kind = "ap_fixed" if fmt.signed else "ap_ufixed"
        return f"{kind}<{fmt.width},{fmt.width - fmt.frac}>"

    table = Table(title="Formats (rounding half to even, saturating):", title_justify="left")
    for col in ("layer", "kind", "input", "weight", "bias", "accumulator bits"):
        table.add_column(col)
    for s in plan.steps:
        table.add_row(s.name, s.kind, show(s.data_in), show(s.weight_fmt) if s.kind == "linear" else "",
                      show(s.bias_fmt) if s.kind == "linear" and s.bias is not None else "",
                      str(s.accumulator_bits() or ""))
    console.print(table)
