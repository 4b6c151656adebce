"""Training with learned widths vs a bare PyTorch loop training the same float model, in one run.

Same model (digits-mlp), same in-memory tensors, batch size, optimizer (Adam) and cosine schedule. The
bare loop is the least code that trains: shuffle, slice, forward, backward, step. The learned loop is
``bitsmith.learn.fit_learned``: learned quantizers on every weight, bias and activation, the EBOPs
penalty each step (an MLP trains packed, outside autograd: ``bitsmith.packed``), and once per
epoch the calibration of activation ranges and a validation pass (the pruner needs it). Both run on one
intra-op thread, idle and with busy background processes (``--loads``); the figure is the median ratio
of samples/s over ``--repeats`` alternating runs.

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
from train_throughput import bare_loop

from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.learn import LearnSettings, _loss_and_grad, calibrate, ebops, fit_learned, to_learned
from bitsmith.models import build_model
from bitsmith.packed import pack

TARGET = 0.8


def bare(model, x, y, epochs: int, batch: int, lr: float, seed: int) -> float:
    """samples/s of train_throughput.py's bare loop (the least code that trains)."""
    return epochs * len(y) / bare_loop(model, x, y, epochs, batch, lr, seed)


def ops_per_step(train_batch, params, x, y, fused: bool) -> int:
    """Tensor operations one training step dispatches: ``train_batch(x, y)`` (forward and gradients) and the
    optimizer's step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    opt = torch.optim.Adam(params, lr=1e-3, fused=fused)  # as each loop makes it

    def step():
        opt.zero_grad(set_to_none=True)
        train_batch(x, y)
        opt.step()

    step()  # the optimizer's state is made in the first step
    with Count():
        step()
    return Count.n


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
    x, y = data.train.x[:a.batch_size], data.train.y[:a.batch_size]
    lg = to_learned(graph, LearnSettings(beta=1e-5, max_epochs=1, learning_rate=1e-3, granularity=a.granularity)).gm
    calibrate(lg, data.train.x)
    lg.train()
    plain = build_model("digits-mlp", data.in_shape, data.n_classes).train()
    bare_ops = ops_per_step(lambda v, t: F.cross_entropy(plain(v), t).backward(), plain.parameters(), x, y, False)
    module_ops = ops_per_step(lambda v, t: (F.cross_entropy(lg(v), t) + 1e-5 * ebops(lg)).backward(),
                              lg.parameters(), x, y, True)
    flat = pack(lg, x[:2])  # what fit_learned trains an MLP with: no autograd, the loss's gradient in closed form
    settings, beta = LearnSettings(beta=1e-5, max_epochs=1, learning_rate=1e-3), torch.tensor(1e-5)

    def packed_batch(v, t):
        logits, _, saved = flat.forward_train(v)
        flat.backward_train(saved, _loss_and_grad(logits, t, None, settings)[1], beta)

    packed_ops = ops_per_step(packed_batch, flat.parameters(), x, y, True)
    print(f"tensor operations per step: bare {bare_ops}, learned {packed_ops} "
          f"(module by module, as a CNN trains: {module_ops})")
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
