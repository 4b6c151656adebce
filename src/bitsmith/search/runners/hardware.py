"""Hardware runners: figures read off the candidate's structure and formats (no data)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bitsmith.passes.analysis import analyze, memory_density
from bitsmith.schema import Table
from bitsmith.search.runners.base import Context, Runner, register_runner


class Hardware(Runner):
    """Copies totals of the analysis passes: metric name -> total name."""

    kind = "hardware"
    stage = 90
    totals: ClassVar[dict[str, str]]

    def __call__(self, graph, ctx: Context):
        totals = analyze(graph)["totals"]
        return graph, {metric: totals[source] for metric, source in self.totals.items()}


def _simple(name: str, totals: dict[str, str]) -> type[Hardware]:
    cls = type(name.title().replace("_", ""), (Hardware,), {"name": name, "totals": totals,
                                                           "metrics": frozenset(totals), "__module__": __name__})
    return register_runner(cls)


ModelSize = _simple("model_size", {"model_size": "model_size"})
Params = _simple("params", {"params": "params"})
Flops = _simple("flops", {"flops": "flops", "macs": "macs", "elementwise_ops": "elementwise_ops"})
Macs = _simple("macs", {"macs": "macs"})
Bops = _simple("bops", {"bops": "bops"})


class BitwidthSettings(Table):
    compare_to: float | None = Field(None, gt=0, allow_inf_nan=False)  # memory_density = compare_to / bits
    # "all_params" (default): every parameter, float ones at 32 bits; "linear_weights":
    # the weights of Linear layers only, as MASE counts it.
    count: Literal["all_params", "linear_weights"] = "all_params"


@register_runner
class AverageBitwidth(Hardware):
    name = "average_bitwidth"
    Settings = BitwidthSettings
    metrics = frozenset({"average_bitwidth", "average_activation_bitwidth", "memory_density"})
    totals = {"average_bitwidth": "average_bitwidth", "average_activation_bitwidth": "average_activation_bitwidth"}

    def produces(self):
        return self.metrics if self.settings.compare_to is not None else self.metrics - {"memory_density"}

    def __call__(self, graph, ctx: Context):
        totals = analyze(graph)["totals"]
        bits = totals["average_bitwidth" if self.settings.count == "all_params" else "average_linear_weight_bitwidth"]
        out = {"average_bitwidth": bits, "average_activation_bitwidth": totals["average_activation_bitwidth"]}
        if self.settings.compare_to is not None:
            out["memory_density"] = memory_density(bits, self.settings.compare_to)
        return graph, out
