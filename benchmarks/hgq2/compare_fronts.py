"""bitsmith's learned-width study against HGQ2's runs on the same digits split: a table and one plot.

    python benchmarks/hgq2/compare_fronts.py STUDY_DIR [--out benchmarks/hgq2]

``STUDY_DIR`` is a finished ``bitsmith search --config configs/search_digits_learned.toml`` study folder
(its ``best.json``: the designs on the validation front, each re-evaluated on the test split). HGQ2's rows
come from ``results.json`` beside this script. For each test-accuracy threshold the table gives the
smallest cost of each tool's designs that reach it, and their ratio. Both costs are da4ml's, of the exact
integer network. Selection differs, in HGQ2's favour: bitsmith's designs were chosen on validation,
HGQ2's thresholds are read on test over all its runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
THRESHOLDS = (0.95, 0.96, 0.97)


def wilson(acc: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``n`` rows (bitsmith's own)."""
    from bitsmith.stats import accuracy_interval

    return accuracy_interval(acc, n) or (0.0, 1.0)


def own(t: dict) -> dict:
    """A trial's design's own metrics: with ``repeats`` its values are means over seeds, and the design kept
    (and tested) is the first seed's."""
    return t["repeats"][0] if t.get("repeats") else {**t["software_metrics"], **t["hardware_metrics"]}


def smallest(rows, t: float):
    ok = [r for r in rows if r["test"] >= t - 1e-12]
    return min(ok, key=lambda r: r["cost"]) if ok else None


def by_threshold(h_rows: list[dict], b_rows: list[dict], thresholds=THRESHOLDS) -> list[dict]:
    """Per threshold, each tool's cheapest row whose test accuracy reaches it, and bitsmith's cost over HGQ2's."""
    out = []
    for t in thresholds:
        h, b = smallest(h_rows, t), smallest(b_rows, t)
        out.append({"threshold": t, "hgq2": h, "bitsmith": b, "ratio": b["cost"] / h["cost"] if h and b else None})
    return out


