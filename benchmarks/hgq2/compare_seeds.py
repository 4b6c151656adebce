"""bitsmith against HGQ2 in expectation: each setting's mean over seeds, not its luckiest run.

    python benchmarks/hgq2/compare_seeds.py --bitsmith SEEDS.json [--hgq2 results.json,results_seeds.json]
        [--out benchmarks/hgq2]

``SEEDS.json`` is what ``benchmarks/learned_seeds.py --json`` writes for a study's validation front: each
point trained again with several seeds. The study's own seed is left out (its run is the one the front was
chosen on, so it is biased upward); the other seeds are fresh draws. HGQ2's rows are its beta sweep; runs of
the same beta and seed that appear in several files are one run. A setting's accuracy and cost are the means
over its seeds; for each threshold the table gives the cheapest setting whose mean test accuracy reaches it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from compare_fronts import by_threshold  # beside this script

HERE = Path(__file__).resolve().parent
THRESHOLDS = (0.94, 0.95, 0.96, 0.97)


def settings(runs: list[tuple[str, float, float]]) -> list[dict]:
    """(setting, cost, test) runs -> one row per setting: means, ranges and the number of seeds."""
    by = defaultdict(list)
    for name, cost, test in runs:
        by[name].append((cost, test))
    return [{"name": n, "seeds": len(v), "cost": statistics.fmean(c for c, _ in v),
             "test": statistics.fmean(t for _, t in v), "test_min": min(t for _, t in v),
             "test_max": max(t for _, t in v), "cost_min": min(c for c, _ in v), "cost_max": max(c for c, _ in v)}
            for n, v in by.items()]


def cell(row: dict | None, width: int) -> str:
    return f"{row['cost']:>{width},.0f}" if row else f"{'none':>{width}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bitsmith", type=Path, required=True)
    ap.add_argument("--hgq2", default=f"{HERE / 'results.json'},{HERE / 'results_seeds.json'}")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args()
    seen, h_runs = set(), []
    for path in a.hgq2.split(","):
        for r in json.loads(Path(path).read_text())["runs"]:
            key = (r["beta"], r["seed"], r["epochs"])
            if key not in seen:
                seen.add(key)
                h_runs.append((f"beta {r['beta']:g}", r["cost"], r["test_acc"]))
    b = json.loads(a.bitsmith.read_text())
    own = b.get("study_seed", 0)
    b_runs = [(f"trial {r['trial']}", r["luts"], r["test"]) for r in b["rows"]
              if not r.get("collapsed") and r["seed"] != own]
    collapsed = sum(1 for r in b["rows"] if r.get("collapsed") and r["seed"] != own)
    h_rows, b_rows = settings(h_runs), settings(b_runs)
    print(f"HGQ2: {len(h_runs)} runs, {len(h_rows)} betas; bitsmith: {len(b_runs)} runs of {len(b_rows)} front "
          f"points (seed {own}, the study's, left out; {collapsed} collapsed)\n")
    print(f"{'setting':<13} {'seeds':>5} {'LUTs, mean':>10} {'test, mean':>10} {'test, min-max':>15}")
    for rows in (h_rows, b_rows):
        for r in sorted(rows, key=lambda r: r["cost"]):
            print(f"{r['name']:<13} {r['seeds']:>5} {r['cost']:>10,.0f} {r['test']:>10.4f} "
                  f"{r['test_min']:>7.4f}-{r['test_max']:.4f}")
        print()
    print(f"{'mean test >=':>12}  {'HGQ2':>7} {'setting':<12}  {'bitsmith':>8} {'setting':<10}  {'ratio':>5}")
    table = by_threshold(h_rows, b_rows, THRESHOLDS)
    for row in table:
        t, h, m, ratio = row["threshold"], row["hgq2"], row["bitsmith"], row["ratio"]
        print(f"{t:>12.2f}  {cell(h, 7)} {h['name'] if h else '-':<12}  {cell(m, 8)} {m['name'] if m else '-':<10}  "
              f"{format(ratio, '.2f') if ratio else '-':>5}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for rows, label, style in ((h_rows, "HGQ2, per beta", {"marker": "s", "color": "tab:orange"}),
                               (b_rows, "bitsmith, per validation-front point", {"marker": "o", "color": "tab:blue"})):
        rows = sorted(rows, key=lambda r: r["cost"])
        ax.errorbar([r["cost"] for r in rows], [r["test"] for r in rows],
                    yerr=[[r["test"] - r["test_min"] for r in rows], [r["test_max"] - r["test"] for r in rows]],
                    xerr=[[r["cost"] - r["cost_min"] for r in rows], [r["cost_max"] - r["cost"] for r in rows]],
                    linestyle="none", capsize=2, alpha=0.85, label=label, **style)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("LUTs, mean over seeds (bars: min to max)")
    ax.set_ylabel("test accuracy, mean over seeds (bars: min to max)")
    ax.set_ylim(0.85, 1.0)
    ax.set_title("digits MLP, same split: each setting over seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    a.out.mkdir(parents=True, exist_ok=True)
    png = a.out / "fronts_seeds.png"
    fig.savefig(png, dpi=120)
    (a.out / "fronts_seeds.json").write_text(json.dumps(
        {"bitsmith_seeds": str(a.bitsmith), "hgq2": a.hgq2.split(","), "left_out_seed": own, "thresholds": table,
         "bitsmith": b_rows, "hgq2_rows": h_rows}, indent=1))
    print(f"\nwritten: {png}, {a.out / 'fronts_seeds.json'}")


if __name__ == "__main__":
    main()
