"""Search spaces: choices declared in seed tables, turned into pass configs per trial.

One mechanism serves every space: a ``SeedSpace`` matches seed tables to
nodes (by name, type or regex, as the pass itself would), exposes every list of
more than one value as a categorical parameter, and builds the pass config of a
trial. Spaces differ only in the pass they drive; the joint space chains them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from bitsmith.config import check_keys
from bitsmith.errors import BitsmithError, CandidateError, unknown_name
from bitsmith.graph import Graph
from bitsmith.passes import get_pass
from bitsmith.passes._select import check_node_name, select
from bitsmith.passes.channels import FACTOR_KEYS, WIDTHFUL
from bitsmith.passes.quantize import INTEGER_KEYS, KNOWN_TYPES
from bitsmith.quant import QUANTIZED, float_type

Choice = Any  # None, bool, int, float or str: what Optuna's categorical distribution takes


@dataclass(frozen=True)
class PassKind:
    """What a space needs to know about the pass it drives."""

    pass_name: str
    setup_keys: frozenset[str]
    default_by: str
    fields: frozenset[str]
    applies: Callable[[nn.Module], bool]  # which nodes a broad seed (default, type, regex) reaches
    types: frozenset[str] | None  # keys allowed with by = "type"
    inert: frozenset  # `name` values that make a table's other fields mean nothing


QUANTIZE = PassKind("quantize", frozenset({"by"}), "type", frozenset(INTEGER_KEYS),
                    lambda m: float_type(m) in QUANTIZED, frozenset(KNOWN_TYPES), frozenset({None}))
CHANNELS = PassKind("channel_multiply", frozenset({"by", "init", "mode", "seed"}), "name", frozenset(FACTOR_KEYS),
                    lambda m: isinstance(m, WIDTHFUL), None, frozenset({None, "inplace"}))


class SeedSpace:
    """Categorical choices for one pass, from ``setup`` and ``seed`` tables."""

    def __init__(self, kind: PassKind, graph: Graph, setup: dict[str, Any], seed: dict[str, Any], where: str,
                 prefix: str = ""):
        self.kind, self.prefix = kind, prefix
        check_keys(setup, set(kind.setup_keys), f"[{where}.setup]")
        self.setup = dict(setup)
        self.by = setup.get("by", kind.default_by)
        if not seed:
            raise BitsmithError(f"[{where}.seed] is empty: add a seed table, e.g. [{where}.seed.default.config]")
        tables = {}
        for key, value in seed.items():
            table = f"[{where}.seed.{key}.config]"
            if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
                raise BitsmithError(f"[{where}.seed.{key}] must hold a {table} table")
            check_keys(value["config"], set(kind.fields), table)
            tables[key] = {f: _choices(v, f"{table} {f}") for f, v in value["config"].items()}
        if self.by == "type" and kind.types is not None:
            for key in tables:
                if key != "default" and key not in kind.types:
                    raise unknown_name("layer type", key, kind.types, f"in [{where}.seed]")
        if self.by == "name":
            for key in tables:
                if key != "default":
                    check_node_name(graph, key, f"[{where}.seed]")
        # target -> field -> choices; a target is a type (by = "type") or a node name.
        self.targets: dict[str, dict[str, list[Choice]]] = {}
        for node, (key, fields) in select(graph, tables, self.by, f"[{where}.seed]").items():
            explicit = self.by == "name" and key != "default"
            if not explicit and not kind.applies(graph.module(node)):
                continue
            target = key if self.by == "type" else node
            if set(fields.get("name", [None])) <= kind.inert:  # e.g. a ReLU's "inplace": nothing to search
                fields = {f: c[:1] for f, c in fields.items()}
            self.targets[target] = fields
        if not self.targets:
            raise BitsmithError(f"[{where}.seed] matches no node that the {kind.pass_name} pass can change")

    @property
    def params(self) -> dict[str, list[Choice]]:
        """Parameter name -> choices, for every list with more than one value."""
        return {f"{self.prefix}{t}/{f}": c for t, fields in self.targets.items() for f, c in fields.items()
                if len(c) > 1}

    def config(self, chosen: dict[str, Choice]) -> dict[str, Any]:
        """The pass config for one point (missing parameters take their first choice)."""
        by = "type" if self.by == "type" else "name"
        cfg: dict[str, Any] = {k: v for k, v in self.setup.items() if k != "by"} | {"by": by}
        for target, fields in self.targets.items():
            cfg[target] = {"config": {f: chosen.get(f"{self.prefix}{target}/{f}", c[0]) for f, c in fields.items()}}
        return cfg

    def passes(self, chosen: dict[str, Choice]) -> list[tuple[str, dict[str, Any]]]:
        return [(self.kind.pass_name, self.config(chosen))]


class JointSpace:
    """Widths and formats in one trial: the channel pass first, then quantization."""

    def __init__(self, parts: list[SeedSpace]):
        self.parts = parts

    @property
    def params(self) -> dict[str, list[Choice]]:
        return {k: v for p in self.parts for k, v in p.params.items()}

    def passes(self, chosen: dict[str, Choice]) -> list[tuple[str, dict[str, Any]]]:
        return [step for p in self.parts for step in p.passes(chosen)]


def _choices(value: Any, where: str) -> list[Choice]:
    values = value if isinstance(value, list) else [value]  # a scalar is one fixed choice
    if not values:
        raise BitsmithError(f"{where} = []: an empty choice list; give at least one value")
    for v in values:
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise BitsmithError(f"{where}: choice {v!r} must be a number, a string or \"NA\"")
    return values


SPACE_NAMES = {
    "graph/quantize/mixed_precision_ptq": QUANTIZE,
    "graph/channel_multiply/channel_multiplier": CHANNELS,
}
JOINT = "graph/joint"
JOINT_PARTS = {"channel_multiply": CHANNELS, "quantize": QUANTIZE}  # applied in this order


def build_space(graph: Graph, space: dict[str, Any]) -> SeedSpace | JointSpace:
    """The space a ``[search.search_space]`` table describes, checked against ``graph``."""
    w = "search.search_space"
    name = space.get("name")
    if name in SPACE_NAMES:
        check_keys(space, {"name", "setup", "seed"}, f"[{w}]")
        return SeedSpace(SPACE_NAMES[name], graph, space.get("setup", {}), space.get("seed", {}), w)
    if name == JOINT:
        check_keys(space, {"name", *JOINT_PARTS}, f"[{w}]")
        parts = []
        for part, kind in JOINT_PARTS.items():
            if part in space:
                sub = space[part]
                check_keys(sub, {"setup", "seed"}, f"[{w}.{part}]")
                parts.append(SeedSpace(kind, graph, sub.get("setup", {}), sub.get("seed", {}), f"{w}.{part}",
                                       prefix=f"{part}:"))
        if not parts:
            raise BitsmithError(f"[{w}] name = \"{JOINT}\" needs [{w}.channel_multiply] and/or [{w}.quantize] tables")
        return JointSpace(parts)
    raise unknown_name("search space", str(name), [*SPACE_NAMES, JOINT], f"in [{w}] name")


def check_space(graph: Graph, space: SeedSpace | JointSpace) -> None:
    """Run the passes once per choice (others at their first) so config mistakes surface now.

    Combinations that cannot be built (inconsistent widths) are pruned per
    trial instead; only errors that no combination could avoid stop the search.
    """
    points = [{}] + [{name: c} for name, choices in space.params.items() for c in choices[1:]]
    for point in points:
        g = graph
        for pass_name, cfg in space.passes(point):
            try:
                g, _ = get_pass(pass_name)(g, cfg)
            except CandidateError:
                break
