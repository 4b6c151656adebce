"""Training with learned widths vs a bare PyTorch loop training the same float model, in one run.

Same model (digits-mlp), same in-memory tensors, batch size, optimizer (Adam) and cosine schedule. The
bare loop is the least code that trains: shuffle, slice, forward, backward, step. The learned loop is
``bitsmith.learn.fit_learned``: learned quantizers on every weight, bias and activation, the EBOPs
penalty each step, and once per epoch the calibration of activation ranges and a validation pass (the
pruner needs it). Both run on one intra-op thread, idle and with busy background processes
(``--loads``); the figure is the median ratio of samples/s over ``--repeats`` alternating runs.

    python benchmarks/learned_throughput.py [--epochs 30] [--repeats 5] [--loads 0,2] [--granularity weight]

Target: learned samples/s >= 0.8x the bare loop's, idle and under load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy

from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.learn import LearnSettings, fit_learned
from bitsmith.models import build_model

TARGET = 0.8


def bare(model, x, y, epochs: int, batch: int, lr: float, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((len(y) + batch - 1) // batch))
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        xs, ys = x[perm], y[perm]
        for lo in range(0, len(y), batch):
            loss = F.cross_entropy(model(xs[lo:lo + batch]), ys[lo:lo + batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return epochs * len(y) / (time.perf_counter() - t0)


def learned(graph, data, epochs: int, batch: int, lr: float, granularity: str) -> float:
    s = LearnSettings(beta=1e-5, max_epochs=epochs, learning_rate=lr, granularity=granularity, batch_size=batch)
    t0 = time.perf_counter()
    fit_learned(graph.clone(), data, s)
    return epochs * len(data.train) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--loads", default="0,2")
    ap.add_argument("--granularity", default="weight", choices=("layer", "channel", "weight"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = get_dataset("digits")
    torch.manual_seed(0)
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    graph = trace(model.eval(), data.in_shape)
    print(f"digits-mlp on digits: {len(data.train)} training rows, batch {a.batch_size}, {a.epochs} epochs, "
          f"granularity {a.granularity}, 1 thread, {a.repeats} alternating repeats")
    ok = True
    for load in (int(v) for v in a.loads.split(",")):
        with busy(load) as b:
            ratios, rb, rl = [], [], []
            for r in range(a.repeats):
                m = build_model("digits-mlp", data.in_shape, data.n_classes)
                m.load_state_dict(model.state_dict())
                sb = bare(m, data.train.x, data.train.y, a.epochs, a.batch_size, 5e-3, r)
                sl = learned(graph, data, a.epochs, a.batch_size, 5e-3, a.granularity)
                rb.append(sb)
                rl.append(sl)
                ratios.append(sl / sb)
            med = statistics.median(ratios)
            ok &= med >= TARGET
            print(f"{b.label:>18}: bare {statistics.median(rb):10,.0f} samples/s  learned "
                  f"{statistics.median(rl):10,.0f} samples/s  ratio {med:.2f} (min {min(ratios):.2f}, "
                  f"max {max(ratios):.2f})  load avg {os.getloadavg()[0]:.2f}  "
                  f"{'PASS' if med >= TARGET else 'FAIL'} (target >= {TARGET})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
