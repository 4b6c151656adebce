"""Training with learned widths: a graph -> its learned form -> trained against a cost penalty -> a plain
fixed-point graph (``QLinear``/``QConv2d``/``QReLU``, one format per layer) that every other part of
bitsmith (test, transform, the luts metric, exports) takes as it takes any quantized design.

The loss is ``cross-entropy + beta * EBOPs``: EBOPs sums, over each kernel, each weight's bits times its
input's bits (``bitsmith.learned``), which tracks the distributed-arithmetic LUT cost. The frozen design's
weights are the learned quantized values; each layer's format is the narrowest that holds them all (so its
widest channel), and pruned weights are zeros.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from bitsmith.cost.network import relu_fed
from bitsmith.data import DataSplits
from bitsmith.errors import BitsmithError, CandidateError
from bitsmith.graph import Graph, with_modules
from bitsmith.learned import (
    GRANULARITIES,
    LEARNED,
    LearnedActivation,
    LearnedReLU,
    _LearnedKernel,
    int_bits_for,
    peak_of,
)
from bitsmith.packed import pack
from bitsmith.passes import apply_passes, parse_pass
from bitsmith.passes.quantize import MAX_WIDTH
from bitsmith.quant import Fixed, IntegerConfig, float_type
from bitsmith.train import eval_mode, evaluate, seed_everything

CHANCE_MARGIN = 0.05  # a validation accuracy within this of always guessing the commonest class is a collapse


@dataclass(frozen=True)
class LearnSettings:
    beta: float
    max_epochs: int
    learning_rate: float
    granularity: str = "weight"
    batch_size: int = 64
    init_weight_frac: float = 6.0
    init_act_frac: float = 4.0
    range_quantile: float = 1.0  # activation ranges: this quantile of the training split's magnitudes
    seed: int = 0
    distill: float = 0.0  # weight of the loaded model's soft labels in the loss (distillation), 0 to 1
    temperature: float = 2.0  # of those soft labels

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise BitsmithError(f"granularity {self.granularity!r}: use one of {', '.join(GRANULARITIES)}")
        if not 0.5 <= self.range_quantile <= 1:
            raise BitsmithError(f"range_quantile {self.range_quantile}: use 0.5 to 1 (1: the largest value)")
        if not 0 <= self.distill <= 1:
            raise BitsmithError(f"distill {self.distill}: use 0 (labels only) to 1 (the loaded model's soft labels "
                                f"only)")
        if not self.temperature > 0:
            raise BitsmithError(f"temperature {self.temperature}: use a number above 0 (2 is usual)")


class Collapsed(CandidateError):
    """The design fell to chance accuracy or to a 0-bit activation: nothing to keep."""


@dataclass
class LearnResult:
    graph: Graph  # the frozen fixed-point design
    passes: list  # [name, config] pairs that rebuild it from the base model (its weights from the state dict)
    history: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0

    @property
    def pruned_share(self) -> float:
        """The share of kernel weights that are zero in the frozen design."""
        ws = [m.weight for m in self.graph.gm.modules() if issubclass(float_type(m), (nn.Linear, nn.Conv2d))
              and hasattr(m, "qconfig")]
        total = sum(w.numel() for w in ws)
        return round(sum(int((w == 0).sum()) for w in ws) / total, 6) if total else 0.0


def to_learned(graph: Graph, s: LearnSettings) -> Graph:
    """The graph with BatchNorms folded and Linear, Conv2d and ReLU modules in their learned form."""
    graph, _ = apply_passes(graph, [("fold_batchnorm", parse_pass("fold_batchnorm", {}))])
    gm = graph.gm
    new: dict[str, nn.Module] = {}
    links = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        base = float_type(module)
        if base not in LEARNED:
            continue
        if base is nn.ReLU:
            new[node.target] = LearnedReLU(s.init_act_frac)
            continue
        producer = node.all_input_nodes[0] if len(node.all_input_nodes) == 1 else None
        fed_by_relu = relu_fed(graph, node) and producer.op == "call_module"  # a ReLU module, made learned here
        new[node.target] = LEARNED[base](module, s.granularity, s.init_weight_frac, not fed_by_relu, s.init_act_frac)
        if fed_by_relu:
            links.append((node.target, producer.target))
    for kernel, relu in links:
        new[kernel].producer = new[relu].act
    if not any(isinstance(m, _LearnedKernel) for m in new.values()):
        raise BitsmithError("learned widths need at least one Linear or Conv2d layer")
    return with_modules(graph, new, reshape=False)


def _acts(gm: nn.Module) -> list[LearnedActivation]:
    return [m for m in gm.modules() if isinstance(m, LearnedActivation)]


def _kernels(gm: nn.Module) -> list[_LearnedKernel]:
    return [m for m in gm.modules() if isinstance(m, _LearnedKernel)]


@torch.no_grad()
def calibrate(gm: nn.Module, x: torch.Tensor, quantile: float = 1.0, batch: int = 65536) -> None:
    """Each activation's integer bits from the ``quantile`` of the magnitudes it takes on ``x`` (the training
    split; 1: the largest, so nothing there saturates)."""
    acts = _acts(gm)
    for a in acts:
        a.observing, a.seen = True, []
    try:
        with eval_mode(gm):
            for i in range(0, len(x), batch):
                gm(x[i:i + batch])
        for a in acts:
            a.int_bits.fill_(int_bits_for(peak_of(a.seen, quantile)))
    finally:
        for a in acts:
            a.observing, a.seen = False, []


def ebops(gm: nn.Module) -> torch.Tensor:
    """The penalty of the last forward pass: each kernel's EBOPs, plus the bits each ReLU rounds into (the
    rounding and saturating logic between layers, often a quarter of a small design's LUTs)."""
    return sum(k.ebops() for k in _kernels(gm)) + sum(m.rounding_bits() for m in gm.modules()
                                                      if isinstance(m, LearnedReLU))


