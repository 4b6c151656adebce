"""Where two cost metrics disagree: the Pareto fronts of (accuracy, luts) and of (accuracy, bops) over the same
designs.

BOPs count bits (weight width x input width x MACs); LUTs count the adders of the exact integer network, which
depend on the weights' values (zeros and repeated digits are free). A search that minimises BOPs can keep
designs that cost many more LUTs than another of the same accuracy. ``compare_fronts`` says which designs are
on one front only and by how much, how far the two metrics rank the designs alike (Spearman), and which pairs
have near-equal BOPs but very different LUTs. Pure: plain rows in, plain values out (no I/O, no Optuna).

    python -m bitsmith.search.fronts .../trials.json   # a search's trials, as `bitsmith search` writes them
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

NEAR = 0.05  # "near-equal" cost: within 5% of the larger of the two
PAIRS = 3  # near-equal pairs reported, the most different first
SHOWN = 8  # rows of each one-front-only table printed (the JSON has all)


@dataclass(frozen=True)
class Design:
    """One design: an id (a trial number, a point), a short label for tables, its accuracy and its costs."""

    id: str
    label: str
    accuracy: float
    costs: dict[str, float]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _design(key: str, label: str, metrics: dict[str, Any], accuracy: str, costs: tuple[str, ...]) -> Design | None:
    acc = _number(metrics.get(accuracy))
    values = {m: _number(metrics.get(m)) for m in costs}
    if acc is None or any(v is None for v in values.values()):
        return None
    return Design(key, label, acc, values)


def designs_from_trials(rows: Iterable[dict[str, Any]], accuracy: str = "accuracy",
                        costs: tuple[str, ...] = ("luts", "bops")) -> list[Design]:
    """Designs of a search's ``trials.json`` rows: complete, feasible trials that recorded every metric; a
    point tried again (a sampler's repeat) counts once, as its first trial (``#number``)."""
    out, seen = [], set()
    for r in rows:
        if r.get("state") != "COMPLETE" or r.get("feasible") is False:
            continue
        point = json.dumps(r.get("params") or {}, sort_keys=True, default=str)
        if point in seen:
            continue
        metrics = {**(r.get("software_metrics") or {}), **(r.get("hardware_metrics") or {})}
        d = _design(str(r.get("number")), f"#{r.get('number')}", metrics, accuracy, costs)
        if d is not None:
            seen.add(point)
            out.append(d)
    return out


def point_label(point: str) -> str:
    """A compare table's point (JSON of its parameters) as its values in name order: ``4.8.3.8.6.5.8.8``."""
    try:
        chosen = json.loads(point)
    except ValueError:
        return point[:16]
    if not isinstance(chosen, dict):
        return point[:16]
    return ".".join("NA" if chosen[k] is None else str(chosen[k]) for k in sorted(chosen))


def designs_from_points(rows: dict[str, dict[str, Any]], accuracy: str = "accuracy",
                        costs: tuple[str, ...] = ("luts", "bops")) -> list[Design]:
    """Designs of `bitsmith compare`'s table (point -> row): feasible points that recorded every metric."""
    out = []
    for point, row in rows.items():
        if row.get("values") is None or any(v > 0 for v in row.get("violations") or []):
            continue
        d = _design(point, point_label(point), row.get("metrics") or {}, accuracy, costs)
        if d is not None:
            out.append(d)
    return out


def front(designs: list[Design], cost: str) -> list[Design]:
    """The designs no other beats on (accuracy up, ``cost`` down): none has at least their accuracy at no more
    cost, better in one. Designs with equal figures are all kept. Ordered by accuracy, best first."""
    order = sorted(designs, key=lambda d: (-d.accuracy, d.costs[cost]))
    out: list[Design] = []
    best_above = math.inf  # the least cost among strictly more accurate designs
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and order[j].accuracy == order[i].accuracy:
            j += 1
        least = order[i].costs[cost]  # the group's least cost (sorted)
        if least < best_above:
            out += [d for d in order[i:j] if d.costs[cost] == least]
            best_above = least
        i = j
    return out


def _ranks(xs: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=lambda k: xs[k])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties: average ranks); nan with fewer than 3 values or a constant one."""
    if len(xs) != len(ys):
        raise ValueError("spearman: xs and ys differ in length")
    if len(xs) < 3:
        return math.nan
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def _cheapest(on: list[Design], accuracy: float, cost: str) -> Design:
    """The front design of at least ``accuracy`` with the least ``cost`` (there is one: the design at
    ``accuracy`` is on it or beaten by one)."""
    return min((d for d in on if d.accuracy >= accuracy), key=lambda d: (d.costs[cost], -d.accuracy))


def _one_front_only(only: list[Design], other: list[Design], cost: str) -> list[dict[str, Any]]:
    """Each design on the other metric's front only, against the cheapest design (in ``cost``) of at least
    its accuracy on ``cost``'s front: how much more ``cost`` it needs."""
    rows = []
    for d in only:
        ref = _cheapest(other, d.accuracy, cost)
        extra = d.costs[cost] - ref.costs[cost]
        rows.append({"id": d.id, "label": d.label, "accuracy": d.accuracy, **d.costs, "vs": ref.id,
                     "vs_label": ref.label, "vs_accuracy": ref.accuracy, "vs_" + cost: ref.costs[cost],
                     "extra": extra, "extra_share": extra / ref.costs[cost] if ref.costs[cost] > 0 else
                     (0.0 if extra == 0 else math.inf)})
    return sorted(rows, key=lambda r: -r["accuracy"])


