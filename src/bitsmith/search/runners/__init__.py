"""Runners measure a candidate graph and return named metrics.

Software runners see data; hardware runners read the graph's structure and
formats. A runner is a ``Runner`` subclass that declares, once, its table's
schema (``Settings``), the metrics it can give and when it runs; adding one
is a new module with a ``@register_runner`` class plus one import line below.
Each trial builds its own measurements: nothing (no metric object, model or
graph) carries over from one trial to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from bitsmith.config import Table, parse
from bitsmith.errors import BitsmithError, unknown_name
from bitsmith.graph import Graph


@dataclass
class Context:
    """What runners may use: the data, the device and the search seed."""

    data: Any  # DataSplits
    device: torch.device
    seed: int


class NoSettings(Table):
    """The table of a runner with no settings."""


class Runner:
    """One ``[search.strategy.<kind>_runner.<name>]`` table, checked, ready to measure."""

    name: ClassVar[str]
    kind: ClassVar[Literal["software", "hardware"]]
    Settings: ClassVar[type[Table]] = NoSettings
    metrics: ClassVar[frozenset[str]]  # every metric it can give
    stage: ClassVar[int] = 50  # runners run in this order: fine-tuning first, structure last
    implies: ClassVar[tuple[str, ...]] = ()  # runners it needs after it (with their default settings)

    def __init__(self, settings: Table):
        self.settings = settings

    def produces(self) -> frozenset[str]:
        """The metrics it gives with these settings."""
        return self.metrics

    def __call__(self, graph: Graph, ctx: Context) -> tuple[Graph, dict[str, float]]:
        raise NotImplementedError

    def threads(self) -> int | None:
        """Intra-op threads it asks of the whole process (set once, before the first trial)."""
        return None

    def digest_data(self) -> list[Any]:
        """What its measurements depend on, for the resume check."""
        return [self.name, self.settings.model_dump(mode="json")]


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(cls: type[Runner]) -> type[Runner]:
    """Class decorator: make the runner known under ``cls.name``."""
    RUNNERS[cls.name] = cls
    return cls


TABLE = {"software": "sw_runner", "hardware": "hw_runner"}


def make_runners(sw: dict[str, Any], hw: dict[str, Any], source: str = "the config") -> list[Runner]:
    """Checked runners in the order they run; implied runners (evaluation after training) added."""
    out: dict[str, Runner] = {}
    for kind, tables in (("software", sw), ("hardware", hw)):
        for name, cfg in tables.items():
            cls = RUNNERS.get(name)
            if cls is None:
                raise unknown_name(f"{kind} runner", name, [n for n, c in RUNNERS.items() if c.kind == kind],
                                   f"in [search.strategy.{TABLE[kind]}] of {source}")
            if cls.kind != kind:
                raise BitsmithError(f"[search.strategy.{TABLE[kind]}.{name}] in {source}: {name} is a {cls.kind} "
                                    f"runner; move it to [search.strategy.{TABLE[cls.kind]}.{name}]")
            out[name] = cls(parse(cls.Settings, cfg, ("search", "strategy", TABLE[kind], name), source))
    for runner in list(out.values()):
        for name in runner.implies:
            if name not in out:
                out[name] = RUNNERS[name](RUNNERS[name].Settings())
    return sorted(out.values(), key=lambda r: r.stage)


def produced(runners: list[Runner]) -> set[str]:
    return set().union(*(r.produces() for r in runners))


def producer_of(metric: str) -> str:
    """A hint for a metric no configured runner gives: the table that would give it."""
    for name, cls in RUNNERS.items():
        if metric in cls.metrics:
            return f"add [search.strategy.{TABLE[cls.kind]}.{name}]"
    known = sorted(set().union(*(c.metrics for c in RUNNERS.values())))
    return f"no runner gives it; known metrics: {', '.join(known)}"


# Importing the modules registers their runners.
from bitsmith.search.runners import evaluation as _evaluation  # noqa: E402,F401
from bitsmith.search.runners import hardware as _hardware  # noqa: E402,F401
from bitsmith.search.runners import latency as _latency  # noqa: E402,F401
from bitsmith.search.runners import training as _training  # noqa: E402,F401

__all__ = ["RUNNERS", "Context", "Runner", "make_runners", "produced", "register_runner"]
