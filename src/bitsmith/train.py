"""Training and evaluation loops over in-memory tensors (batches are slices)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bitsmith.checkpoint import save_checkpoint
from bitsmith.data import DataSplits, Split
from bitsmith.errors import BitsmithError

EVAL_BATCH = 65536  # large: evaluation holds no graph, and fewer batches cost less per sample


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (init, dropout) and return a generator for shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Every module in eval mode inside the block, as it was after. Only the modules that need it are
    switched: ``model.eval()`` and ``model.train()`` walk every module, a good share of a small search trial."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield model
    finally:
        for m in training:
            m.training = True


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, device: torch.device | str = "cpu",
             batch_size: int = EVAL_BATCH, num_samples: int | None = None,
             average: str = "micro") -> dict[str, float]:
    """Mean cross-entropy loss and accuracy on (the first ``num_samples`` of) a split.

    ``average = "micro"``: the fraction of rows classified correctly. ``"macro"``:
    the mean over classes of each class's recall (classes neither present nor
    predicted left out), as torchmetrics' MulticlassAccuracy, and so MASE, reports.
    """
    with eval_mode(model):
        n, loss, correct, per_class = _sums(model, split, device, batch_size, num_samples, average)
    accuracy = correct.item() / max(n, 1)
    if per_class is not None:
        hit, support, predicted = per_class.double()
        seen = (support + predicted) > 0
        accuracy = (hit[seen] / support[seen].clamp(min=1)).mean().item()
    return {"loss": loss.item() / max(n, 1), "accuracy": accuracy}


def _sums(model, split: Split, device, batch_size: int, num_samples: int | None, average: str):
    """Rows, summed loss, correct predictions and (macro) per-class counts over the first rows of a split."""
    n = len(split) if num_samples is None else min(num_samples, len(split))
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    per_class = None
    for start in range(0, n, batch_size):
        x = split.x[start:min(start + batch_size, n)].to(device, non_blocking=True)
        y = split.y[start:min(start + batch_size, n)].to(device, non_blocking=True)
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.argmax(1)
        correct += (pred == y).sum()
        if average == "macro":
            k = logits.shape[1]
            counts = torch.stack([torch.bincount(y[pred == y], minlength=k), torch.bincount(y, minlength=k),
                                  torch.bincount(pred, minlength=k)])
            per_class = counts if per_class is None else per_class + counts
    return n, loss, correct, per_class


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = model.parameters()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


class Diverged(BitsmithError):
    """Training reached a non-finite loss (most often: the learning rate is too high)."""


def finite_weights(model: nn.Module) -> bool:
    return all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


@dataclass
class FitResult:
    best_path: Path | None
    last_path: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    samples: int = 0


def fit(model: nn.Module, data: DataSplits, *, max_epochs: int, batch_size: int, learning_rate: float,
        optimizer: str = "adam", weight_decay: float = 0.0, scheduler: str = "cosine", seed: int = 0,
        device: torch.device | str = "cpu", max_steps: int | None = None, out_dir: Path | None = None,
        meta: dict | None = None, progress=None, log_every_n_steps: int = 50) -> FitResult:
    """Train ``model`` on ``data.train``; keep the best (by validation loss) and last checkpoints.

    ``progress`` is an optional callable ``(step, total, metrics)`` for display. Raises
    ``Diverged`` on a non-finite loss, after keeping the best checkpoint of the epochs before.
    """
    n = len(data.train)
    if n == 0 or len(data.val) == 0:
        raise BitsmithError(f"data set {data.name!r} has an empty {'training' if n == 0 else 'validation'} "
                            f"split; give more rows")
    gen = seed_everything(seed)
    model.to(device).train()
    opt = make_optimizer(model, optimizer, learning_rate, weight_decay)
    x_all, y_all = data.train.x.to(device), data.train.y.to(device)
    # A last batch of one sample breaks BatchNorm in training mode: fold it into the previous one.
    per_epoch = max(1, n // batch_size if n % batch_size == 1 else math.ceil(n / batch_size))
    total = per_epoch * max_epochs if max_steps is None else min(per_epoch * max_epochs, max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) if scheduler == "cosine" else None
    result = FitResult(None, None)
    best, best_state, info = math.inf, None, {}
    diverged = ""  # what went non-finite, and when
    step = 0
    start = time.perf_counter()
    try:
        for epoch in range(max_epochs):
            perm = torch.randperm(n, generator=gen).to(device)
            xs, ys = x_all[perm], y_all[perm]
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            for b in range(per_epoch):
                lo, hi = b * batch_size, (n if b == per_epoch - 1 else (b + 1) * batch_size)
                x, y = xs[lo:hi], ys[lo:hi]
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                step += 1
                if progress is not None and step % log_every_n_steps == 0:
                    progress(step, total, {"loss": loss_sum.item() / seen, "acc": correct.item() / seen})
                if step >= total:
                    break
            result.samples += seen
            # Checked once per epoch: a per-step check would sync the device every step.
            train_loss = loss_sum.item() / seen
            if not math.isfinite(train_loss):
                diverged = f"training diverged in epoch {epoch + 1} (by step {step}): training loss {train_loss}"
                break
            val = evaluate(model, data.val, device)
            if not math.isfinite(val["loss"]):
                diverged = f"training diverged in epoch {epoch + 1} (by step {step}): validation loss {val['loss']}"
                break
            row = {"epoch": epoch + 1, "loss": train_loss, "accuracy": correct.item() / seen,
                   "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            result.history.append(row)
            if progress is not None:
                progress(step, total, {"loss": row["loss"], "acc": row["accuracy"],
                                       "val_loss": row["val_loss"], "val_acc": row["val_accuracy"]})
            info = {**(meta or {}), "epoch": epoch + 1, "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
            if val["loss"] < best:  # kept in memory; written once at the end (or on Ctrl-C)
                best = val["loss"]
                best_state = ({k: v.detach().clone() for k, v in model.state_dict().items()}, info)
            if step >= total:
                break
    finally:
        if out_dir is not None and best_state is not None:
            # Never write NaN weights (nor over an older run's checkpoint): skip last.ckpt then.
            if not diverged and finite_weights(model):
                result.last_path = save_checkpoint(out_dir / "last.ckpt", model.state_dict(), info)
            result.best_path = save_checkpoint(out_dir / "best.ckpt", *best_state)
    result.seconds = time.perf_counter() - start
    result.steps = step
    if diverged:
        kept = ""
        if result.best_path is not None:
            kept = f"\nkept the best checkpoint from epoch {best_state[1]['epoch']} at {result.best_path}"
        elif out_dir is not None:
            kept = "\nno epoch ended with finite losses, so no checkpoint was written"
        raise Diverged(f"{diverged}; lower --learning-rate / learning_rate (now {learning_rate:g}){kept}")
    return result