def all_on_test(study: Path) -> list[dict]:
    """Every design the study kept (``designs/trial_N.ckpt``), scored on the test split."""
    import torch

    from bitsmith.checkpoint import load_checkpoint
    from bitsmith.data import get_dataset
    from bitsmith.graph import trace
    from bitsmith.models import build_model
    from bitsmith.passes import apply_passes, parse_pass
    from bitsmith.train import evaluate

    data = get_dataset("digits")
    trials = {t["number"]: t for t in json.loads((study / "trials.json").read_text())}
    rows = []
    for path in sorted((study / "designs").glob("trial_*.ckpt")):
        number = int(path.stem.split("_")[1])
        t = trials.get(number)
        if t is None or t["state"] != "COMPLETE":
            continue
        state, meta = load_checkpoint(path)
        base = trace(build_model("digits-mlp", data.in_shape, data.n_classes).eval(), data.in_shape)
        graph, _ = apply_passes(base, [(n, parse_pass(n, c)) for n, c in meta["passes"]])
        graph.gm.load_state_dict(state)
        with torch.no_grad():
            acc = evaluate(graph.gm, data.test)["accuracy"]
        rows.append({"name": f"trial {number}", "cost": own(t)["luts"], "test": acc, "val": own(t)["accuracy"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--all-on-test", action="store_true",
                    help="also every kept design of the study scored on test, thresholds read on test as for HGQ2")
    a = ap.parse_args()
    hgq = json.loads((HERE / "results.json").read_text())
    n_test = hgq["sizes"]["test"]
    h_rows = [{"name": f"beta {r['beta']:g} s{r['seed']}", "cost": r["cost"], "test": r["test_acc"],
               "val": r["val_acc"]} for r in hgq["runs"]]
    best = json.loads((a.study / "best.json").read_text())["best"]
    b_rows = [{"name": f"trial {b['number']}", "cost": own(b)["luts"],
               "test": b["test_metrics"]["accuracy"], "val": own(b)["accuracy"],
               "pruned": (b.get("learned") or {}).get("pruned_weights")} for b in best]
    print(f"bitsmith: {len(b_rows)} designs on the validation front of {a.study.name} (test accuracy re-measured)")
    print(f"HGQ2: {len(h_rows)} runs from {HERE / 'results.json'}; test split {n_test} rows\n")
    print(f"{'test acc >=':>11}  {'HGQ2 cost':>9}  {'run':<14}  {'bitsmith':>8}  {'design':<10}  {'ratio':>5}")
    table = by_threshold(h_rows, b_rows)
    for row in table:
        t, h, b, ratio = row["threshold"], row["hgq2"], row["bitsmith"], row["ratio"]
        print(f"{t:>11.2f}  {h['cost'] if h else float('nan'):>9,.0f}  {h['name'] if h else '-':<14}  "
              f"{b['cost'] if b else float('nan'):>8,.0f}  {b['name'] if b else '-':<10}  "
              f"{ratio if ratio else float('nan'):>5.2f}")
    every = all_on_test(a.study) if a.all_on_test else []
    if every:
        print(f"\nselected on test, as HGQ2's thresholds are: all {len(every)} kept designs of the study")
        for row in by_threshold(h_rows, every):
            t, h, b, ratio = row["threshold"], row["hgq2"], row["bitsmith"], row["ratio"] or float("nan")
            print(f"{t:>11.2f}  {h['cost'] if h else float('nan'):>9,.0f}  {h['name'] if h else '-':<14}  "
                  f"{b['cost'] if b else float('nan'):>8,.0f}  {b['name'] if b else '-':<10}  {ratio:>5.2f}")
            table.append({**row, "selected_on": "test"})
    print("\nbitsmith's front designs (chosen on validation), test accuracy with its 95% interval:")
    for r in sorted(b_rows, key=lambda r: r["cost"]):
        lo, hi = wilson(r["test"], n_test)
        pruned = f"  {r['pruned']:.0%} of weights pruned" if r.get("pruned") is not None else ""
        print(f"  {r['name']:<10} {r['cost']:>8,.0f} LUTs  val {r['val']:.4f}  test {r['test']:.4f} "
              f"({lo:.3f}-{hi:.3f}){pruned}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if every:
        ax.scatter([r["cost"] for r in every], [r["test"] for r in every], s=9, color="tab:blue", alpha=0.25,
                   label="bitsmith, every trial's design (on test)")
    for rows, label, style in ((h_rows, "HGQ2 runs (beta sweep, 2 seeds)", dict(marker="s", color="tab:orange")),
                               (b_rows, "bitsmith learned widths (validation front)",
                                dict(marker="o", color="tab:blue"))):
        rows = sorted(rows, key=lambda r: r["cost"])
        err = [[r["test"] - wilson(r["test"], n_test)[0] for r in rows],
               [wilson(r["test"], n_test)[1] - r["test"] for r in rows]]
        ax.errorbar([r["cost"] for r in rows], [r["test"] for r in rows], yerr=err, linestyle="none",
                    capsize=2, alpha=0.8, label=label, **style)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("LUTs (da4ml cost of the exact integer network)")
    ax.set_ylabel("test accuracy (95% Wilson interval)")
    ax.set_ylim(0.85, 1.0)  # the few designs below 0.85 are in fronts.json
    ax.set_title("digits 64-64-32-10 MLP, same split: bitsmith vs HGQ2")
    ax.legend(loc="lower right")
    fig.tight_layout()
    a.out.mkdir(parents=True, exist_ok=True)
    png = a.out / "fronts.png"
    fig.savefig(png, dpi=120)
    (a.out / "fronts.json").write_text(json.dumps({"study": str(a.study), "thresholds": table,
                                                   "bitsmith": b_rows, "hgq2": h_rows}, indent=1))
    print(f"\nwritten: {png}, {a.out / 'fronts.json'}")


if __name__ == "__main__":
    main()
