"""``latency``: the host's time to run the simulated (fake-quantized) candidate.

Two figures per trial: the time of one sample at batch size 1 (``latency``, ms)
and the samples per second at a stated batch size (``throughput``). Each is the
median over *blocks* of ``k`` back-to-back calls, ``k`` chosen so that a block
lasts at least ``block_ms`` (well above the timer's resolution and its own
cost). Blocks are taken until the median is known to within ``rel_tolerance``
(its confidence half-width from the blocks' interquartile range; checked after
``min_repeats`` blocks) or a cap is reached. A block that the scheduler
interrupts is an outlier, and the median of many short blocks ignores it: that
is what makes the figure repeatable on a busy machine, where a few long timings
are not. The stop rule bounds the median's uncertainty rather than the spread
itself: the spread of one call's time on a shared host does not shrink with
more blocks (it was 10-20% here), so a rule on the spread alone would always run
to the cap.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import AliasChoices, Field, model_validator

from bitsmith.schema import Table
from bitsmith.search.runners.base import Context, Runner, register_runner


class LatencySettings(Table):
    # The stated batch size of `throughput` (latency is always at batch size 1).
    batch_size: int = Field(512, ge=1, le=1_000_000)
    # Untimed calls before each measurement (also used to choose k). MASE: num_warmup_batches.
    warmup: int = Field(3, ge=0, le=10_000, validation_alias=AliasChoices("warmup", "num_warmup_batches"))
    # Blocks always timed before the tolerance may stop. MASE's num_batches (its exact count) is nearest.
    min_repeats: int = Field(10, ge=1, le=100_000,
                             validation_alias=AliasChoices("min_repeats", "repeats", "num_batches"))
    # Caps, whichever comes first once min_repeats blocks are done; the time counts from the first warm-up call.
    max_repeats: int = Field(200, ge=1, le=1_000_000)
    max_time_ms: float = Field(25.0, gt=0, le=3_600_000)
    # Stop once the median is known to within this fraction: NOTCH * IQR / sqrt(blocks) <= rel_tolerance * median.
    rel_tolerance: float = Field(0.05, gt=0, le=10)
    # The shortest block: timer resolution and overhead are ~100 ns, so 0.2 ms keeps them below 0.1%.
    block_ms: float = Field(0.2, gt=0, le=60_000)
    # Intra-op threads for the whole search, set once at its start (never per trial).
    num_threads: int | None = Field(None, ge=1, le=1024)

    @model_validator(mode="after")
    def _repeats_in_order(self) -> LatencySettings:
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats = {self.max_repeats} is below min_repeats = {self.min_repeats}")
        return self


@dataclass(frozen=True)
class Timing:
    """One measurement: per-call times over blocks of ``calls_per_block`` calls."""

    median_ms: float
    iqr_ms: float
    blocks: list[float]  # ms per call, one entry per block, in the order timed
    calls_per_block: int
    converged: bool  # stopped by the tolerance, not by a cap


# The median's ~95% confidence half-width is NOTCH * IQR / sqrt(n) (McGill et al., the notches of a box plot).
NOTCH = 1.57


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3), interpolated between order statistics; one value is its own quartiles."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def measure(fn: Callable[[], object], s: LatencySettings, sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn`` as the settings say; ``sync`` waits for queued device work (CUDA)."""
    wait = sync or (lambda: None)
    clock = time.perf_counter_ns
    gc_was_on = gc.isenabled()
    gc.disable()  # a collection inside a block is noise, not the model's time (timeit does the same)
    try:
        deadline = clock() + int(s.max_time_ms * 1e6)
        fastest = math.inf
        for _ in range(max(s.warmup, 1)):  # at least one call to calibrate k
            wait()
            t0 = clock()
            fn()
            wait()
            fastest = min(fastest, clock() - t0)
        # The fastest call sets k: a warm-up call that was interrupted would make k too small.
        k = max(1, math.ceil(s.block_ms * 1e6 / max(fastest, 1)))
        blocks: list[float] = []
        converged = False
        while len(blocks) < s.max_repeats:
            wait()
            t0 = clock()
            for _ in range(k):
                fn()
            wait()
            t1 = clock()
            blocks.append((t1 - t0) / k / 1e6)
            if len(blocks) < s.min_repeats:
                continue
            q1, med, q3 = quartiles(blocks)
            if NOTCH * (q3 - q1) / math.sqrt(len(blocks)) <= s.rel_tolerance * med:
                converged = True
                break
            if t1 >= deadline:
                break
    finally:
        if gc_was_on:
            gc.enable()
    q1, med, q3 = quartiles(blocks)
    return Timing(med, q3 - q1, blocks, k, converged)


def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x``, cycling when ``x`` has fewer, so that the stated batch size is the one timed."""
    return x[:n] if len(x) >= n else x[torch.arange(n) % len(x)]


@register_runner
class Latency(Runner):
    """Per-sample latency (batch 1) and throughput (``batch_size``) on this host; not the accelerator's."""

    name = "latency"
    kind = "software"
    Settings = LatencySettings
    metrics = frozenset({"latency", "latency_iqr", "latency_batch_size", "latency_threads",
                         "throughput", "throughput_batch_size"})
    stage = 30

    def threads(self) -> int | None:
        return self.settings.num_threads

    def __call__(self, graph, ctx: Context):
        s = self.settings
        sync = torch.cuda.synchronize if ctx.device.type == "cuda" else None
        one = batch_of(ctx.data.val.x, 1).to(ctx.device)
        many = batch_of(ctx.data.val.x, s.batch_size).to(ctx.device)
        from bitsmith.train import eval_mode

        with torch.no_grad(), eval_mode(graph.gm):  # a fine-tuned candidate may be in training mode
            single = measure(lambda: graph.gm(one), s, sync)
            batched = measure(lambda: graph.gm(many), s, sync)
        return graph, {"latency": single.median_ms, "latency_iqr": single.iqr_ms, "latency_batch_size": 1,
                       "latency_threads": torch.get_num_threads(),
                       "throughput": s.batch_size / (batched.median_ms / 1e3),
                       "throughput_batch_size": s.batch_size}
