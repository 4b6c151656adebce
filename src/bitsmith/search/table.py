"""The best-trials table a search prints: one row per chosen design, its objective metrics (an accuracy with
its 95% interval), and what its passes set per layer (``linear w8.4 a6.3 b4.2``), laid out for 80 columns;
then the test split's figures, and a note when the validation split cannot tell the front's designs apart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from bitsmith.stats import accuracy_interval, crowded


def _show(v: Any) -> Any:
    """A metric as the table prints it: counts exactly, small measured figures to 4 significant digits."""
    if not isinstance(v, float):
        return v
    v = float(v)  # a numpy float would print as np.float64(...)
    if not math.isfinite(v):
        return v
    if v.is_integer():  # params, MACs, BOPs, bits (a scale of 1.0 makes them floats)
        return int(v)
    if (v * 8).is_integer() or abs(v) >= 1000:
        # Bytes are multiples of 1/8 (3 decimals, exact); 4 digits would drop a large value's fraction.
        return round(v, 3)
    return float(f"{v:.4g}")


def _round(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _show(v) for k, v in (d or {}).items()}


TABLE_WIDTH = 80  # the table is laid out for 80 columns at most, on a terminal and in a log file alike

# Metric -> (table header, unit, plot label). Metrics not listed are shown by name.
METRICS = {
    "accuracy": ("accuracy", "", "accuracy (validation)"),
    "loss": ("loss", "", "loss (validation)"),
    "train_loss": ("train loss", "", "training loss"),
    "latency": ("latency", "ms", "latency (ms per sample)"),
    "latency_iqr": ("latency IQR", "ms", "latency IQR (ms)"),
    "throughput": ("throughput", "samples/s", "throughput (samples/s)"),
    "average_bitwidth": ("avg width", "bits", "average bit width (bits)"),
    "average_activation_bitwidth": ("avg act. width", "bits", "average activation bit width (bits)"),
    "memory_density": ("density", "x", "memory density (x smaller than the reference)"),
    "model_size": ("size", "bytes", "model size (bytes)"),
    "params": ("params", "", "parameters"),
    "flops": ("FLOPs", "", "FLOPs per sample"),
    "macs": ("MACs", "", "MACs per sample"),
    "bops": ("BOPs", "", "bit operations per sample (BOPs)"),
    "elementwise_ops": ("elem. ops", "", "elementwise operations per sample"),
    "weighted sum": ("weighted sum", "", "weighted sum (of the scaled metrics)"),
}
PARTS = (("weight", "w"), ("data_in", "a"), ("bias", "b"))  # the order a layer's formats are printed in


def metric_label(name: str) -> str:
    """A metric's name for a plot axis, with its unit."""
    return METRICS[name][2] if name in METRICS else name.replace("_", " ")


def _header(name: str) -> str:
    short, unit, _ = METRICS.get(name, (name.replace("_", " "), "", ""))
    return f"{short}\n({unit})" if unit else short


def _cell(v: Any) -> str:
    """A metric as a table cell: ``_show``'s figure, thousands separated."""
    v = _show(v)
    if v is None:
        return "-"
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:,}"
    return str(v)


def design_items(config: list | None) -> list[str]:
    """What a trial's passes set, one item per table: ``linear w8.4 a6.3 b8.4``, ``seq_blocks_0 out×2``.

    Formats are ``width.frac`` (bits, of which fractional) for w(eight), a (the layer's input) and
    b(ias); the key is what the table is keyed by (a layer type with ``by = "type"``, a node with
    ``by = "name"``). Tables that leave layers as they are ("NA") are left out.
    """
    from bitsmith.quant import NEEDS, fixed  # lazily: torch is not needed to import this module

    needs = {t.__name__.lower(): parts for t, parts in NEEDS.items()}
    items = []
    for pass_name, table in config or []:
        layers = {k: v["config"] for k, v in table.items() if isinstance(v, dict) and isinstance(v.get("config"), dict)}
        for key, cfg in layers.items():
            if cfg.get("name") is None or cfg.get("bypass"):
                continue
            if pass_name == "quantize":
                # By type, a table reaches only the parts its layer has (a ReLU quantizes its input only).
                parts = needs.get(key.replace("_", ""), ()) if table.get("by") == "type" else ()
                fmts = []
                for part, letter in PARTS:
                    w = cfg.get(f"{part}_width")
                    if w is not None and (not parts or part in parts):
                        fmts.append(f"{letter}{w}.{fixed(w, cfg.get(f'{part}_frac_width')).frac}")  # "NA" resolved
                items.append(" ".join([key, *fmts]))
            elif pass_name == "channel_multiply":
                m = cfg.get("channel_multiplier")
                widths = {"output_only": [("out", m)], "input_only": [("in", m)],
                          "both": [("in", cfg.get("channel_multiplier_input") or m),
                                   ("out", cfg.get("channel_multiplier_output") or m)]}.get(cfg["name"], [])
                if widths:  # "inplace": the layer has no width of its own
                    items.append(" ".join([key, *(f"{side}×{k}" for side, k in widths)]))
            else:
                items.append(f"{key} ({pass_name})")
    return items


