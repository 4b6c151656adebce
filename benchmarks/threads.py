"""Intra-op threads for a search's evaluation: one against two, idle and under load, in one run.

The evaluation a quantization search runs per trial (jsc-toy, 8-bit Linear and
ReLU, bitsmith's `evaluate`) on the first 512 and 4,096 rows and on the whole
validation split, with `torch.set_num_threads(1)` and `(2)`; median and best of 7.
This is the measurement behind the one-thread default (docs/search.md).

    python benchmarks/threads.py [--data-path JSC_FILE] [--loads 0,2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy, jsc_layout_file  # noqa: E402
from search_overhead import train_quickly  # noqa: E402

from bitsmith.config import load_settings  # noqa: E402
from bitsmith.graph import trace  # noqa: E402
from bitsmith.jobs import prepare  # noqa: E402
from bitsmith.passes import get_pass  # noqa: E402
from bitsmith.train import evaluate  # noqa: E402

EIGHT_BIT = {"by": "type", "linear": {"config": {"name": "integer", "data_in_width": 8, "weight_width": 8,
                                                  "bias_width": 8}},
             "relu": {"config": {"name": "integer", "data_in_width": 8}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-path")
    ap.add_argument("--loads", default="0,2", help="busy background processes, comma-separated (0: idle)")
    args = ap.parse_args()
    data_path = args.data_path or str(jsc_layout_file(830_000))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = train_quickly("jsc-toy", data_path, Path(tmp))
        p = prepare(load_settings(None, model="jsc-toy", dataset="jsc", data_path=data_path, load_name=str(ckpt),
                                  accelerator="cpu"))
    graph, _ = get_pass("quantize").fn(trace(p.model.eval(), p.data.in_shape), EIGHT_BIT)
    default = torch.get_num_threads()
    for load in (int(v) for v in args.loads.split(",")):
        with busy(load) as b:
            for rows in (512, 4096, None):
                figures = []
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    times = []
                    for _ in range(7):
                        t0 = time.perf_counter()
                        evaluate(graph.gm, p.data.val, p.device, num_samples=rows)
                        times.append(time.perf_counter() - t0)
                    figures.append(f"{threads} thread(s) median {statistics.median(times) * 1e3:8.2f} ms, best "
                                   f"{min(times) * 1e3:8.2f} ms")
                print(f"[{b.label}] rows={rows or len(p.data.val):6d}: " + "; ".join(figures))
    torch.set_num_threads(default)


if __name__ == "__main__":
    main()
