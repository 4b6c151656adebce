"""Search spaces: choices declared in seed tables, turned into pass configs per trial.

One mechanism serves every space: a ``SeedSpace`` matches seed tables to
nodes (by name, type or regex, as the pass itself would), exposes every list of
more than one value as a categorical parameter, and builds the pass config of a
trial. Spaces differ only in the pass they drive; the joint space chains them.
The schema of a seed table is derived from the schema of the pass's per-layer
table, so a value a pass would refuse is refused here, before any trial.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, create_model, model_validator

from bitsmith.errors import BitsmithError, CandidateError, unknown_name
from bitsmith.graph import Graph
from bitsmith.passes import PASSES
from bitsmith.passes._select import select, unmatched
from bitsmith.schema import Notes, Table, parse

Choice = Any  # None, bool, int, float or str: what Optuna's categorical distribution takes
# A choice list longer than this is almost surely a generated mistake; it would
# also make the pre-check (one pass run per choice) slow.
MAX_CHOICES = 1024

SPACES = {
    "graph/quantize/mixed_precision_ptq": "quantize",
    "graph/channel_multiply/channel_multiplier": "channel_multiply",
}
JOINT = "graph/joint"
JOINT_ORDER = ("channel_multiply", "quantize")  # widths first, then formats


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]  # a scalar is one fixed choice


@functools.cache
def choices_model(layer: type[Table]) -> type[Table]:
    """The seed-table schema for a per-layer schema: each key a list of values that key accepts."""
    fields = {}
    for name, info in layer.model_fields.items():
        item = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        fields[name] = (Annotated[list[item], BeforeValidator(_as_list),
                                  Field(min_length=1, max_length=MAX_CHOICES)], None)
    return create_model(f"{layer.__name__}Choices", __base__=Table, __module__=__name__, **fields)


@functools.cache
def part_model(pass_name: str) -> type[Table]:
    """``{setup, seed}`` of a space that drives ``pass_name``."""
    spec = PASSES[pass_name]
    entry = create_model(f"{spec.layer.__name__}Seed", __base__=Table, __module__=__name__,
                         config=(choices_model(spec.layer), ...))
    # MASE's space setup also carries model_parallel (multi-GPU plumbing): accepted, unused.
    setup = create_model(f"{spec.settings.__name__}Setup", __base__=spec.settings, __module__=__name__,
                         model_parallel=(bool, False))
    return create_model(f"{spec.settings.__name__}Space", __base__=Table, __module__=__name__,
                        setup=(setup, Field(default_factory=setup)), seed=(dict[str, entry], Field(min_length=1)))


@functools.cache
def space_model(name: str) -> type[Table]:
    if name in SPACES:
        return create_model("SearchSpace", __base__=part_model(SPACES[name]), __module__=__name__, name=(str, ...))
    parts = {p: (part_model(p) | None, None) for p in JOINT_ORDER}

    def needs_a_part(self):
        if all(getattr(self, p) is None for p in JOINT_ORDER):
            raise ValueError(f"name = \"{JOINT}\" needs [search.search_space.channel_multiply] and/or "
                             "[search.search_space.quantize] tables")
        return self

    return create_model("JointSearchSpace", __base__=Table, __module__=__name__, name=(str, ...),
                        __validators__={"needs_a_part": model_validator(mode="after")(needs_a_part)}, **parts)


@dataclass(frozen=True)
class PartSpec:
    """One pass's share of a space, checked but not yet matched to a graph."""

    pass_name: str
    setup: Table  # the pass's own settings (by, init, ...)
    seeds: dict[str, dict[str, list[Choice]]]  # seed key -> given field -> choices
    where: str  # its TOML path, for messages
    prefix: str = ""  # parameter name prefix in the joint space

    def digest_data(self) -> list[Any]:
        return [self.pass_name, self.setup.model_dump(mode="json"), self.seeds]


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    parts: tuple[PartSpec, ...]

    def digest_data(self) -> list[Any]:
        return [self.name, [p.digest_data() for p in self.parts]]