def near_pairs(designs: list[Design], a: str, b: str, near: float = NEAR, top: int = PAIRS) -> list[dict[str, Any]]:
    """Pairs whose ``b`` (>= 0) is within ``near`` of the larger one, the most different in ``a`` first (ratio of
    the larger ``a`` to the smaller; ties by their difference); no design in two pairs. Each design is paired
    with the designs of the largest and the smallest ``a`` within its reach (so the first pair is the most
    different of all; the next ones are picked greedily), which keeps large tables fast."""
    order = sorted(designs, key=lambda d: d.costs[b])
    bs, av = [d.costs[b] for d in order], [d.costs[a] for d in order]
    found: dict[tuple[str, str], tuple] = {}
    for i, x in enumerate(order):
        end = bisect.bisect_right(bs, bs[i] / (1 - near)) if near < 1 else len(order)
        window = av[i + 1:end]
        if not window:
            continue
        for k in {i + 1 + window.index(max(window)), i + 1 + window.index(min(window))}:
            lo, hi = sorted((x, order[k]), key=lambda d: d.costs[a])
            if hi.costs[a] == lo.costs[a]:
                continue
            ratio = hi.costs[a] / lo.costs[a] if lo.costs[a] > 0 else math.inf
            found[lo.id, hi.id] = (ratio, hi.costs[a] - lo.costs[a], lo, hi)
    out, used = [], set()
    for ratio, _, lo, hi in sorted(found.values(), key=lambda f: (-f[0], -f[1], f[2].id, f[3].id)):
        if len(out) == top:
            break
        if lo.id in used or hi.id in used:
            continue
        used |= {lo.id, hi.id}
        out.append({"low": lo.id, "low_label": lo.label, "high": hi.id, "high_label": hi.label,
                    "low_accuracy": lo.accuracy, "high_accuracy": hi.accuracy,
                    "low_" + a: lo.costs[a], "high_" + a: hi.costs[a], "low_" + b: lo.costs[b],
                    "high_" + b: hi.costs[b], "ratio": ratio})
    return out


def compare_fronts(designs: list[Design], a: str = "luts", b: str = "bops", near: float = NEAR,
                   top: int = PAIRS) -> dict[str, Any]:
    """The fronts of (accuracy max, ``a`` min) and (accuracy max, ``b`` min) over the same ``designs``, and
    where they differ (JSON-ready; ids as the designs have them)."""
    fa, fb = front(designs, a), front(designs, b)
    ia, ib = {d.id for d in fa}, {d.id for d in fb}
    return {
        "metrics": {"accuracy": "max", a: "min", b: "min"},
        "designs": len(designs),
        "front": {a: [d.id for d in fa], b: [d.id for d in fb]},
        "labels": {d.id: d.label for d in fa + fb},
        "both": [d.id for d in fa if d.id in ib],
        # on b's front only: what it costs in a, against a's front; and the other way round
        "only": {b: _one_front_only([d for d in fb if d.id not in ia], fa, a),
                 a: _one_front_only([d for d in fa if d.id not in ib], fb, b)},
        "spearman": spearman([d.costs[a] for d in designs], [d.costs[b] for d in designs]),
        "near": near,
        "near_pairs": near_pairs(designs, a, b, near, top),
    }


