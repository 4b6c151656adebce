"""How much of a learned-width design is its seed: a finished study's points trained again with other seeds.

    python benchmarks/learned_seeds.py STUDY_DIR --config configs/search_digits_learned.toml --load CKPT
        [--trials 177,180] [--seeds 1,2,3,4] [--json OUT]

Each point (by default the study's validation front, from ``best.json``) is trained again with each seed,
under the study's own setup (``--config``), from the same loaded model; every design is scored as the
study scores it (the luts metric) and on the validation and test splits. A wide spread says a single
trial's test accuracy is partly a draw, so a threshold a point or two wide compares draws, not methods.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bitsmith.checkpoint import load_checkpoint, restore
from bitsmith.config import read_toml
from bitsmith.cost.network import network_cost
from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.learn import Collapsed, learn
from bitsmith.models import build_model
from bitsmith.search.learned import LearnedSpace, parse_learned
from bitsmith.train import evaluate


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--config", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--val-size", type=float, default=0.1)
    ap.add_argument("--trials", type=ints, help="trial numbers (default: the study's validation front)")
    ap.add_argument("--seeds", type=ints, default=[0, 1, 2, 3, 4, 5], help="the study's own seed included")
    ap.add_argument("--json", type=Path, help="write every design's row here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = read_toml(a.config)
    space = LearnedSpace(parse_learned(cfg["search"]["search_space"], a.config))
    data = get_dataset(cfg.get("dataset", "digits"), val_size=a.val_size)
    state, _ = load_checkpoint(a.load)
    name = cfg.get("model", "digits-mlp")
    base = trace(restore(build_model(name, data.in_shape, data.n_classes), state, a.load, name).eval(),
                 data.in_shape)
    trials = {t["number"]: t for t in json.loads((a.study / "trials.json").read_text())}
    front = {t["number"]: t for t in json.loads((a.study / "best.json").read_text())["best"]}
    numbers = a.trials or sorted(front)
    rows = []
    print(f"{'trial':>5} {'study LUTs':>10} {'study test':>10} | {'seeds':>5} {'LUTs, mean (min-max)':>22} "
          f"{'test, mean (min-max)':>24} {'val, mean':>9}")
    for n in numbers:
        t = trials[n]
        luts, val, test = [], [], []
        for seed in a.seeds:
            t0 = time.perf_counter()
            try:
                r = learn(base, data, space.settings(t["params"], seed))
            except Collapsed:
                rows.append({"trial": n, "seed": seed, "collapsed": True})
                continue
            row = {"trial": n, "seed": seed, "luts": network_cost(r.graph).luts,
                   "val": evaluate(r.graph.gm, data.val)["accuracy"],
                   "test": evaluate(r.graph.gm, data.test)["accuracy"], "s": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            luts.append(row["luts"])
            val.append(row["val"])
            test.append(row["test"])
        if not luts:
            print(f"{n:>5} every seed collapsed", flush=True)
            continue
        study_test = front[n]["test_metrics"]["accuracy"] if n in front else None  # best.json's reading
        print(f"{n:>5} {t['hardware_metrics']['luts']:>10.1f} "
              f"{'' if study_test is None else format(study_test, '.4f'):>10} | "
              f"{len(luts):>5} {statistics.fmean(luts):>8.0f} ({min(luts):.0f}-{max(luts):.0f}){'':>6} "
              f"{spread(test):>24} {statistics.fmean(val):>9.4f}", flush=True)
    if a.json:
        setup = cfg["search"].get("strategy", {}).get("setup", {})
        own = setup.get("seed", cfg.get("seed", 0))  # the seed the study trained its designs with
        a.json.write_text(json.dumps({"study": str(a.study), "study_seed": own, "seeds": a.seeds, "rows": rows},
                                     indent=1))


if __name__ == "__main__":
    main()
