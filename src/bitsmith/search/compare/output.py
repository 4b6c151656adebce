"""What `bitsmith compare` shows and writes: the table, curves.csv, summary.json and the plot."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from bitsmith.files import write_atomic
from bitsmith.search.compare.measure import at_least
from bitsmith.search.fronts import report_lines


def json_safe(value):
    """Strict JSON: 'not reached' (inf) and 'no value' (nan) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _fmt(x: float, n_trials: int) -> str:
    if math.isinf(x):
        return f">{n_trials}"
    if math.isnan(x):
        return "-"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.4g}"


def print_table(console, summary, kind, n_trials, seeds, optimum_text, truth, tolerance, noun="sampler") -> None:
    """``noun``: what a row is, a sampler or a strategy (a config's space and sampler)."""
    from rich.table import Table as Rich

    ref = "ground truth" if truth else "best any run found"
    rows = {"sampler": "Samplers", "strategy": "Strategies"}[noun]
    title = (f"{rows} over {seeds} seed(s), {n_trials} trials each; optimum ({ref}): {optimum_text}; "
             f"tolerance {tolerance:g}.\nMedians over seeds; 'to optimum': trials until the first design at it "
             "(>N: not within the budget); 'designs': distinct points evaluated")
    t = Rich(title=title, title_justify="left")
    cols = [noun, "trials", "designs [range]", ("best" if kind == "best" else "HV ratio") + " [IQR]",
            "to optimum [range]", "reached", "to tolerance [range]", "reached tol."]
    if kind != "best":
        cols.append("front found")
    for c in cols:
        t.add_column(c, no_wrap=True)
    for n, s in summary.items():
        f = lambda d: _fmt(d["median"], n_trials)  # noqa: E731
        rng = lambda d: f"{f(d)} [{_fmt(d['min'], n_trials)}, {_fmt(d['max'], n_trials)}]"  # noqa: E731
        row = [n, f"{f(s['trials'])}", rng(s["distinct"]),
               f"{s['final']['median']:.4g} [{s['final']['q1']:.4g}, {s['final']['q3']:.4g}]",
               rng(s["to_optimum"]), f"{s['reached']:.0%}", rng(s["to_tolerance"]), f"{s['reached_tolerance']:.0%}"]
        if kind != "best":
            row.append(f"{s['front_share']['median']:.0%} [{s['front_share']['min']:.0%}, "
                       f"{s['front_share']['max']:.0%}]")
        t.add_row(*row)
    console.print(t)


def print_fronts(console, fronts, truth: bool, names: list[str]) -> None:
    """Where the fronts under luts and under bops differ (bitsmith.search.fronts), within 80 columns; a design
    is its parameters' values, in the order of ``names``."""
    import textwrap

    where = ("designs: every point of the space" if truth else
             "designs: every point the runs above evaluated (not the true fronts)")
    legend = textwrap.wrap("a design is the values of " + ", ".join(names) + f"; {where}", 78,
                           initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    console.print("\n".join(report_lines(fronts) + legend), markup=False, highlight=False, soft_wrap=True)


def write_curves(curves, path: Path) -> None:
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["sampler", "seed", "trial", "value", "distinct_designs"])
    for n, (v, d) in curves.items():
        for s in range(v.shape[0]):
            for i in range(v.shape[1]):
                w.writerow([n, s, i + 1, "" if np.isnan(v[s, i]) else repr(float(v[s, i])), int(d[s, i])])
    write_atomic(path, text.getvalue(), "table")


STYLES = ["-", (0, (6, 2)), (0, (2, 1.5)), (0, (6, 2, 1.5, 2)), (0, (1, 1))]
ZERO_GAP = 1e-12  # a hypervolume ratio this close to 1 is the whole front (float rounding)


