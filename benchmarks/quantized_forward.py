"""One forward pass over the whole validation split: fixed-point (fake-quantized)
model vs the same model in plain float PyTorch, measured in one run.

    python benchmarks/quantized_forward.py [--model jsc-toy --dataset jsc --data-path F] [--width 8]

The validation split defaults to digits (bundled); give a JSC file for a
larger split. Reports medians over repeats and the ratio (target: <= 3x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.models import build_model
from bitsmith.passes.quantize import quantize_pass


def timed(fn, x, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-mlp")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-path")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()

    data = get_dataset(args.dataset, args.data_path)
    torch.manual_seed(0)
    model = build_model(args.model, data.in_shape, data.n_classes).eval()
    graph = trace(model, data.in_shape)
    fmt = {"name": "integer", "data_in_width": args.width, "weight_width": args.width, "bias_width": args.width}
    qgraph, _ = quantize_pass(graph, {"by": "type", "default": {"config": {"name": None}},
                                      "linear": {"config": fmt}, "conv2d": {"config": fmt},
                                      "relu": {"config": {"name": "integer", "data_in_width": args.width}}})
    x = data.val.x
    t_float = timed(model, x, args.repeats)
    t_quant = timed(qgraph.gm, x, args.repeats)
    print(f"model={args.model} dataset={args.dataset} val_rows={len(x)} width={args.width} "
          f"threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"float PyTorch forward : {t_float * 1e3:8.3f} ms")
    print(f"bitsmith fixed point  : {t_quant * 1e3:8.3f} ms")
    print(f"ratio quantized/float : {t_quant / t_float:.2f}x  (target <= 3x)")


if __name__ == "__main__":
    main()
