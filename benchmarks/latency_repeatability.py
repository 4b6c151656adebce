"""Is `latency` repeatable? Two runs of the same search, design by design, idle and busy.

One 20-trial search of jsc-toy (configs/jsc_toy_by_type.toml: 512 validation
samples, random sampler, fixed seed, so both runs visit the same designs)
with the `latency` runner added, run twice as separate `bitsmith search`
processes. For each design: the relative difference of its two figures,
max/min - 1; reported as the median and the worst over designs. Done idle
(`busy(0)`) and with two busy background processes (`busy(2)`), for the
current runner (`latency` at batch 1 and the batch time at `batch_size` =
1/`throughput`) and, for comparison, the old one (the median of 10 forward
passes of 512 rows after 3 warm-ups; kept below as `OldLatency`).
Target for the current runner's `latency`: <= 20% idle, <= 50% busy.

    python benchmarks/latency_repeatability.py [--data-path JSC_FILE] [--trials 20] [--threads 1] [--cpus 0,1]

"run2/run1" is the common factor of a design's two figures (the median ratio):
a whole run faster or slower, which is the machine, not the method; the
difference left without it is the method's own. "reference call" times a plain
one-row Linear in each search process, before and after its search: when it
moves with run2/run1, the machine changed speed between the runs.

Without --data-path a JSC-layout file of 100,000 rows is generated once in the
temp directory, and jsc-toy is trained on it for one epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "jsc_toy_by_type.toml"
sys.path.insert(0, str(HERE))


def old_runner():
    """The runner as it was, at its defaults: median of 10 timed passes of one 512-row batch after 3 warm-ups."""
    import torch

    from bitsmith.search.runners import Runner
    from bitsmith.search.runners.latency import LatencySettings

    class OldLatency(Runner):
        name = "latency"
        kind = "software"
        Settings = LatencySettings  # only num_threads is read; the old defaults are fixed below
        metrics = frozenset({"latency", "latency_batch_size", "latency_threads"})
        stage = 30

        def threads(self):
            return self.settings.num_threads

        def __call__(self, graph, ctx):
            x = ctx.data.val.x[:512].to(ctx.device)
            with torch.no_grad():
                for _ in range(3):
                    graph.gm(x)
                times = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    graph.gm(x)
                    times.append(time.perf_counter() - t0)
            return graph, {"latency": statistics.median(times) * 1e3, "latency_batch_size": len(x),
                           "latency_threads": torch.get_num_threads()}

    return OldLatency


def reference_us() -> float:
    """The machine's speed now: a plain one-row Linear, median over blocks (no bitsmith involved)."""
    import torch

    lin, x = torch.nn.Linear(16, 64), torch.randn(1, 16)
    blocks = []
    with torch.no_grad():
        for _ in range(60):
            t0 = time.perf_counter_ns()
            for _ in range(20):
                lin(x)
            blocks.append((time.perf_counter_ns() - t0) / 20 / 1e3)
    return statistics.median(blocks[10:])


def worker(args) -> None:
    """One `bitsmith search` run in this process; prints its designs and latency figures as JSON."""
    from bitsmith.cli import main
    from bitsmith.search import runners

    cost: list[float] = []
    base = old_runner() if args.runner == "old" else runners.RUNNERS["latency"]

    class Timed(base):  # the runner's own cost per trial
        def __call__(self, graph, ctx):
            t0 = time.perf_counter()
            try:
                return super().__call__(graph, ctx)
            finally:
                cost.append(time.perf_counter() - t0)

    runners.RUNNERS["latency"] = Timed
    timings = []
    if args.runner == "new":  # how each measurement stopped
        from bitsmith.search.runners import latency as lat

        plain = lat.measure
        lat.measure = lambda *a, **k: timings.append(plain(*a, **k)) or timings[-1]
    argv = ["search", "--config", args.config, "--load", args.ckpt, "--data-path", args.data_path,
            "--project-dir", args.out, "--accelerator", "cpu", "--sampler", "random", "--n-trials", str(args.trials)]
    import torch

    torch.set_num_threads(args.threads)
    before = reference_us()
    try:
        main(argv)
    except SystemExit as e:
        if e.code:
            raise
    (trials,) = Path(args.out).glob("*/search/latest/trials.json")
    rows = [{"params": r["params"], **r["software_metrics"]} for r in json.loads(trials.read_text())
            if r["state"] == "COMPLETE"]
    stops = {"converged": sum(t.converged for t in timings), "measurements": len(timings),
             "blocks": statistics.median(len(t.blocks) for t in timings) if timings else 0}
    print(json.dumps({"rows": rows, "cost_ms": statistics.median(cost) * 1e3, "max_cost_ms": max(cost) * 1e3,
                      "stops": stops, "reference_us": [before, reference_us()]}))


