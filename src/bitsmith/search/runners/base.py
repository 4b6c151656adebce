"""What every runner is: the ``Runner`` base class, the ``Context`` runners may use, and the registry that
runner modules add themselves to with ``@register_runner``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from bitsmith.graph import Graph
from bitsmith.schema import Table


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
