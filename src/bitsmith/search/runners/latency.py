"""``latency``: the host's time to run the simulated (fake-quantized) candidate."""

from __future__ import annotations

import statistics
import time

import torch
from pydantic import AliasChoices, Field

from bitsmith.config import Table
from bitsmith.search.runners import Context, Runner, register_runner


class LatencySettings(Table):
    batch_size: int = Field(512, ge=1, le=1_000_000)
    # MASE's latency runner calls these num_warmup_batches and num_batches.
    warmup: int = Field(3, ge=0, le=10_000, validation_alias=AliasChoices("warmup", "num_warmup_batches"))
    repeats: int = Field(10, ge=1, le=100_000, validation_alias=AliasChoices("repeats", "num_batches"))
    # Intra-op threads for the whole search, set once at its start (never per trial).
    num_threads: int | None = Field(None, ge=1, le=1024)


@register_runner
class Latency(Runner):
    """Median forward time per batch on this machine; not the accelerator's latency."""

    name = "latency"
    kind = "software"
    Settings = LatencySettings
    metrics = frozenset({"latency", "latency_batch_size", "latency_threads"})
    stage = 30

    def threads(self) -> int | None:
        return self.settings.num_threads

    def __call__(self, graph, ctx: Context):
        s = self.settings
        x = ctx.data.val.x[:s.batch_size].to(ctx.device)
        cuda = ctx.device.type == "cuda"
        with torch.no_grad():
            for _ in range(s.warmup):
                graph.gm(x)
            times = []
            for _ in range(s.repeats):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                graph.gm(x)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        return graph, {"latency": statistics.median(times) * 1e3, "latency_batch_size": len(x),
                       "latency_threads": torch.get_num_threads()}
