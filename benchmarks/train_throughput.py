"""Training throughput of bitsmith's loop vs a bare PyTorch loop, in one run.

Same model, same in-memory tensors, same batch size, same optimizer. The bare
loop is the least code that trains: shuffle, slice, forward, backward, step.
bitsmith's loop adds what `bitsmith train` does every epoch: metrics, a
validation pass and the best/last checkpoints.

    python benchmarks/train_throughput.py [--model jsc-toy] [--dataset digits] [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from bitsmith.data import get_dataset
from bitsmith.models import build_model
from bitsmith.train import fit


def bare_loop(model, x, y, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * ((len(y) + batch_size - 1) // batch_size))
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        xs, ys = x[perm], y[perm]
        for lo in range(0, len(y), batch_size):
            loss = F.cross_entropy(model(xs[lo:lo + batch_size]), ys[lo:lo + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits-mlp")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-path")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    data = get_dataset(args.dataset, args.data_path)
    n = len(data.train)
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            torch.manual_seed(r)
            model = build_model(args.model, data.in_shape, data.n_classes)
            bare.append(bare_loop(model, data.train.x, data.train.y, args.epochs, args.batch_size, 3e-3, r))
            torch.manual_seed(r)
            model = build_model(args.model, data.in_shape, data.n_classes)
            res = fit(model, data, max_epochs=args.epochs, batch_size=args.batch_size, learning_rate=3e-3,
                      seed=r, out_dir=Path(out))
            ours.append(res.seconds)
    sps_bare = n * args.epochs / statistics.median(bare)
    sps_ours = n * args.epochs / statistics.median(ours)
    print(f"model={args.model} dataset={args.dataset} train_rows={n} batch_size={args.batch_size} "
          f"epochs={args.epochs} threads={torch.get_num_threads()} repeats={args.repeats}")
    print(f"bare PyTorch loop : {sps_bare:12,.0f} samples/s (median)")
    print(f"bitsmith fit      : {sps_ours:12,.0f} samples/s (median; incl. validation + checkpoints)")
    print(f"ratio bitsmith/bare: {sps_ours / sps_bare:.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