def chance(data: DataSplits) -> float:
    """The validation accuracy of always answering the commonest training class."""
    y = data.train.y
    common = torch.bincount(y).argmax()
    return float((data.val.y == common).float().mean())


def fit_learned(graph: Graph, data: DataSplits, s: LearnSettings, device: torch.device | str = "cpu",
                report: Callable[[int, float], None] | None = None) -> tuple[Graph, list[dict[str, float]]]:
    """Train the learned form of ``graph``; ``report(epoch, val_accuracy)`` may raise to stop early.

    Raises ``Collapsed`` when the validation accuracy falls to chance.
    """
    gen = seed_everything(s.seed)
    # the loaded model's soft labels, before its modules are shared with (and trained in) the learned graph
    soft = _soft_labels(graph, data.train.x, s).to(device) if s.distill else None
    learned = to_learned(graph, s)
    gm = learned.gm.to(device)
    x_all, y_all = data.train.x.to(device), data.train.y.to(device)
    run = _trainer(gm, data, x_all, s, device)
    run.recalibrate()
    gm.train()
    opt = torch.optim.Adam(run.params, lr=s.learning_rate, fused=True)  # one kernel, not ops per tensor
    n = len(x_all)
    per_epoch = max(1, math.ceil(n / s.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=per_epoch * s.max_epochs)
    floor = chance(data) + CHANCE_MARGIN
    # A model that starts above chance and falls to it has collapsed; one that starts at chance (untrained)
    # is given half its epochs to rise.
    grace = 0 if run.val_accuracy() > floor else s.max_epochs // 2
    history = []
    for epoch in range(1, s.max_epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)
        xs, ys, ss = x_all[perm], y_all[perm], (None if soft is None else soft[perm])
        total, seen = torch.zeros((), device=device), 0
        for b in range(per_epoch):
            rows = slice(b * s.batch_size, (b + 1) * s.batch_size)
            y = ys[rows]
            opt.zero_grad(set_to_none=True)
            loss, cost = run.train_batch(xs[rows], y, None if ss is None else ss[rows])
            opt.step()
            sched.step()
            total.add_(loss, alpha=len(y))
            seen += len(y)
        run.recalibrate()
        accuracy = run.val_accuracy()
        row = {"epoch": epoch, "loss": total.item() / seen, "ebops": float(cost.detach()), "val_accuracy": accuracy}
        history.append(row)
        if not math.isfinite(row["loss"]):
            raise Collapsed(f"training diverged in epoch {epoch} (loss {row['loss']}); lower the learning rate")
        if accuracy <= floor and epoch > grace:
            raise Collapsed(f"collapsed: validation accuracy {accuracy:.3f} after epoch {epoch} is at chance "
                            f"({floor - CHANCE_MARGIN:.3f} + {CHANCE_MARGIN}); lower the penalty strength beta "
                            f"(now {s.beta:g})")
        if report is not None:
            report(epoch, accuracy)
    return learned, history


class _Trainer(NamedTuple):
    train_batch: Callable  # (x, y, soft labels or None) -> (loss, penalty), the gradients set
    val_accuracy: Callable[[], float]
    recalibrate: Callable[[], None]
    params: list


def _trainer(gm: nn.Module, data: DataSplits, x_all: torch.Tensor, s: LearnSettings, device) -> _Trainer:
    """How the learned graph trains: an MLP packed, without autograd (``bitsmith.packed``), anything else
    module by module."""
    flat = pack(gm, x_all[:2])
    if flat is None:
        def train_batch(x, y, soft):
            logits = gm(x)
            cost = ebops(gm)  # the penalty of this forward's widths
            loss = _loss(logits, y, soft, s) + s.beta * cost
            loss.backward()
            return loss.detach(), cost

        return _Trainer(train_batch, lambda: evaluate(gm, data.val, device)["accuracy"],
                        lambda: calibrate(gm, x_all, s.range_quantile), list(gm.parameters()))
    beta = torch.tensor(s.beta, device=device)
    val_x, val_y = data.val.x.to(device), data.val.y.to(device)

    def train_batch(x, y, soft):
        logits, cost, saved = flat.forward_train(x)
        loss, g_logits = _loss_and_grad(logits, y, soft, s)
        flat.backward_train(saved, g_logits, beta)
        return loss + beta * cost, cost

    def val_accuracy():
        with eval_mode(gm):
            return int((flat.predict(val_x).argmax(1) == val_y).sum()) / max(len(val_y), 1)

    def recalibrate():
        with eval_mode(gm):
            flat.calibrate(x_all, s.range_quantile)

    return _Trainer(train_batch, val_accuracy, recalibrate, flat.parameters())


def _soft_labels(graph: Graph, x: torch.Tensor, s: LearnSettings) -> torch.Tensor:
    """The loaded model's class probabilities on the training rows at the temperature: its soft labels."""
    with torch.no_grad(), eval_mode(graph.gm):
        return F.softmax(graph.gm(x) / s.temperature, dim=1)


def _loss(logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None, s: LearnSettings) -> torch.Tensor:
    """Cross-entropy on the labels and, weighted by ``distill``, on the soft labels (Hinton et al. 2015: the
    divergence at temperature T, times T squared so its gradient keeps its scale)."""
    if soft is None:
        return F.cross_entropy(logits, y)
    kd = F.kl_div(F.log_softmax(logits / s.temperature, dim=1), soft, reduction="batchmean")
    return (1 - s.distill) * F.cross_entropy(logits, y) + s.distill * s.temperature ** 2 * kd


def _loss_and_grad(logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None,
                   s: LearnSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """``_loss`` and its gradient by the logits, in closed form (the packed step runs no autograd; a test
    compares them): softmax minus the one-hot labels, and for the soft labels T (softmax(z / T) - soft)."""
    with torch.no_grad():
        n = len(y)
        log_p = F.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_p, y)
        grad = log_p.exp_().sub_(F.one_hot(y, logits.shape[1])).div_(n)
        if soft is None:
            return loss, grad
        t = s.temperature
        log_pt = F.log_softmax(logits / t, dim=1)
        kd = F.kl_div(log_pt, soft, reduction="batchmean")
        grad = grad.mul_(1 - s.distill).add_(log_pt.exp_().sub_(soft), alpha=s.distill * t / n)
        return (1 - s.distill) * loss + s.distill * t * t * kd, grad


def _fixed_of(values: torch.Tensor, max_frac: int, where: str) -> Fixed:
    """The narrowest signed format holding every value (each already on a grid of at most ``max_frac`` bits),
    at least 2 bits: QONNX runs a 1-bit signed Quant as bipolar {-1, +1}."""
    v = values.detach().double()
    if not bool((v != 0).any()):
        return Fixed(2, 0)
    frac = max_frac
    while frac > -64 and bool((torch.remainder(v * 2.0 ** (frac - 1), 1) == 0).all()):
        frac -= 1  # a coarser grid holds them all
    k = torch.round(v * 2.0 ** frac)
    top = max(float(k.max()), -float(k.min()) - 1, 0)
    width = max(int(top).bit_length() + 1, 2)
    if width > MAX_WIDTH:
        raise CandidateError(f"{where} needs {width}-bit values (at most {MAX_WIDTH}); lower init_weight_frac")
    return Fixed(width, frac)


def freeze(learned: Graph, base: Graph) -> tuple[Graph, list]:
    """The fixed-point design the learned graph computes, bit for bit, as passes over ``base``."""
    gm = learned.gm
    cfg: dict[str, Any] = {"by": "name"}
    values: dict[str, torch.Tensor] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = gm.get_submodule(node.target)
        if isinstance(m, LearnedReLU):
            f = m.act.fixed()
            if f.width < 1:
                raise Collapsed(f"collapsed: the activations of {node.name!r} have 0 bits")
            cfg[node.name] = {"config": IntegerConfig(data_in=f).as_dict()}
        elif isinstance(m, _LearnedKernel):
            act = m.input_act().fixed()
            data_in = act if act.signed else Fixed(act.width + 1, act.frac)  # the ReLU's grid, as signed
            if act.width < 1:
                raise Collapsed(f"collapsed: the input of {node.name!r} has 0 bits")
            with torch.no_grad():
                w = m.q_weight().detach().cpu()
                b = m.q_bias().detach().cpu() if m.bias is not None else None
            fmts = {"data_in": data_in,
                    "weight": _fixed_of(w, int(torch.round(m.w_frac.detach()).max()), f"layer {node.name!r}")}
            if b is not None:
                fmts["bias"] = _fixed_of(b, int(torch.round(m.b_frac.detach()).max()), f"layer {node.name!r}")
            cfg[node.name] = {"config": IntegerConfig(**fmts).as_dict()}
            values[node.target] = (w, b)
    folded, _ = apply_passes(base, [("fold_batchnorm", parse_pass("fold_batchnorm", {}))])
    plain = {}
    for target, (w, b) in values.items():
        mod = copy.deepcopy(folded.gm.get_submodule(target))
        mod.weight = nn.Parameter(w.to(mod.weight.dtype))
        if b is not None:
            mod.bias = nn.Parameter(b.to(mod.bias.dtype))
        plain[target] = mod
    graph = with_modules(folded, plain, reshape=False)
    passes = [["fold_batchnorm", {}], ["quantize", cfg]]
    graph, _ = apply_passes(graph, [("quantize", parse_pass("quantize", cfg))])
    return graph, passes


def learn(base: Graph, data: DataSplits, s: LearnSettings, device: torch.device | str = "cpu",
          report: Callable[[int, float], None] | None = None) -> LearnResult:
    """Train with learned widths from ``base``'s weights and return the frozen design."""
    t0 = time.perf_counter()
    start = base.clone()
    learned, history = fit_learned(start, data, s, device, report)
    learned.gm.to("cpu")
    graph, passes = freeze(learned, base)
    return LearnResult(graph, passes, history, time.perf_counter() - t0)
