"""The ``[search]`` tables -> a checked, typed description of one search.

Everything that can be wrong with a search config without looking at the
model is found here, once, before any trial: the schema of each table lives
beside what reads it (runners declare their own settings, spaces derive
theirs from the pass they drive), and this module puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from bitsmith.errors import BitsmithError, closest
from bitsmith.schema import MAX_SEED, Table, parse

Direction = Literal["maximize", "minimize"]
MAX_TRIALS = 10_000_000


class Setup(Table):
    """``[search.strategy.setup]``."""

    n_jobs: int = Field(1, ge=1, le=256)
    n_trials: int = Field(20, ge=1, le=MAX_TRIALS)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds
    sampler: str = "tpe"
    sum_scaled_metrics: bool = False
    direction: Direction = "maximize"
    seed: int | None = Field(None, ge=0, le=MAX_SEED)  # default: the top-level seed
    study_name: str | None = None
    # A point whose trial failed (a crash, a kill, Ctrl-C) is run again at most this many times.
    max_retry: int = Field(3, ge=0, le=1000)
    # Database storages: a worker silent for grace_period seconds is taken as dead, its trial failed
    # and retried (Optuna's heartbeat). Journal files check the worker's process instead.
    heartbeat_interval: int = Field(10, ge=1, le=3600)
    grace_period: int = Field(30, ge=2, le=86400)
    # Intra-op threads of each worker process, set once when the search starts. Default: by the size of
    # the work (job.search_threads, docs/search.md).
    num_threads: int | None = Field(None, ge=1, le=1024)
    # MASE keys with no meaning here (multi-GPU, its pickle checkpoints, runner style): accepted, unused.
    model_parallel: bool = False
    pkl_ckpt: str | None = None
    save_every_n_trials: int | None = None
    runner_style: str | None = None

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, name: str) -> str:
        from bitsmith.search.samplers import SAMPLERS, public_names

        name = name.lower()  # MASE matches sampler names in any case ("TPE")
        if name not in SAMPLERS:
            near = closest(name, public_names())
            raise ValueError(f"a sampler name; {f'did you mean {near!r}? ' if near else ''}"
                             f"known: {', '.join(public_names())}")
        return name


class MetricSpec(Table):
    """``[search.strategy.metrics.<metric>]``: ``scaled value = scale * value``."""

    scale: float = Field(1.0, allow_inf_nan=False)
    direction: Direction = "maximize"

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("a non-zero number (a scale of 0 makes the metric count for nothing; "
                             "remove the metric instead)")
        return scale


class ConstraintSpec(Table):
    """``[search.strategy.constraints.<metric>]`` (extension): a feasible range."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _range(self):
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs min and/or max, e.g. accuracy.min = 0.7")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min = {self.min} is above max = {self.max}: no value could satisfy it")
        return self


class Strategy(Table):
    """``[search.strategy]``; each runner table is checked by its runner's own schema."""

    name: Literal["optuna"] = "optuna"
    eval_mode: bool = True  # MASE: evaluate in eval mode, which bitsmith always does
    sw_runner: dict[str, dict[str, Any]] = Field(default_factory=dict)
    hw_runner: dict[str, dict[str, Any]] = Field(default_factory=dict)
    setup: Setup = Field(default_factory=Setup)
    metrics: dict[str, MetricSpec] = Field(min_length=1)
    constraints: dict[str, ConstraintSpec] = Field(default_factory=dict)


class SearchTable(Table):
    """``[search]``; the space is checked by the space module."""

    search_space: dict[str, Any]
    strategy: Strategy


@dataclass(frozen=True)
class Metric:
    name: str
    scale: float
    direction: str  # the direction this metric is optimized in


@dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None
    max: float | None

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible."""
        over = value - self.max if self.max is not None else -float("inf")
        under = self.min - value if self.min is not None else -float("inf")
        return float(max(over, under))


@dataclass
class SearchConfig:
    space: Any  # spaces.SpaceSpec
    setup: Setup
    seed: int
    metrics: list[Metric]
    constraints: list[Constraint]
    runners: list[Any]  # runners.Runner instances, in the order they run
    warnings: list[str] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return [self.setup.direction] if self.setup.sum_scaled_metrics else [m.direction for m in self.metrics]

    def digest_data(self) -> dict[str, Any]:
        """What a trial's measurements depend on, for the resume check."""
        return {"space": self.space.digest_data(), "runners": [r.digest_data() for r in self.runners],
                "metrics": [(m.name, m.scale, m.direction) for m in self.metrics], "directions": self.directions,
                "constraints": [(c.metric, c.min, c.max) for c in self.constraints],
                "sampler": self.setup.sampler, "seed": self.seed}


def parse_search(search: dict[str, Any], top_seed: int = 0, overrides: dict[str, Any] | None = None,
                 source: str = "the config") -> SearchConfig:
    """Check the ``[search]`` tables; ``overrides`` are command-line flags (sampler, n_trials, ...)."""
    from bitsmith.search.runners import make_runners, produced, producer_of
    from bitsmith.search.samplers import SAMPLERS
    from bitsmith.search.learned import LEARNED_SPACE, parse_learned
    from bitsmith.search.spaces import parse_space

    if not search:
        raise BitsmithError("search needs a [search] section in the config (search_space and strategy); "
                            "see configs/ for examples")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:  # flags are checked alone first, so an error names the command line, not the file
        parse(Setup, given, ("search", "strategy", "setup"), "the command line")
        strategy = dict(search.get("strategy") or {}) if isinstance(search.get("strategy"), dict) else {}
        setup = strategy.get("setup") if isinstance(strategy.get("setup"), dict) else {}
        search = {**search, "strategy": {**strategy, "setup": {**setup, **given}}}
    table = parse(SearchTable, search, ("search",), source)
    strategy = table.strategy
    if table.search_space.get("name") == LEARNED_SPACE:
        space = parse_learned(table.search_space, source)
    else:
        space = parse_space(table.search_space, source)
    runners = make_runners(strategy.sw_runner, strategy.hw_runner, source)
    available = produced(runners)
    warnings = []
    metrics = []
    for name, spec in strategy.metrics.items():
        scale, direction = spec.scale, spec.direction
        if scale < 0 and strategy.setup.sum_scaled_metrics:
            if direction != strategy.setup.direction:
                warnings.append(
                    f"metric {name}: negative scale and direction {direction!r} under a {strategy.setup.direction!r} "
                    f"sum both say 'flip the sign'; read as {direction} once (scale {abs(scale)})")
            else:
                direction = "minimize" if direction == "maximize" else "maximize"  # the old way of saying it
            scale = abs(scale)
        elif scale < 0:
            warnings.append(
                f"metric {name}: scale {scale} with direction {direction!r} in a Pareto search "
                f"{'minimizes' if direction == 'maximize' else 'maximizes'} {name}; "
                f"use a positive scale and set direction instead")
        metrics.append(Metric(name, scale, direction))
    constraints = [Constraint(name, c.min, c.max) for name, c in strategy.constraints.items()]
    for name in [*(m.name for m in metrics), *(c.metric for c in constraints)]:
        if name not in available:
            raise BitsmithError(
                f"metric {name!r} in {source} is produced by no runner; the configured runners give "
                f"{', '.join(sorted(available)) or 'nothing'} ({producer_of(name)})")
    spec = SAMPLERS[strategy.setup.sampler]
    objectives = 1 if strategy.setup.sum_scaled_metrics else len(metrics)
    if objectives > 1 and not spec.multi_objective:
        raise BitsmithError(f"sampler {strategy.setup.sampler!r} optimizes one objective, but this search has "
                            f"{objectives} (sum_scaled_metrics = false); set sum_scaled_metrics = true or choose "
                            "tpe, nsgaii, nsgaiii, random, qmc, gp or brute-force")
    seed = strategy.setup.seed if strategy.setup.seed is not None else top_seed
    return SearchConfig(space, strategy.setup, seed, metrics, constraints, runners, warnings)
