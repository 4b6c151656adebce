"""A learned-width MLP trained as one autograd node over flat parameters.

A training step of a small model is mostly per-operation overhead: with a
learned width per weight, the module path (``bitsmith.learned``) dispatches
about 270 tensor operations a step where a bare float loop dispatches about
110. When the learned graph is a chain (float modules, then learned Linear
and ReLU layers, each reading the one before), ``Packed`` puts every weight
and bias in one flat tensor, their fractional bits in a second and the
activations' in a third. A step then rounds all weights at once, and the
chain's forward, its penalty and their gradients are one autograd node.

The arithmetic is the module path's (a test compares values and gradients):
round half to even, activations saturate, the width gradient is HGQ's
``-ln 2 * error``, and the penalty is EBOPs plus the bits each ReLU rounds
into. The modules' parameters become views of the flat ones, so evaluation,
freezing and exports read the trained values in place.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from bitsmith.learned import LN2, LearnedActivation, LearnedLinear, LearnedReLU, act_width, grid, int_bits_for, peak_of

DENSE_FEEDS = 1 << 22  # activations x values up to this: the feeds matrix is per value (16 MiB at most)


class Setting(NamedTuple):
    """What the activations' widths fix for as long as they stay (a few changes a run): their grids, each
    value's EBOPs multiplier (its input's bits, 1 for a bias), the bits the ReLUs round into, and which
    widths are above 0 (a clipped width has no gradient)."""

    grids: list[tuple[torch.Tensor, int, int]]  # (scale as a 0-d tensor: a Python number is wrapped each use)
    multiplier: torch.Tensor
    relu_bits: torch.Tensor
    active: torch.Tensor


class _Saved:
    """What a forward keeps for its backward when it runs outside autograd (as autograd's context does)."""

    def __init__(self, h: torch.Tensor):
        self.h = h
        self.needs_input_grad = (h.requires_grad, True, True, True, False)

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        self.saved_tensors = tensors


class _Chain(torch.autograd.Function):
    """(chain output, penalty) from the chain's input and the three flat parameters. ``Packed.step`` runs it
    in autograd; ``forward_train`` and ``backward_train`` call its forward and backward directly."""

    @staticmethod
    def forward(ctx, h, values, fracs, act_fracs, p: Packed):
        k, scale = p.integers(values, fracs)
        q = k / scale
        ak = k.abs()
        nonzero = ak.clamp(max=1)  # 1 for a nonzero integer, else 0: a float mask (bool ones cost more)
        bits = torch.log2(ak.clamp_(min=0.5)).add_(1)  # log2|k| + 1, and 0 for a zero
        st = p.setting(act_fracs)
        penalty = torch.add(torch.dot(bits, st.multiplier), st.relu_bits)
        parts = q.split_with_sizes(p.sizes)
        saved, out = [], h
        for op, i in p.ops:
            if op == "quant":
                s, lo, hi = st.grids[i]
                k_a = torch.round(out * s)
                q_a = k_a.clamp(lo, hi)
                inside = k_a == q_a
                q_a = q_a.div_(s)
                saved.append((inside, q_a - out))
                out = q_a
            else:
                w = parts[p.w_part[i]].view(p.shapes[i])
                saved.append((out, w))
                out = F.linear(out, w, None if p.b_part[i] is None else parts[p.b_part[i]])
        ctx.saved, ctx.plan, ctx.setting = saved, p, st
        ctx.save_for_backward(q, q - values, nonzero, bits)
        return out, penalty

    @staticmethod
    def backward(ctx, g_out, g_pen):
        p, st = ctx.plan, ctx.setting
        q, err_w, nonzero, bits = ctx.saved_tensors
        g_q = torch.empty_like(q)
        g_parts = g_q.split_with_sizes(p.sizes)
        g_act = [None] * len(p.acts)
        g = g_out
        for (op, i), saved in zip(reversed(p.ops), reversed(ctx.saved)):
            if op == "quant":
                inside, err = saved
                g = g * inside  # straight through inside the range, zero where saturated
                g_act[i] = torch.sum(g * err)
            else:
                a, w = saved
                torch.mm(g.t(), a, out=g_parts[p.w_part[i]].view(p.shapes[i]))
                if p.b_part[i] is not None:
                    torch.sum(g, 0, out=g_parts[p.b_part[i]])
                g = g @ w
        # the penalty: d EBOPs / d a value's bits is its input's bits (1 for a bias); the bits are
        # log2|q| + frac + 1 on nonzero values, and d log2|q| / dq = 1 / (q ln 2) passes to w straight through
        g_bits = st.multiplier * g_pen * nonzero
        g_fr = torch.addcmul(g_bits, g_q, err_w, value=-LN2)
        g_values = torch.addcdiv(g_q, g_bits, q.add(1).sub_(nonzero), value=1 / LN2)  # q + 1 - nonzero: q, or 1
        if p.expand is not None:
            g_fr = torch.zeros(p.n_fracs, dtype=g_fr.dtype, device=g_fr.device).index_add_(0, p.expand, g_fr)
        # d penalty / d an activation's bits: the weight bits it feeds and a ReLU's channels
        g_acts = torch.stack(g_act).mul_(-LN2).add_(p.fed_bits(bits).add_(p.channels).mul_(st.active).mul_(g_pen))
        return g if ctx.needs_input_grad[0] else None, g_values, g_fr, g_acts, None


class Packed:
    """The flat parameters of a learned chain and its training step (build one with ``pack``).

    The activations' integer bits are read when it is built and set by its ``calibrate``."""

    def __init__(self, prefix: list[nn.Module], ops: list[tuple[str, int]], linears: list[LearnedLinear],
                 acts: list[LearnedActivation], relus: list[tuple[int, int]]):
        self.prefix, self.ops, self.linears, self.acts, self.relus = prefix, ops, linears, acts, relus
        dev = linears[0].weight.device
        self.signed = [int(a.signed) for a in acts]
        self.int_bits = [int(a.int_bits) for a in acts]
        self.shapes = [tuple(m.weight.shape) for m in linears]
        pieces, fracs, self.seg_act, self.w_part, self.b_part = [], [], [], [], []
        for m in linears:  # each layer's weight, then its bias: the EBOPs multiplier of a bias is 1
            for t, f, act, part in ((m.weight, m.w_frac, acts.index(m.input_act()), self.w_part),
                                    (m.bias, m.b_frac, None, self.b_part)):
                part.append(None if t is None else len(pieces))
                if t is not None:
                    pieces.append(t)
                    fracs.append(f)
                    self.seg_act.append(act)
        self.sizes = [t.numel() for t in pieces]
        self.lengths = torch.tensor(self.sizes, device=dev)
        self.values = nn.Parameter(torch.cat([t.detach().reshape(-1) for t in pieces]))
        self.fracs = nn.Parameter(torch.cat([f.detach().reshape(-1) for f in fracs]))
        self.act_fracs = nn.Parameter(torch.stack([a.frac.detach() for a in acts]))
        self.n_fracs = self.fracs.numel()
        self.expand = None  # per weight: each value has its own entry; per channel or layer, it reads a shared one
        if any(f.numel() != t.numel() for f, t in zip(fracs, pieces)):
            starts = torch.tensor([0] + [f.numel() for f in fracs]).cumsum(0).tolist()
            self.expand = torch.cat([(torch.arange(f.numel(), device=dev).reshape(f.shape) + s0)
                                     .expand(t.shape).reshape(-1) for f, t, s0 in zip(fracs, pieces, starts)])
        # which values each activation feeds: per value when small (one matrix-vector product sums their bits),
        # else per tensor (the bits are summed per tensor first)
        self._per_value = len(acts) * len(self.values) <= DENSE_FEEDS
        self.tensor_of = None if self._per_value else torch.repeat_interleave(
            torch.arange(len(pieces), device=dev), self.lengths)
        self.feeds = torch.zeros(len(acts), len(self.values) if self._per_value else len(pieces), device=dev)
        start = 0
        for s, (j, n) in enumerate(zip(self.seg_act, self.sizes)):
            if j is not None and self._per_value:
                self.feeds[j, start:start + n] = 1.0
            elif j is not None:
                self.feeds[j, s] = 1.0
            start += n
        self.channels = torch.zeros(len(acts), device=dev)
        for j, c in relus:
            self.channels[j] = float(c)
        views = self.values.split(self.sizes) + self.fracs.split([f.numel() for f in fracs])
        for t, view in zip(pieces + fracs, views):
            t.data = view.view(t.shape)  # the modules read the flat parameters: what trains is what they hold
        for j, a in enumerate(acts):
            a.frac.data = self.act_fracs[j]
        self._settings: dict[tuple[int, ...], Setting] = {}

    def integers(self, values: torch.Tensor, fracs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(each value's integer on its grid, the grid's scale ``2**round(frac)``): the value is their ratio."""
        scale = torch.exp2(torch.round(fracs if self.expand is None else fracs[self.expand]))
        return torch.round(values * scale), scale

    def fed_bits(self, bits: torch.Tensor) -> torch.Tensor:
        """Per activation, the bits of the weights it feeds."""
        if self._per_value:
            return torch.mv(self.feeds, bits)
        per_tensor = torch.zeros(len(self.sizes), dtype=bits.dtype, device=bits.device)
        return torch.mv(self.feeds, per_tensor.index_add_(0, self.tensor_of, bits))

    def setting(self, act_fracs: torch.Tensor) -> Setting:
        """The ``Setting`` of the activations' widths now, made once per set of rounded widths."""
        key = tuple(round(f) for f in act_fracs.tolist())
        st = self._settings.get(key)
        if st is None:
            like = dict(dtype=self.values.dtype, device=self.values.device)
            grids, a_bits = [], []
            for f, i, s in zip(key, self.int_bits, self.signed):
                scale, lo, hi = grid(f, i, bool(s))
                grids.append((torch.tensor(scale, **like), lo, hi))
                a_bits.append(act_width(f, i, bool(s)))
            seg = torch.tensor([1 if j is None else a_bits[j] for j in self.seg_act], **like)
            st = self._settings[key] = Setting(
                grids, torch.repeat_interleave(seg, self.lengths),
                torch.tensor(float(sum(c * a_bits[j] for j, c in self.relus)), **like),
                torch.tensor([float(b > s) for b, s in zip(a_bits, self.signed)], **like))
        return st

    def parameters(self) -> list[nn.Parameter]:
        return [self.values, self.fracs, self.act_fracs] + [p for m in self.prefix for p in m.parameters()]

    def _prefix(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.prefix:
            x = m(x)
        return x

    def step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the chain's output, the penalty) of a training batch, differentiable (autograd)."""
        return _Chain.apply(self._prefix(x), self.values, self.fracs, self.act_fracs, self)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, _Saved]:
        """``step`` without autograd (a training step's autograd is a good share of its time): (output,
        penalty, what ``backward_train`` needs). The float modules before the chain still run in autograd."""
        h = self._prefix(x)
        saved = _Saved(h)
        with torch.no_grad():
            out, penalty = _Chain.forward(saved, h, self.values, self.fracs, self.act_fracs, self)
        return out, penalty, saved

    def backward_train(self, saved: _Saved, g_out: torch.Tensor, g_penalty: torch.Tensor) -> None:
        """Set the parameters' gradients, given those of the output and the penalty (a 0-d tensor)."""
        with torch.no_grad():
            g_h, self.values.grad, self.fracs.grad, self.act_fracs.grad, _ = _Chain.backward(saved, g_out,
                                                                                             g_penalty)
        if g_h is not None:
            saved.h.backward(g_h)  # into the float modules' parameters

    @torch.no_grad()
    def _forward(self, x: torch.Tensor, observe: list | None = None, largest: bool = False) -> torch.Tensor:
        """The quantized forward; or with ``observe`` (a list per activation to fill), the float activations'
        magnitudes (only the largest, with ``largest``), as ``calibrate`` sees them. The caller sets the
        mode (eval)."""
        h = self._prefix(x)
        st = self.setting(self.act_fracs)
        k, scale = self.integers(self.values, self.fracs)
        parts = k.div_(scale).split(self.sizes)
        for op, i in self.ops:
            if op == "quant" and observe is not None:
                h = h if self.signed[i] else h.clamp(min=0)
                observe[i].append(h.abs().amax().reshape(1) if largest else h.abs().flatten())
            elif op == "quant":
                s, lo, hi = st.grids[i]
                h = (h * s).round_().clamp_(lo, hi).div_(s)
            else:
                w = parts[self.w_part[i]].view(self.shapes[i])
                h = F.linear(h, w, None if self.b_part[i] is None else parts[self.b_part[i]])
        return h

    def calibrate(self, x: torch.Tensor, quantile: float = 1.0, batch: int = 65536) -> None:
        """``bitsmith.learn.calibrate``'s integer bits, from the flat parameters."""
        seen: list[list[torch.Tensor]] = [[] for _ in self.acts]
        for i in range(0, len(x), batch):
            self._forward(x[i:i + batch], seen, largest=quantile >= 1)
        for j, a in enumerate(self.acts):
            self.int_bits[j] = int_bits_for(peak_of(seen[j], quantile))
            a.int_bits.fill_(self.int_bits[j])
        self._settings.clear()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized forward on ``x`` (set eval mode first)."""
        return self._forward(x)


def pack(gm: nn.Module, sample: torch.Tensor) -> Packed | None:
    """The packed form of a learned graph module, or None when it is not a chain of 2-D learned Linear and
    ReLU layers after float modules (a CNN, a branch, a function call): the module path trains those.
    ``sample``: a row or two of the input, to follow the shapes."""
    nodes = list(gm.graph.nodes)
    if len(nodes) < 3 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        return None
    prefix, ops, linears, acts, relus = [], [], [], [], []
    prev, h = nodes[0], sample
    for node in nodes[1:-1]:
        if node.op != "call_module" or node.args != (prev,) or node.kwargs or len(node.users) != 1:
            return None
        m = gm.get_submodule(node.target)
        if isinstance(m, LearnedReLU):
            relus.append((len(acts), h[0].numel()))
            ops.append(("quant", len(acts)))
            acts.append(m.act)
        elif isinstance(m, LearnedLinear):
            if h.dim() != 2:
                return None
            if m.act is not None:
                ops.append(("quant", len(acts)))
                acts.append(m.act)
            elif not ops or ops[-1][0] != "quant" or m.producer is not acts[-1]:
                return None
            ops.append(("linear", len(linears)))
            linears.append(m)
            h = h.new_zeros(len(h), m.out_features)
        elif ops or any(isinstance(c, LearnedActivation) for c in m.modules()):
            return None  # a float module between learned ones, or a learned one this path does not take
        else:
            prefix.append(m)
            h = _probe(m, h)
        prev = node
    if nodes[-1].args != (prev,) or not linears:
        return None
    return Packed(prefix, ops, linears, acts, relus)


@torch.no_grad()
def _probe(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The module's output on ``h``, for its shape, in eval mode (BatchNorm in training takes no single row
    and would update its running statistics)."""
    modes = [(c, c.training) for c in m.modules()]
    m.eval()
    try:
        return m(h)
    finally:
        for c, mode in modes:
            c.training = mode
