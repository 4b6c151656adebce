"""Start-up of `bitsmith search` to its first trial, against a bare `import torch`.

The first trial's start time is read from the study's journal (Optuna records
it), so nothing in bitsmith is instrumented for this. Medians over repeats.

    python benchmarks/startup.py [--repeats 5]
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

ROOT = Path(__file__).resolve().parents[1]


def first_trial_start(journal: Path) -> float:
    for line in journal.read_text().splitlines():
        log = json.loads(line)
        if "datetime_start" in log:
            return datetime.fromisoformat(log["datetime_start"]).timestamp()
    raise RuntimeError(f"no trial started in {journal}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "BITSMITH_CACHE": os.environ.get("BITSMITH_CACHE", tempfile.mkdtemp())}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "bitsmith", "train", "--max-epochs", "1", "--project-dir", tmp],
                       check=True, capture_output=True, env=env)  # a checkpoint, and the data cache warm
        ckpt = Path(tmp) / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
        torch_times, search_times = [], []
        for r in range(args.repeats):
            t0 = time.time()  # to the moment the import is done (not interpreter teardown)
            done = subprocess.run([sys.executable, "-c", "import time, torch; print(time.time())"], check=True,
                                  env=env, capture_output=True, text=True).stdout
            torch_times.append(float(done) - t0)
            out = Path(tmp) / f"run{r}"
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "bitsmith", "search", "--config",
                            str(ROOT / "configs" / "search_digits_quantize.toml"), "--load", str(ckpt),
                            "--project-dir", str(out), "--n-trials", "1"], check=True, capture_output=True, env=env)
            search_times.append(first_trial_start(out / "digits-mlp_digits" / "search" / "study.journal") - t0)
    t_torch, t_search = statistics.median(torch_times), statistics.median(search_times)
    print(f"python -c 'import torch'          : {t_torch:.2f} s (median of {args.repeats})")
    print(f"bitsmith search, to first trial  : {t_search:.2f} s")
    print(f"difference                       : {t_search - t_torch:+.2f} s  (target <= +0.5 s)")


if __name__ == "__main__":
    main()
