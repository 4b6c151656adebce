"""The ``luts`` hardware runner: LUTs, adder depth and latency in cycles of the candidate, from its integer
weights (``bitsmith.cost``; the table is ``[passes.luts]``'s). A candidate with a layer left in float has no
such cost: it is pruned, with the reason."""

from __future__ import annotations

from typing import Any

from bitsmith.cost import _da4ml
from bitsmith.cost.network import layer_rows, network_cost
from bitsmith.passes.luts import LutsSettings
from bitsmith.search.runners.base import Context, Runner, register_runner


@register_runner
class Luts(Runner):
    name = "luts"
    kind = "hardware"
    stage = 90
    Settings = LutsSettings
    metrics = frozenset({"luts", "adder_depth", "latency_cycles"})

    def __init__(self, settings: LutsSettings):
        super().__init__(settings)
        _da4ml.require()  # at config time: one line saying what to install, before any trial
        self.cost = settings.cost_settings()

    def __call__(self, graph, ctx: Context):
        return graph, network_cost(graph, self.cost).metrics()

    def layers(self, graph) -> list[dict[str, Any]]:
        """The per-layer table of a candidate (cached: measured before)."""
        return layer_rows(network_cost(graph, self.cost))

    def digest_data(self) -> list[Any]:
        return [self.name, self.settings.result_settings(), _da4ml.NAME, _da4ml.version()]
