"""Driving one search: space + runners + objective over an Optuna study."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph
from bitsmith.passes import get_pass
from bitsmith.search.config import SearchConfig
from bitsmith.search.runners import Context, make_runners, produced
from bitsmith.search.spaces import JointSpace, SeedSpace

# Trial failures (a Ctrl-C included) are counted and reported by bitsmith itself.
optuna.logging.set_verbosity(optuna.logging.ERROR)


def build_candidate(base: Graph, space: SeedSpace | JointSpace, chosen: dict[str, Any]) -> tuple[Graph, list]:
    """The candidate for one point of the space, and the passes that made it."""
    passes = space.passes(chosen)
    graph = base
    for name, cfg in passes:
        graph, _ = get_pass(name)(graph, cfg)
    return graph, passes


@dataclass
class Objective:
    """Scores one trial; holds no state that outlives a trial."""

    cfg: SearchConfig
    base: Graph
    space: SeedSpace | JointSpace
    ctx: Context
    software: list = field(default_factory=list)
    hardware: list = field(default_factory=list)

    def __post_init__(self):
        self.started: list[int] = []  # trial ids this process ran, to fail them cleanly on Ctrl-C
        self.software, self.hardware = make_runners(self.cfg.sw_runners, self.cfg.hw_runners)
        self.params = self.space.params
        available = produced(self.cfg.sw_runners, self.cfg.hw_runners)
        for name in [*(m.name for m in self.cfg.metrics), *(c.metric for c in self.cfg.constraints)]:
            if name not in available:
                raise BitsmithError(
                    f"metric {name!r} is produced by no runner; the configured runners give "
                    f"{', '.join(sorted(available)) or 'nothing'} (add e.g. [search.strategy.hw_runner.{_runner_for(name)}])")

    def measure(self, graph: Graph) -> tuple[Graph, dict[str, float], dict[str, float]]:
        sw, hw = {}, {}
        for _, run in self.software:
            graph, m = run(graph, self.ctx)
            sw.update(m)
        for _, run in self.hardware:
            graph, m = run(graph, self.ctx)
            hw.update(m)
        return graph, sw, hw

    def scale(self, values: dict[str, float]) -> dict[str, float]:
        return {m.name: m.scale * values[m.name] for m in self.cfg.metrics}

    def objective_values(self, scaled: dict[str, float]) -> list[float]:
        if not self.cfg.sum_scaled_metrics:
            return [scaled[m.name] for m in self.cfg.metrics]
        return [sum(v if m.direction == self.cfg.direction else -v
                    for m, v in zip(self.cfg.metrics, scaled.values()))]

    def __call__(self, trial: optuna.Trial) -> list[float]:
        self.started.append(trial._trial_id)
        chosen = {name: trial.suggest_categorical(name, choices) for name, choices in self.params.items()}
        try:
            graph, passes = build_candidate(self.base, self.space, chosen)
        except BitsmithError as e:
            trial.set_user_attr("pruned_reason", str(e))
            raise optuna.TrialPruned(str(e)) from None
        graph, sw, hw = self.measure(graph)
        values = {**sw, **hw}
        scaled = self.scale(values)
        violations = [c.violation(values[c.metric]) for c in self.cfg.constraints]
        trial.set_user_attr("config", passes)
        trial.set_user_attr("software_metrics", sw)
        trial.set_user_attr("hardware_metrics", hw)
        trial.set_user_attr("scaled_metrics", scaled)
        if violations:
            trial.set_user_attr("constraints", violations)
            for c, v in zip(self.cfg.constraints, violations):
                trial.set_constraint(c.metric, v)  # what constraint-aware samplers read
        return self.objective_values(scaled)


def _runner_for(metric: str) -> str:
    from bitsmith.search.runners import PRODUCES

    return next((r for r, ms in PRODUCES.items() if metric in ms), "average_bitwidth")


def config_hash(settings, cfg: SearchConfig, base: Graph) -> str:
    """What must match for a stored study to be resumed: config, data set and the model's weights."""
    weights = hashlib.sha256()
    for name, tensor in base.gm.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    blob = {"model": settings.model, "dataset": settings.dataset, "data_path": settings.data_path,
            "weights": weights.hexdigest(), "space": cfg.space,
            "metrics": [(m.name, m.scale, m.direction) for m in cfg.metrics], "directions": cfg.directions,
            "sampler": cfg.sampler, "seed": cfg.seed}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_feasible(t: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in t.user_attrs.get("constraints", []))


def best_trials(study: optuna.Study, directions: list[str]) -> list[optuna.trial.FrozenTrial]:
    """The best feasible trial (one objective) or the feasible Pareto front (several)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if is_feasible(t)]
    if not done:
        return []
    signs = [1 if d == "maximize" else -1 for d in directions]
    if len(directions) == 1:
        return [max(done, key=lambda t: (signs[0] * t.values[0], -t.number))]

    def dominates(a, b) -> bool:
        ge = all(s * x >= s * y for s, x, y in zip(signs, a.values, b.values))
        return ge and any(s * x > s * y for s, x, y in zip(signs, a.values, b.values))

    front = [t for t in done if not any(dominates(o, t) for o in done)]
    unique, seen = [], set()
    for t in sorted(front, key=lambda t: t.number):  # one trial per distinct point
        if tuple(t.values) not in seen:
            seen.add(tuple(t.values))
            unique.append(t)
    return unique


class Progress:
    """A rich progress bar fed by Optuna callbacks; fsyncs the journal after each trial."""

    def __init__(self, console, total: int, directions: list[str], backend, label: str = "objective"):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[best]}"), console=console)
        self.task = self.bar.add_task("search", total=total, best="")
        self.directions, self.backend, self.label = directions, backend, label
        self.best: float | None = None
        self.started = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.backend is not None:
            self.backend.sync()
        text = ""
        if trial.state == optuna.trial.TrialState.COMPLETE and is_feasible(trial):
            v = trial.values[0]  # several objectives: the best of the first one
            better = self.best is None or (v > self.best if self.directions[0] == "maximize" else v < self.best)
            self.best = v if better else self.best
        if self.best is not None:
            text = f"best {self.label} {self.best:.4g}"
        self.bar.update(self.task, advance=1, best=text)
