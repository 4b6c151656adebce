"""Runners measure a candidate graph and return named metrics.

Software runners see data; hardware runners read the graph's structure and
formats. A runner is a ``Runner`` subclass that declares, once, its table's
schema (``Settings``), the metrics it can give and when it runs; adding one
is a new module with a ``@register_runner`` class (``base.py``) plus one import line below.
Each trial builds its own measurements: nothing (no metric object, model or
graph) carries over from one trial to the next.
"""

from __future__ import annotations

from typing import Any

from bitsmith.errors import BitsmithError, unknown_name
from bitsmith.schema import parse

# Importing the runner modules registers their runners.
from bitsmith.search.runners import evaluation as _evaluation  # noqa: F401
from bitsmith.search.runners import hardware as _hardware  # noqa: F401
from bitsmith.search.runners import latency as _latency  # noqa: F401
from bitsmith.search.runners import luts as _luts  # noqa: F401
from bitsmith.search.runners import training as _training  # noqa: F401
from bitsmith.search.runners.base import RUNNERS, TABLE, Context, NoSettings, Runner, register_runner  # noqa: F401


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


__all__ = ["RUNNERS", "Context", "Runner", "make_runners", "produced", "register_runner"]