def _pack(items: list[str], width: int, sep: str = "; ") -> list[str]:
    """Items on as few lines of at most ``width`` characters as fit; only an item longer than a line is split."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
            continue
        if lines:
            lines[-1] += sep.rstrip()
        lines += [item[i:i + width] for i in range(0, len(item), width)]
    return lines or ["unchanged"]


def _align(cells: list[str]) -> list[str]:
    """One column's figures with their decimal points lined up (an integer ends where the points are)."""
    tail = [len(c) - c.index(".") if "." in c else 0 for c in cells]
    return [c + " " * (max(tail) - t) for c, t in zip(cells, tail)]


def _grid(headers: list[str], rows: list[list[str]], width: int, designs: list[list[str]] | None = None):
    """A plain table of at most ``width`` columns: right-aligned figures, then each row's design; and
    whether the designs went beside the figures.

    The design goes in a last column when every one fits there in two lines, otherwise on the
    lines under its row (indented past the first column). Cells are plain text, never markup: a
    regex key such as ``seq_blocks_[0-2]`` prints as it is.
    """
    from rich.text import Text

    heads = [h.split("\n") for h in headers]
    depth = max(len(h) for h in heads)
    heads = [[""] * (depth - len(h)) + h for h in heads]  # units on the last header line, names above
    rows = [list(r) for r in zip(*(_align(list(col)) for col in zip(*rows)))] if rows else rows
    widths = [max(len(x) for x in [*h, *(r[i] for r in rows)]) for i, h in enumerate(heads)]
    gap = 3 if sum(widths) + 3 * len(widths) <= width else 2
    pad = " " * gap
    room = width - sum(widths) - gap * len(widths)  # what a design column beside the figures would get
    beside = designs is not None and room >= 20 and all(len(_pack(d, room)) <= 2 for d in designs)
    indent = widths[0] + gap
    packed = [_pack(d, room if beside else width - indent) for d in designs or []]

    def line(cells: list[str], design: str = "") -> str:
        return pad.join([*(c.rjust(w) for c, w in zip(cells, widths)), *([design] if beside else [])]).rstrip()

    head = [line(h, "design" if i == depth - 1 else "") for i, h in enumerate(zip(*heads))]
    body = []
    for i, r in enumerate(rows):
        design = packed[i] if packed else []
        if beside:
            body += [line(r, design[0]), *(line([""] * len(r), x) for x in design[1:])]
        else:
            body += [line(r), *(" " * indent + x for x in design)]
    rule = "─" * max(len(x) for x in head + body)
    return [*(Text(x, style="bold") for x in head), Text(rule), *map(Text, body)], beside


@dataclass(frozen=True)
class Rows:
    """The rows each accuracy is a fraction of, for its 95% interval (None: not a count of rows, as a macro
    average; or not known), and what would give the validation figures more rows."""

    val: int | None = None
    test: int | None = None
    macro: bool = False  # the validation accuracy is a mean over classes: no count, no interval
    remedy: str = ""  # e.g. "set val_size = 0.25 (360 rows) and train the model with it too"


def _with_interval(accuracy: float | None, n: int | None) -> str:
    """``0.9722 (0.939–0.991)``: the accuracy and its 95% Wilson interval; the plain figure without a count."""
    ci = accuracy_interval(accuracy, n)
    return _cell(accuracy) if ci is None else f"{accuracy:.4f} ({ci[0]:.3f}–{ci[1]:.3f})"