def one_run(runner: str, config: Path, ckpt: Path, data_path: str, trials: int, threads: int, tmp: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=tmp))
    cmd = [sys.executable, __file__, "--worker", "--runner", runner, "--config", str(config), "--ckpt", str(ckpt),
           "--data-path", data_path, "--out", str(out), "--trials", str(trials), "--threads", str(threads)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(a: list[dict], b: list[dict], metric: str) -> list[float]:
    """Run 2 / run 1, design by design (throughput inverted to a batch time)."""
    assert [r["params"] for r in a] == [r["params"] for r in b], "the two runs visited different designs"
    inv = metric == "throughput"
    return [(ra[metric] / rb[metric]) if inv else (rb[metric] / ra[metric]) for ra, rb in zip(a, b)]


def rel_diffs(r: list[float]) -> list[float]:
    return [max(x, 1 / x) - 1 for x in r]


def summary(label: str, r: list[float]) -> None:
    d = rel_diffs(r)
    # A whole run slower or faster (the machine, not the method) shows as a common factor of the ratios.
    common = math.exp(statistics.median(math.log(x) for x in r))
    rest = rel_diffs([x / common for x in r])
    print(f"  {label:30s} median {statistics.median(d):6.1%}  worst {max(d):8.1%}   "
          f"run2/run1 {common:5.2f}, without it: median {statistics.median(rest):6.1%}")


def train_quickly(data_path: str, out: Path) -> Path:
    from rich.console import Console

    from bitsmith import jobs
    from bitsmith.config import load_settings

    s = load_settings(None, model="jsc-toy", dataset="jsc", data_path=data_path, max_epochs=1, batch_size=1024,
                      project_dir=str(out), accelerator="cpu")
    jobs.train(s, Console(quiet=True))
    return out / "jsc-toy_jsc" / "checkpoints" / "best.ckpt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-path")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="num_threads of the latency table (both runners)")
    ap.add_argument("--loads", default="0,2", help="busy background processes, one setting each (default 0,2)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--runner", choices=["new", "old"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--cpus", help="run everything (searches and busy processes) on these CPUs, e.g. 0,1")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.cpus:  # inherited by every process started below
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})

    from _common import busy, jsc_layout_file

    data_path = args.data_path or str(jsc_layout_file(100_000))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = train_quickly(data_path, tmp)
        config = tmp / "jsc_toy_latency.toml"
        config.write_text(CONFIG.read_text() + f"\n[search.strategy.sw_runner.latency]\nnum_threads = {args.threads}\n")
        print(f"jsc-toy, {args.trials} trials x 2 runs per setting, num_threads={args.threads}, "
              f"CPUs {sorted(os.sched_getaffinity(0))}, relative difference = max/min - 1 per design")
        for n in map(int, args.loads.split(",")):
            with busy(n) as b:
                load = os.getloadavg()[0]
                runs = {r: [one_run(r, config, ckpt, data_path, args.trials, args.threads, tmp) for _ in range(2)]
                        for r in ("new", "old")}
            print(f"\n[{b.label}] (1-min load average at start {load:.2f})")
            new, old = runs["new"], runs["old"]
            summary("new latency (batch 1)", ratios(new[0]["rows"], new[1]["rows"], "latency"))
            summary("new 1/throughput (batch 512)", ratios(new[0]["rows"], new[1]["rows"], "throughput"))
            summary("old latency (batch 512)", ratios(old[0]["rows"], old[1]["rows"], "latency"))
            for r in ("new", "old"):
                ref = [x["reference_us"] for x in runs[r]]
                print(f"  machine speed, {r} runs: reference call (us) before/after run 1 {ref[0][0]:.1f}/"
                      f"{ref[0][1]:.1f}, run 2 {ref[1][0]:.1f}/{ref[1][1]:.1f}")
            iqr = [r["latency_iqr"] / r["latency"] for run in new for r in run["rows"]]
            stops = [run["stops"] for run in new]
            print(f"  new latency_iqr / latency      median {statistics.median(iqr):6.1%}  worst {max(iqr):8.1%}")
            print(f"  new: stopped by the tolerance in {sum(s['converged'] for s in stops)} of "
                  f"{sum(s['measurements'] for s in stops)} measurements, median "
                  f"{statistics.median(s['blocks'] for s in stops):.0f} blocks")
            for r in ("new", "old"):
                print(f"  {r} runner's time per trial      median "
                      f"{statistics.median(x['cost_ms'] for x in runs[r]):6.1f} ms  worst "
                      f"{max(x['max_cost_ms'] for x in runs[r]):6.1f} ms")
            if n in (0, 2):
                target = 0.2 if n == 0 else 0.5
                med = statistics.median(rel_diffs(ratios(new[0]["rows"], new[1]["rows"], "latency")))
                print(f"  target: new latency <= {target:.0%} -> {'met' if med <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
