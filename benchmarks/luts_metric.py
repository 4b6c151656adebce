"""Per-trial cost of the `luts` metric against the bops runner on the same graph, cold and cached, idle and under load.

Designs are built as `bitsmith search` builds them (the quantize pass of a space's point on the traced model):

* jsc-toy: 8 points of configs/jsc_toy_by_type.toml's space, the model trained for one epoch on a generated
  JSC-layout file (30,000 rows);
* digits-mlp: 8 points drawn from configs/search_digits_luts.toml's space, the model trained as
  `bitsmith train digits-mlp digits` trains it (or --load CKPT).

Per design, one intra-op thread (what a search of these sizes uses), each load (``--loads 0,2``: idle, then two
busy background processes started and stopped by the benchmark itself):

* ``bops``: the bops runner on the same graph (the analysis pass): the bare baseline, median of 20 calls;
* ``cold``: the luts runner with an empty cache directory, the solver process already running (the first
  design of the run also starts it: shown apart, as ``first``);
* ``disk``: a second pass with the in-memory layer of the cache dropped (a new process, a later search or
  compare: read from the directory), median of 5;
* ``memory``: in-memory hits (later trials of one search), median of 20;

as absolute ms and as ratios to ``bops``; medians (and the worst) over the designs.

Then, idle: the whole example search (`bitsmith search --config configs/search_digits_luts.toml`, 300 trials,
NSGA-II, post-training) through the command line, in a temporary project with an empty cache, its wall time and
where its fronts under luts and under bops differ; and, on the distinct layers of the digits designs (and one
random 16x64 layer), what the solver option ``search_all_decompose_dc = false`` changes against the default
``true`` (hls4ml's), in LUTs and in time.

Targets (the issue's; checked on the idle figures; exit status 1 when one FAILs):

* a cache hit adds at most 1 ms per trial: the luts runner's whole time on a hit, memory and disk, each model;
* a cold jsc-toy design costs at most 2 s: the worst cold design, the solver process's start included;
* the 300-trial search with luts as an objective finishes in under 2 minutes.

    python benchmarks/luts_metric.py [--loads 0,2] [--load DIGITS_CKPT] [--skip-search]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy, jsc_layout_file  # noqa: E402

import bitsmith  # noqa: E402
from bitsmith.config import load_settings  # noqa: E402
from bitsmith.cost import _da4ml  # noqa: E402
from bitsmith.cost import network, solver  # noqa: E402
from bitsmith.cost.cache import ENV  # noqa: E402
from bitsmith.passes.luts import LutsSettings, short  # noqa: E402
from bitsmith.schema import Notes  # noqa: E402
from bitsmith.search.fronts import compare_fronts, designs_from_trials, report_lines  # noqa: E402
from bitsmith.search.prepare import prepare_search  # noqa: E402
from bitsmith.search.runners import RUNNERS  # noqa: E402
from bitsmith.search.study import build_candidate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BITSMITH = Path(sys.executable).with_name("bitsmith")
DESIGNS = 8
HIT_MS, COLD_S, SEARCH_S = 1.0, 2.0, 120.0  # the targets


def train(model: str, dataset: str, out: Path, **flags) -> Path:
    from rich.console import Console

    from bitsmith import jobs

    s = load_settings(None, model=model, dataset=dataset, project_dir=str(out), accelerator="cpu", **flags)
    jobs.train(s, Console(quiet=True))
    return out / f"{model}_{dataset}" / "checkpoints" / "best.ckpt"


def designs(config: Path, ckpt: Path, out: Path, n: int, seed: int, **flags) -> list[tuple[dict, object]]:
    """``n`` distinct points of the config's space and their candidate graphs, as the search builds them."""
    s = load_settings(config, load_name=str(ckpt), accelerator="cpu", project_dir=str(out), **flags)
    search = prepare_search(s, None, Notes(False, quiet=True))
    params = search.objective.params
    rng = random.Random(seed)
    seen, out_ = set(), []
    while len(out_) < n:
        chosen = {k: rng.choice(v) for k, v in params.items()}
        key = json.dumps(chosen, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out_.append((chosen, build_candidate(search.base, search.objective.space, chosen)[0]))
    return out_


def median_s(fn, n: int, before=None) -> float:
    times = []
    for _ in range(n):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_trial(graphs: list, cache_root: Path, tag: str) -> dict:
    """bops / cold / disk / memory seconds per design, and the first cold call of the run (solver start).

    Reads two private names: ``network._caches`` (dropped for a disk hit) and ``solver._started``."""
    bops = RUNNERS["bops"](RUNNERS["bops"].Settings())
    rows = []
    for i, g in enumerate(graphs):
        luts = RUNNERS["luts"](LutsSettings(cache_dir=str(cache_root / f"{tag}-{i}")))
        first = solver._started == 0  # no solver process yet: this call starts one
        t0 = time.perf_counter()
        _, m = luts(g, None)
        cold = time.perf_counter() - t0
        disk = median_s(lambda luts=luts, g=g: luts(g, None), 5, before=network._caches.clear)
        memory = median_s(lambda luts=luts, g=g: luts(g, None), 20)
        _, again = luts(g, None)
        assert again == m, "a cached result differs from the solved one"
        rows.append({"bops": median_s(lambda g=g: bops(g, None), 20), "cold": cold, "disk": disk, "memory": memory,
                     "luts": m["luts"], "first": first})
    return {"rows": rows, **{k: [r[k] for r in rows] for k in ("bops", "cold", "disk", "memory", "luts")}}


def report(name: str, load: str, r: dict) -> None:
    ms = lambda v: f"{v * 1e3:9.2f}"  # noqa: E731
    bops = statistics.median(r["bops"])
    first = [row["cold"] for row in r["rows"] if row["first"]]
    cold = [row["cold"] for row in r["rows"] if not row["first"]]
    print(f"[{name}] {load}: {len(r['rows'])} designs, LUTs {min(r['luts']):,.0f} to {max(r['luts']):,.0f} "
          f"(load avg {os.getloadavg()[0]:.2f})")
    print(f"  {'':30s} {'median ms':>9s} {'worst ms':>9s}   ratio to bops (median)")
    print(f"  {'bops runner (baseline)':30s} {ms(bops)} {ms(max(r['bops']))}   {1:10.1f}x")
    for label, vals in (("luts cold (solver running)", cold), ("luts disk hit (2nd pass)", r["disk"]),
                        ("luts memory hit", r["memory"])):
        med = statistics.median(vals)
        print(f"  {label:30s} {ms(med)} {ms(max(vals))}   {med / bops:10.1f}x")
    if first:
        print(f"  {'first cold design (+ start)':30s} {ms(first[0])} {'':9s}   {first[0] / bops:10.1f}x")


def decompose(graphs: list, limit: int = 12) -> list[dict]:
    """Distinct real layers of the designs (and a random 16x64 4-bit one): LUTs and seconds under
    search_all_decompose_dc true (hls4ml's) and false."""
    probs, seen = [], set()
    for g in graphs:
        for p in network.problems(g):
            k = p.key({})
            if k not in seen and len(probs) < limit:
                seen.add(k)
                probs.append((f"{p.name} {p.kernel.shape[0]}x{p.kernel.shape[1]} in {short(network.show(p.input_fmt))} "
                              f"w {short(network.show(p.weight_fmt))}", p.kernel, p.kif, p.bias))
    rng = np.random.default_rng(0)
    kernel = rng.integers(-8, 8, (16, 64)).astype(np.float64) / 4  # fixed<4,2> weights
    probs.append(("random 16x64 in s<8,4> w s<4,2>", kernel, np.tile([1, 3, 4], (16, 1)), None))
    out = []
    for label, kernel, kif, bias in probs:
        row = {"layer": label}
        for flag in (True, False):
            opts = {**_da4ml.OPTIONS, "search_all_decompose_dc": flag}
            t0 = time.perf_counter()
            row[flag] = _da4ml.solve_cmvm(kernel, kif, bias, opts)["cost"]
            row[f"t{flag}"] = time.perf_counter() - t0
        out.append(row)
    return out


def whole_search(ckpt: Path, out: Path) -> tuple[float, int, Path]:
    """`bitsmith search` on the example config, empty cache, temporary project: wall seconds, exit status."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, ENV: str(out / "cache"), "BITSMITH_OFFLINE": "1"}
    cmd = [str(BITSMITH), "search", "--config", str(CONFIGS / "search_digits_luts.toml"), "--load", str(ckpt),
           "--project-dir", str(out / "project")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-2000:])
    trials = next((out / "project").rglob("trials.json"), None)
    return wall, proc.returncode, trials


def verdict(ok: bool, what: str, results: list) -> None:
    results.append(ok)
    print(f"  {'PASS' if ok else 'FAIL'}  {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", default="0,2", help="busy background processes, comma-separated (0: idle)")
    ap.add_argument("--load", help="a trained digits-mlp checkpoint (default: train one as `bitsmith train` does)")
    ap.add_argument("--skip-search", action="store_true", help="leave out the 300-trial search")
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    print(f"bitsmith from {Path(bitsmith.__file__).parent}  da4ml {_da4ml.version()}  cores {os.cpu_count()}  "
          f"torch threads 1  load avg {os.getloadavg()[0]:.2f}\n'idle': no load started by this benchmark (the "
          "1-minute load average shows what else ran)")
    figures: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jsc = str(jsc_layout_file(30_000))
        toy_ckpt = train("jsc-toy", "jsc", tmp / "train", data_path=jsc, max_epochs=1, batch_size=1024)
        digits_ckpt = Path(args.load) if args.load else train("digits-mlp", "digits", tmp / "train")
        models = {
            "jsc-toy, jsc_toy_by_type.toml space": [g for _, g in designs(
                CONFIGS / "jsc_toy_by_type.toml", toy_ckpt, tmp / "p", DESIGNS, 0, data_path=jsc)],
            "digits-mlp, search_digits_luts.toml space": [g for _, g in designs(
                CONFIGS / "search_digits_luts.toml", digits_ckpt, tmp / "p", DESIGNS, 0)],
        }
        loads = [int(v) for v in args.loads.split(",")]
        for load in loads:
            with busy(load) as b:
                for name, graphs in models.items():
                    r = per_trial(graphs, tmp / "cache", f"{name[:4]}-{load}")
                    figures[(name, load)] = r
                    report(name, b.label, r)

        print(f"\nsearch_all_decompose_dc: false against true (hls4ml's), cmvm only, in-process, idle "
              f"(load avg {os.getloadavg()[0]:.2f})")
        rows = decompose(models["digits-mlp, search_digits_luts.toml space"])
        print(f"  {'layer (s/u<width,int>)':38s} {'LUTs true':>9s} {'false':>6s} {'diff':>6s} {'s true':>6s} "
              f"{'false':>6s}")
        for r in rows:
            diff = (r[False] - r[True]) / r[True] if r[True] else 0.0
            print(f"  {r['layer']:38s} {r[True]:9,.0f} {r[False]:6,.0f} {diff * 100:+5.1f}% {r['tTrue']:6.2f} "
                  f"{r['tFalse']:6.2f}")
        changed = [r for r in rows if r[True] != r[False]]
        print(f"  {len(changed)} of {len(rows)} layers change; total LUTs {sum(r[True] for r in rows):,.0f} (true) "
              f"vs {sum(r[False] for r in rows):,.0f} (false); time {sum(r['tTrue'] for r in rows):.2f} s vs "
              f"{sum(r['tFalse'] for r in rows):.2f} s")

        search = None
        if not args.skip_search:
            print(f"\nwhole search: bitsmith search --config configs/search_digits_luts.toml (300 trials, nsgaii), "
                  f"empty cache, idle (load avg {os.getloadavg()[0]:.2f})")
            wall, code, trials = whole_search(digits_ckpt, tmp / "search")
            search = (wall, code)
            print(f"  exit status {code}, wall {wall:.1f} s")
            if trials is not None:
                data = json.loads(trials.read_text())
                dur = [t["duration_s"] or 0.0 for t in data]
                print(f"  {len(data)} trials; trial time: sum {sum(dur):.1f} s, first 50 {sum(dur[:50]):.1f} s, "
                      f"median {statistics.median(dur) * 1e3:.1f} ms, worst {max(dur):.2f} s")
                print("\n".join(report_lines(compare_fronts(designs_from_trials(data)))))

    print("\ntargets (idle figures):")
    results: list[bool] = []
    for (name, load), r in figures.items():
        if load != 0:
            continue
        model = name.split(",")[0]
        for kind in ("memory", "disk"):
            med = statistics.median(r[kind]) * 1e3
            verdict(med <= HIT_MS, f"{model}: a {kind} cache hit costs {med:.2f} ms per trial (median over "
                                   f"designs; target <= {HIT_MS:g} ms)", results)
        if model == "jsc-toy":
            worst = max(r["cold"])
            verdict(worst <= COLD_S, f"jsc-toy: the worst cold design costs {worst:.2f} s, the solver's start "
                                     f"included (target <= {COLD_S:g} s)", results)
    if search is not None:
        wall, code = search
        verdict(code == 0 and wall < SEARCH_S, f"the 300-trial digits search with luts finished in {wall:.1f} s "
                                               f"(exit {code}; target < {SEARCH_S:g} s)", results)
    if 0 in loads:
        for (name, load), r in figures.items():
            if load:
                memory, disk = (statistics.median(r[k]) * 1e3 for k in ("memory", "disk"))
                print(f"  (under load, {load} busy: {name.split(',')[0]} memory hit {memory:.2f} ms, disk hit "
                      f"{disk:.2f} ms, worst cold {max(r['cold']):.2f} s; not a target)")
    print(f"benchmark time {time.perf_counter() - t_start:.0f} s")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