def crowded_note(best: list[optuna.trial.FrozenTrial], rows: Rows) -> str | None:
    """One line when the validation split is too small to tell a front's designs apart (``stats.crowded``:
    two or more designs within a neighbour's 95% interval); None otherwise, and for a single objective."""
    accuracies = [_raw(t).get("accuracy") for t in best]
    if len(best) < 2 or len(best[0].values) < 2 or not rows.val or any(a is None for a in accuracies):
        return None
    tied = crowded(accuracies, rows.val)
    if tied < 2:
        return None
    fix = f"; to tell them apart, {rows.remedy}" if rows.remedy else ""
    return (f"note: validation accuracy counts {rows.val:,} rows (one row = {100 / rows.val:.2f} points): {tied} of "
            f"{len(best)} front designs are within a neighbour's 95% interval{fix}; see docs/search.md, \"Choosing "
            "on validation\"")


def _raw(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {**(t.user_attrs.get("software_metrics") or {}), **(t.user_attrs.get("hardware_metrics") or {})}


def _objective_names(t: optuna.trial.FrozenTrial) -> list[str]:
    return list((t.user_attrs.get("scaled_metrics") or {}).keys())


def print_best(best: list[optuna.trial.FrozenTrial], tests: dict[int, dict[str, float]], console,
               rows: Rows = Rows()) -> None:
    """One row per chosen design: its objective metrics (an accuracy with its 95% interval where ``rows``
    says how many rows it counts), then what its passes set per layer; a note when the validation split
    cannot tell the front's designs apart."""
    width = min(console.width, TABLE_WIDTH)

    def say(text) -> None:
        console.print(text, highlight=False, markup=False, width=width, soft_wrap=False)

    if not best:
        say("Best trial(s): none")
        return
    names = _objective_names(best[0])

    def cell(t, name: str) -> str:
        return _with_interval(_raw(t).get(name), rows.val) if name == "accuracy" else _cell(_raw(t).get(name))

    # One objective that is not a metric as measured (a weighted sum, a scaled metric) gets a column too.
    summed = len(best[0].values) == 1 and (len(names) != 1 or best[0].values[0] != _raw(best[0]).get(names[0]))
    ordered = sorted(best, key=lambda t: tuple(t.values))  # in order along the front
    headers = ["trial", *(_header(n) for n in names)]
    if summed:
        headers.append(_header("weighted sum") if len(names) > 1 else "objective")
    cells = [[str(t.number), *(cell(t, n) for n in names), *([_cell(t.values[0])] if summed else [])]
             for t in ordered]
    lines, beside = _grid(headers, cells, width, [design_items(t.user_attrs.get("config")) for t in ordered])
    what = (f"the Pareto front, {len(best)} design{'s' * (len(best) != 1)}" if len(best[0].values) > 1
            else "the best feasible design")
    say(f"Best trial(s): {what}")
    for line in lines:
        say(line)
    used = {p for t in ordered for p, _ in (t.user_attrs.get("config") or [])}
    notes = [] if beside else ["under each row: its design, per layer table"]
    if {"accuracy", "loss"} & set(names):
        notes.append("accuracy, loss: on the validation split" + (f" ({rows.val:,} rows)" if rows.val else ""))
    repeats = sorted({len(t.user_attrs["repeats"]) for t in ordered if "repeats" in t.user_attrs})
    if repeats:  # learned widths with repeats: the metrics are means over seeds, the design is one of them
        notes.append(f"metrics: means over {'/'.join(map(str, repeats))} seeds (repeats); the design shown, kept "
                     "and tested is the first seed's")
    if "accuracy" in names and rows.val:
        notes.append("(a–b): the accuracy's 95% interval (Wilson score)")
    elif "accuracy" in names and rows.macro:
        notes.append("accuracy: a mean over classes (macro), so no interval: it is not a count of rows")
    if "quantize" in used:
        notes.append("w/a/b: weight/layer-input/bias format as width.frac (bits, of which fractional)")
    if "channel_multiply" in used:
        notes.append("out×k, in×k: the layer's output, input channels multiplied by k")
    notes.append("every metric of these trials: best.json; of every trial: trials.csv")
    say("\n".join(notes))
    if tests:
        shown = f", {rows.test:,} rows" if rows.test else ""
        say(f"Test split{shown} (re-evaluated; validation figures above chose the designs):")
        numbers = [t.number for t in ordered if t.number in tests]
        test_lines, _ = _grid(["trial", "accuracy", "loss"],
                              [[str(n), _test_accuracy(tests[n]["accuracy"], rows.test), f"{tests[n]['loss']:.4f}"]
                               for n in numbers], width)
        for line in test_lines:
            say(line)
    note = crowded_note(best, rows) if "accuracy" in names else None
    if note:
        say(note)


def _test_accuracy(accuracy: float, n: int | None) -> str:
    return _with_interval(accuracy, n) if n else f"{accuracy:.4f}"