def parse_space(table: dict[str, Any], source: str = "the config") -> SpaceSpec:
    """A ``[search.search_space]`` table, checked against the schemas of the passes it drives."""
    w = "search.search_space"
    name = table.get("name")
    if not isinstance(name, str) or (name not in SPACES and name != JOINT):
        raise unknown_name("search space", str(name), [*SPACES, JOINT], f"in [{w}] name of {source}")
    checked = parse(space_model(name), table, tuple(w.split(".")), source)

    def part(pass_name: str, value: Any, where: str, prefix: str = "") -> PartSpec:
        seeds = {key: entry.config.model_dump(exclude_unset=True) for key, entry in value.seed.items()}
        return PartSpec(pass_name, value.setup, seeds, where, prefix)

    if name in SPACES:
        return SpaceSpec(name, (part(SPACES[name], checked, w),))
    return SpaceSpec(name, tuple(part(p, getattr(checked, p), f"{w}.{p}", f"{p}:")
                                 for p in JOINT_ORDER if getattr(checked, p) is not None))


class SeedSpace:
    """Categorical choices for one pass, matched to the nodes of ``graph``."""

    def __init__(self, part: PartSpec, graph: Graph, notes: Notes):
        self.part, self.prefix = part, part.prefix
        spec = PASSES[part.pass_name]
        layer = spec.layer
        by = part.setup.by
        where = f"{part.where}.seed"
        chosen, missed = select(graph, part.seeds, by, where)
        for key in missed:
            notes.warn(unmatched(graph, key, by, where))
        for key in sorted(set(chosen.values())):
            if message := spec.unsupported(f"{where}.{key}.config", part.seeds[key]):
                notes.warn(message)
        # target -> field -> choices; a target is a type (by = "type") or a node name.
        self.targets: dict[str, dict[str, list[Choice]]] = {}
        for node, key in chosen.items():
            explicit = by == "name" and key != "default"
            if not explicit and not layer.reaches(graph.module(node)):
                continue
            target = key if by == "type" else node
            fields = part.seeds[key]
            if all(layer.model_construct(name=c).inert for c in fields.get("name", [None])):
                fields = {f: c[:1] for f, c in fields.items()}  # e.g. "NA", or a ReLU's "inplace": nothing to search
            self.targets[target] = fields
        if not self.targets:
            raise BitsmithError(f"[{where}] matches no node that the {part.pass_name} pass can change")
        self._setup = {**part.setup.model_dump(exclude={"model_parallel"}), "by": "type" if by == "type" else "name"}

    @property
    def params(self) -> dict[str, list[Choice]]:
        """Parameter name -> choices, for every list with more than one value."""
        return {f"{self.prefix}{t}/{f}": c for t, fields in self.targets.items() for f, c in fields.items()
                if len(c) > 1}

    def config(self, chosen: dict[str, Choice]) -> dict[str, Any]:
        """The pass config for one point (missing parameters take their first choice)."""
        cfg: dict[str, Any] = dict(self._setup)
        for target, fields in self.targets.items():
            cfg[target] = {"config": {f: chosen.get(f"{self.prefix}{target}/{f}", c[0]) for f, c in fields.items()}}
        return cfg

    def passes(self, chosen: dict[str, Choice]) -> list[tuple[str, dict[str, Any]]]:
        return [(self.part.pass_name, self.config(chosen))]


class JointSpace:
    """Widths and formats in one trial: the channel pass first, then quantization."""

    def __init__(self, parts: list[SeedSpace]):
        self.parts = parts

    @property
    def params(self) -> dict[str, list[Choice]]:
        return {k: v for p in self.parts for k, v in p.params.items()}

    def passes(self, chosen: dict[str, Choice]) -> list[tuple[str, dict[str, Any]]]:
        return [step for p in self.parts for step in p.passes(chosen)]


def build_space(graph: Graph, spec: SpaceSpec | dict[str, Any], notes: Notes | None = None) -> SeedSpace | JointSpace:
    """The space ``spec`` describes, matched to ``graph``; keys matching no node warn (or fail, strict)."""
    if isinstance(spec, dict):
        spec = parse_space(spec)
    notes = notes or Notes()
    spaces = [SeedSpace(p, graph, notes) for p in spec.parts]
    return spaces[0] if spec.name in SPACES else JointSpace(spaces)


def check_space(graph: Graph, space: SeedSpace | JointSpace) -> None:
    """Run the passes once per choice (others at their first) so config mistakes surface now.

    Combinations that cannot be built (inconsistent widths) are pruned per
    trial instead; only errors that no combination could avoid stop the search.
    """
    from bitsmith.passes import get_pass

    points = [{}] + [{name: c} for name, choices in space.params.items() for c in choices[1:]]
    for point in points:
        g = graph
        for pass_name, cfg in space.passes(point):
            try:
                g, _ = get_pass(pass_name).fn(g, cfg)
            except CandidateError:
                break
