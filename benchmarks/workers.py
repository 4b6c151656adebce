"""Trials per second with 1 and 2 local worker processes, on the journal file and on PostgreSQL.

Each run is `bitsmith search --n-workers K` on the same digits width search
(every trial fine-tunes its candidate for a few steps, so a trial is work, not
bookkeeping). Throughput is counted from the first trial's start to the last
trial's end as the study records them, so process start-up (importing torch in
each worker) is left out; it is printed apart. Ratios are K=2 over K=1 on the
same storage, measured in the same run.

    python benchmarks/workers.py [--trials 120] [--postgres URL]

Without --postgres, $BITSMITH_TEST_POSTGRES_URL is used when set (CI starts a
server with scripts/start-postgres.sh); otherwise only the journal is measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

CONFIG = """
model = "digits-mlp"
dataset = "digits"
seed = 0
[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "type"
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [3, 4, 5, 6, 7, 8]
weight_width = [2, 3, 4, 5, 6, 7, 8]
bias_width = [4, 8]
[search.search_space.seed.relu.config]
name = ["integer"]
data_in_width = [3, 4, 5, 6, 7, 8]
[search.strategy.sw_runner.basic_train]
max_steps = 10
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.setup]
n_trials = {trials}
sampler = "random"
[search.strategy.metrics]
accuracy.scale = 1.0
"""


def run(cfg: Path, out: Path, workers: int, storage: str | None, name: str) -> dict:
    cmd = [sys.executable, "-m", "bitsmith", "search", "--config", str(cfg), "--project-dir", str(out),
           "--n-workers", str(workers), "--study-name", name]
    if storage:
        cmd += ["--storage", storage]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"search failed: {done.stderr[-2000:]}")
    url = storage or str(out / "digits-mlp_digits" / "search" / "study.journal")
    store = (optuna.storages.RDBStorage(url) if "://" in url
             else optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url)))
    trials = [t for t in optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
              if t.datetime_complete is not None and t.state.name == "COMPLETE"]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {"trials": len(trials), "per_second": len(trials) / span, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=120)
    ap.add_argument("--postgres", default=os.environ.get("BITSMITH_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    storages = [("journal", None)] + ([("postgresql", args.postgres)] if args.postgres else [])
    print(f"cores={os.cpu_count()} trials={args.trials}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "search.toml"
        cfg.write_text(CONFIG.format(trials=args.trials))
        for label, url in storages:
            rates = {}
            for k in (1, 2):
                r = run(cfg, Path(tmp) / f"{label}-{k}", k, url, f"bench-{uuid.uuid4().hex[:8]}")
                rates[k] = r["per_second"]
                print(f"[{label}] workers={k}: {r['trials']} trials, {r['per_second']:.1f} trials/s "
                      f"(wall {r['wall']:.1f} s with start-up)")
            print(f"[{label}] 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