def _bands(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and interquartile range over seeds (rows), per trial."""
    import warnings

    with warnings.catch_warnings():  # all-NaN columns: no feasible design yet in any seed
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(v, axis=0), np.nanquantile(v, 0.25, axis=0), np.nanquantile(v, 0.75, axis=0)


def gap_floor(gaps: list[np.ndarray], tolerance: float) -> float:
    """Where a gap of 0 is drawn on the log axis: half a decade below the decade of the smallest positive
    gap (or of the tolerance), so it sits apart from every real value."""
    positive = [float(np.nanmin(g[g > ZERO_GAP])) for g in gaps if np.any(g > ZERO_GAP)]
    if tolerance > 0:
        positive.append(tolerance)
    return 10.0 ** (math.floor(math.log10(min(positive, default=0.01))) - 0.5)


def plot(curves, summary, n_trials, at_opt, at_tol, label, kind, truth, tolerance, sign, path: Path,
         noun: str = "sampler") -> None:
    """Left: the median curve per sampler with its interquartile band (one objective: best so far; several:
    the gap to the true front, 1 - hypervolume ratio, on a log axis). Right: share of seeds at the optimum."""
    from matplotlib.figure import Figure  # no pyplot: no global state

    fig = Figure(figsize=(11, 4.3))
    left, right = fig.subplots(1, 2)
    x = np.arange(1, n_trials + 1)
    hv = kind != "best"
    # Several objectives: the gap 1 - ratio, so that samplers close to the front (ratios 0.99 and 0.999)
    # are a decade apart instead of overlapping near 1.
    bands = {n: _bands(1.0 - curves[n][0] if hv else curves[n][0]) for n in summary}
    floor = gap_floor([m for m, _, _ in bands.values()], tolerance) if hv else None  # bands below it: clipped
    worst = []
    for i, n in enumerate(summary):
        med, lo, hi = bands[n]
        if hv:
            med, lo, hi = (np.where(b > ZERO_GAP, b, floor) for b in (med, lo, hi))
        # Samplers can coincide (NSGA-II's first generation is random sampling): styles keep each visible.
        style = dict(color=f"C{i}", lw=max(3.2 - 0.6 * i, 1.2), ls=STYLES[i % len(STYLES)])
        left.step(x, med, where="post", label=n, **style)
        left.fill_between(x, lo, hi, step="post", color=f"C{i}", alpha=0.2)
        # The y range starts from where the medians are after the first tenth of the budget,
        # so the early, poor trials do not squash the part where samplers differ.
        tail = med[max(n_trials // 10, 1) - 1:]
        if np.any(~np.isnan(tail)):
            worst.append(np.nanmin(sign * tail))
        s = summary[n]
        right.step(x, 100 * np.mean(at_least(curves[n][0], at_opt, sign), axis=0), where="post", **style,
                   label=f"{n}: {s['reached']:.0%} of seeds, median {_fmt(s['to_optimum']['median'], n_trials)} trials")
    front = "the true front" if truth else "the best front any run found"
    if hv:
        left.set_yscale("log")
        whole = "the whole true front found" if truth else "the whole best front reached"
        left.axhline(floor, color="k", ls="--", lw=1, label=f"gap 0: {whole}")
        if tolerance > 0:
            left.axhline(tolerance, color="k", ls=":", lw=1, label=f"within tolerance {tolerance:g}")
        left.set_ylim(floor / 1.8, 1.6)
        left.set_ylabel(f"gap to {front}: 1 - hypervolume ratio")
    else:
        left.axhline(at_opt, color="k", ls="--", lw=1, label="optimum (ground truth)" if truth else "best any run found")
        if tolerance > 0:
            left.axhline(at_tol, color="k", ls=":", lw=1, label=f"within tolerance {tolerance:g}")
        if worst:
            low = min(min(worst), sign * at_tol)
            span = (sign * at_opt - low) or 1.0
            lims = sorted((sign * (low - 0.1 * span), sign * (sign * at_opt + 0.05 * span)))
            left.set_ylim(*lims)
        left.set_ylabel(f"best so far: {label}")
    left.set_xlabel("trial")
    left.set_title("median over seeds; band: interquartile range", fontsize=10)
    # Where the curves are not: gaps fall from the top left, best-so-far curves rise from the bottom left.
    left.legend(loc="lower left" if hv else "upper right" if sign < 0 else "lower right", fontsize=8)
    right.set_xlabel("trial")
    right.set_ylabel("% of seeds at the optimum" if kind == "best" else "% of seeds with the whole front")
    right.set_ylim(-3, 103)
    right.set_title("share of seeds that reached " + ("the optimum" if kind == "best" else "the whole front"),
                    fontsize=10)
    right.legend(loc="upper left", fontsize=8)
    if hv:
        title = f"{noun} comparison: hypervolume gap to the front (lower is better; log scale)"
    else:
        title = f"{noun} comparison: best so far ({'higher' if sign > 0 else 'lower'} is better)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