def _n(v: float) -> str:
    """A cost in at most 9 characters: ``12,345``, ``0.5``, ``12.3M``, ``4.56G``."""
    if not math.isfinite(v):
        return "inf"
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e7, "M")):
        if abs(v) >= scale:
            return f"{v / (1e6 if unit == 'M' else scale):#.4g}{unit}"
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def _pct(v: float) -> str:
    if not math.isfinite(v):
        return "inf"
    return f"{v * 100:+.1f}%" if abs(v) < 0.1 else f"{v * 100:+.0f}%"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "~"


def report_lines(result: dict[str, Any], shown: int = SHOWN) -> list[str]:
    """``compare_fronts``'s result as plain lines of at most 80 characters."""
    a, b = [m for m in result["metrics"] if m != "accuracy"]
    fa, fb = result["front"][a], result["front"][b]
    lines = [f"Pareto fronts, accuracy vs {a} and vs {b}, over the same {result['designs']} designs:",
             f"  {a} front: {len(fa)} designs; {b} front: {len(fb)}; on both: {len(result['both'])}",
             f"  Spearman rank correlation of {a} and {b}: {result['spearman']:.3f}"]
    for cost, other in ((a, b), (b, a)):
        rows = result["only"][other]
        if not rows:
            lines.append(f"  every design on the {other} front is on the {cost} front")
            continue
        lines.append(f"  On the {other} front only ({len(rows)}), against the {cost} front's cheapest design")
        lines.append(f"  of at least the same accuracy (extra: how much more {cost}):")
        lines.append(f"  {'design':<16}{'acc.':>7}{cost:>11}  {'vs':<16}{'acc.':>7}{cost:>11}{'extra':>7}")
        for r in rows[:shown]:
            lines.append(f"  {_cut(r['label'], 15):<16}{r['accuracy']:>7.4f}{_n(r[cost]):>11}  "
                         f"{_cut(r['vs_label'], 15):<16}{r['vs_accuracy']:>7.4f}{_n(r['vs_' + cost]):>11}"
                         f"{_pct(r['extra_share']):>7}")
        if len(rows) > shown:
            lines.append(f"  ... {len(rows) - shown} more (all in the JSON)")
    pairs = result["near_pairs"]
    if pairs:
        lines.append(f"  Near-equal {b} (within {result['near']:.0%}), the most different {a}:")
        lines.append(f"  {'pair':<5}{'design':<16}{'acc.':>7}{b:>11}{a:>11}{'ratio':>8}")
        for n, p in enumerate(pairs, 1):
            ratio = f"x{p['ratio']:.2f}" if math.isfinite(p["ratio"]) else "inf"
            for end, first in (("low", True), ("high", False)):
                lines.append(f"  {str(n) if first else '':<5}{_cut(p[end + '_label'], 15):<16}"
                             f"{p[end + '_accuracy']:>7.4f}{_n(p[end + '_' + b]):>11}{_n(p[end + '_' + a]):>11}"
                             f"{'' if first else ratio:>8}")
    return [_cut(line.rstrip(), 80) for line in lines]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bitsmith.search.fronts", description=__doc__.splitlines()[0])
    ap.add_argument("trials", help="a search's trials.json")
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = ap.parse_args(argv)
    with open(args.trials, encoding="utf-8") as f:
        designs = designs_from_trials(json.load(f))
    if not designs:
        print("no complete, feasible trial records accuracy, luts and bops")
        return 1
    result = compare_fronts(designs)
    print(json.dumps(result, indent=1) if args.json else "\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
