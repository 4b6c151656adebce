"""The ``[search]`` tables -> a checked, typed description of one search.

Everything that can be wrong with a search config is found here or when the
space is built, before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bitsmith.config import check_keys
from bitsmith.errors import BitsmithError

SEARCH_KEYS = {"search_space", "strategy"}
STRATEGY_KEYS = {"name", "eval_mode", "sw_runner", "hw_runner", "setup", "metrics", "constraints"}
SETUP_KEYS = {"n_jobs", "n_trials", "timeout", "sampler", "sum_scaled_metrics", "direction", "model_parallel",
              "seed", "study_name"}
METRIC_KEYS = {"scale", "direction"}
CONSTRAINT_KEYS = {"min", "max"}
DIRECTIONS = ("maximize", "minimize")


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
    space: dict[str, Any]
    sampler: str = "tpe"
    n_trials: int = 20
    timeout: float | None = None
    n_jobs: int = 1
    seed: int = 0
    sum_scaled_metrics: bool = False
    direction: str = "maximize"
    study_name: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    sw_runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    hw_runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return [self.direction] if self.sum_scaled_metrics else [m.direction for m in self.metrics]


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BitsmithError(f"{where} = {value!r} must be an integer >= {low}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BitsmithError(f"{where} = {value!r} must be a number")
    return float(value)


def _table(parent: dict[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise BitsmithError(f"the config has no [{where}.{key}] table; see docs/search.md for the layout")
        return {}
    if not isinstance(value, dict):
        raise BitsmithError(f"[{where}.{key}] must be a table, not {value!r}")
    return value


def parse_search(search: dict[str, Any], top_seed: int = 0, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Check the ``[search]`` tables; ``overrides`` are command-line flags (sampler, n_trials, ...)."""
    if not search:
        raise BitsmithError("search needs a [search] section in the config (search_space and strategy); "
                            "see configs/ for examples")
    check_keys(search, SEARCH_KEYS, "[search]")
    space = _table(search, "search_space", "search")
    strategy = _table(search, "strategy", "search")
    check_keys(strategy, STRATEGY_KEYS, "[search.strategy]")
    if strategy.get("name", "optuna") != "optuna":
        raise BitsmithError(f"[search.strategy] name = {strategy['name']!r}; the supported strategy is \"optuna\"")
    setup = {**_table(strategy, "setup", "search.strategy", required=False),
             **{k: v for k, v in (overrides or {}).items() if v is not None}}
    check_keys(setup, SETUP_KEYS, "[search.strategy.setup]")
    w = "[search.strategy.setup]"
    cfg = SearchConfig(space=space)
    cfg.sampler = str(setup.get("sampler", "tpe"))
    cfg.n_trials = _int(setup.get("n_trials", 20), f"{w} n_trials", 1)
    cfg.n_jobs = _int(setup.get("n_jobs", 1), f"{w} n_jobs", 1)
    if setup.get("timeout") is not None:
        cfg.timeout = _number(setup["timeout"], f"{w} timeout")
        if cfg.timeout <= 0:
            raise BitsmithError(f"{w} timeout = {cfg.timeout} must be positive (seconds)")
    cfg.seed = _int(setup.get("seed", top_seed), f"{w} seed", 0)
    cfg.sum_scaled_metrics = bool(setup.get("sum_scaled_metrics", False))
    cfg.direction = setup.get("direction", "maximize")
    if cfg.direction not in DIRECTIONS:
        raise BitsmithError(f"{w} direction = {cfg.direction!r}; use \"maximize\" or \"minimize\"")
    cfg.study_name = setup.get("study_name")

    cfg.sw_runners = _runners(strategy, "sw_runner")
    cfg.hw_runners = _runners(strategy, "hw_runner")
    metrics = _table(strategy, "metrics", "search.strategy")
    if not metrics:
        raise BitsmithError("[search.strategy.metrics] is empty; name at least one metric, e.g. accuracy.scale = 1.0")
    for name, spec in metrics.items():
        where = f"[search.strategy.metrics.{name}]"
        if not isinstance(spec, dict):
            raise BitsmithError(f"{where} must be a table with scale and direction, not {spec!r}")
        check_keys(spec, METRIC_KEYS, where)
        scale = _number(spec.get("scale", 1.0), f"{where} scale")
        direction = spec.get("direction", "maximize")
        if direction not in DIRECTIONS:
            raise BitsmithError(f"{where} direction = {direction!r}; use \"maximize\" or \"minimize\"")
        if cfg.sum_scaled_metrics and scale < 0:
            if direction != cfg.direction:
                cfg.warnings.append(
                    f"metric {name}: negative scale and direction {direction!r} under a {cfg.direction!r} sum both "
                    f"say 'flip the sign'; read as {direction} once (scale {abs(scale)})")
            else:
                direction = "minimize" if direction == "maximize" else "maximize"  # the old way of saying it
            scale = abs(scale)
        cfg.metrics.append(Metric(name, scale, direction))
    for name, spec in _table(strategy, "constraints", "search.strategy", required=False).items():
        where = f"[search.strategy.constraints.{name}]"
        if not isinstance(spec, dict) or not spec:
            raise BitsmithError(f"{where} must be a table with min and/or max, e.g. {name}.min = 0.7")
        check_keys(spec, CONSTRAINT_KEYS, where)
        lo = _number(spec["min"], f"{where} min") if "min" in spec else None
        hi = _number(spec["max"], f"{where} max") if "max" in spec else None
        cfg.constraints.append(Constraint(name, lo, hi))
    return cfg


def _runners(strategy: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    table = _table(strategy, key, "search.strategy", required=False)
    out = {}
    for name, cfg in table.items():
        if not isinstance(cfg, dict):
            raise BitsmithError(f"[search.strategy.{key}.{name}] must be a table, not {cfg!r}")
        out[name] = cfg
    return out
