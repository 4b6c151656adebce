"""Distillation at fixed learned-width points: the same penalty strengths and seeds, with and without the
loaded model's soft labels, each design's LUTs (the luts metric) and accuracies.

    python benchmarks/learned_distill.py --load CKPT [--val-size 0.25] [--distill 0,0.5,0.9]
        [--betas 5e-5,1e-4,2e-4,3e-4] [--seeds 0,1,2] [--epochs 100]

CKPT: a digits-mlp checkpoint trained with the same ``--val-size`` (``bitsmith train digits-mlp digits
--val-size 0.25``). Points: learning rate 5e-3, a width per weight, range_quantile 0.999.
"""

from __future__ import annotations

import argparse
import time

import torch

from bitsmith.checkpoint import load_checkpoint, restore
from bitsmith.cost.network import network_cost
from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.learn import Collapsed, LearnSettings, learn
from bitsmith.models import build_model
from bitsmith.train import evaluate


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", required=True)
    ap.add_argument("--val-size", type=float, default=0.25)
    ap.add_argument("--distill", type=floats, default=[0.0, 0.5, 0.9])
    ap.add_argument("--betas", type=floats, default=[5e-5, 1e-4, 2e-4, 3e-4])
    ap.add_argument("--seeds", type=lambda t: [int(v) for v in t.split(",")], default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = get_dataset("digits", val_size=a.val_size)
    state, _ = load_checkpoint(a.load)
    model = restore(build_model("digits-mlp", data.in_shape, data.n_classes), state, a.load, "digits-mlp")
    base = trace(model.eval(), data.in_shape)
    print(f"float model: test {evaluate(base.gm, data.test)['accuracy']:.4f}")
    print(f"{'distill':>7} {'beta':>7} {'seed':>4} {'luts':>8} {'val':>7} {'test':>7} {'s':>5}")
    for d in a.distill:
        for beta in a.betas:
            for seed in a.seeds:
                s = LearnSettings(beta=beta, max_epochs=a.epochs, learning_rate=5e-3, granularity="weight",
                                  range_quantile=0.999, seed=seed, distill=d)
                t0 = time.perf_counter()
                try:
                    r = learn(base, data, s)
                except Collapsed:
                    print(f"{d:>7} {beta:>7g} {seed:>4} collapsed")
                    continue
                luts = network_cost(r.graph).luts
                val, test = (evaluate(r.graph.gm, split)["accuracy"] for split in (data.val, data.test))
                print(f"{d:>7} {beta:>7g} {seed:>4} {luts:>8.1f} {val:>7.4f} {test:>7.4f} "
                      f"{time.perf_counter() - t0:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
