"""Start-up of `bitsmith search` to its first trial, against a bare `import torch`, idle and under load.

The published 512-sample jsc-toy search (configs/jsc_toy_by_type.toml) on a
JSC-layout file, with the data cache warm (a first run fills it). The first
trial's start time is read from the study's journal (Optuna records it), so
nothing in bitsmith is instrumented. Medians over repeats; target: within
0.3 s of `import torch`.

    python benchmarks/startup.py [--repeats 5] [--loads 0,2] [--data-path JSC_FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy, jsc_layout_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def first_trial_start(journal: Path) -> float:
    for line in journal.read_text().splitlines():
        log = json.loads(line)
        if "datetime_start" in log:
            return datetime.fromisoformat(log["datetime_start"]).timestamp()
    raise RuntimeError(f"no trial started in {journal}")


def bitsmith(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", "bitsmith", *args], check=True, capture_output=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loads", default="0,2", help="busy background processes, comma-separated (0: idle)")
    ap.add_argument("--data-path")
    args = ap.parse_args()
    data = args.data_path or str(jsc_layout_file(830_000))
    env = {**os.environ, "BITSMITH_CACHE": os.environ.get("BITSMITH_CACHE", tempfile.mkdtemp())}
    with tempfile.TemporaryDirectory() as tmp:
        bitsmith("train", "jsc-toy", "jsc", "--data-path", data, "--max-epochs", "1", "--batch-size", "4096",
                 "--accelerator", "cpu", "--project-dir", tmp, env=env)  # a checkpoint, and the data cache warm
        ckpt = Path(tmp) / "jsc-toy_jsc" / "checkpoints" / "best.ckpt"
        for load in (int(v) for v in args.loads.split(",")):
            with busy(load) as b:
                torch_times, search_times = [], []
                for r in range(args.repeats):
                    t0 = time.time()  # to the moment the import is done (not interpreter teardown)
                    done = subprocess.run([sys.executable, "-c", "import time, torch; print(time.time())"],
                                          check=True, env=env, capture_output=True, text=True).stdout
                    torch_times.append(float(done) - t0)
                    out = Path(tmp) / f"run{load}-{r}"
                    t0 = time.time()
                    bitsmith("search", "--config", str(ROOT / "configs" / "jsc_toy_by_type.toml"), "--data-path",
                             data, "--load", str(ckpt), "--project-dir", str(out), "--n-trials", "1", env=env)
                    search_times.append(first_trial_start(out / "jsc-toy" / "search" / "study.journal") - t0)
                t_torch, t_search = statistics.median(torch_times), statistics.median(search_times)
                print(f"[{b.label}] python -c 'import torch': {t_torch:.2f} s; bitsmith search to its first trial: "
                      f"{t_search:.2f} s; difference {t_search - t_torch:+.2f} s (target <= +0.30 s; "
                      f"median of {args.repeats})")


if __name__ == "__main__":
    main()
