"""One trial of a search: a point of the space -> candidate graph -> runners -> objective values; and which
trials are best."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna

from bitsmith.errors import CandidateError
from bitsmith.graph import Graph
from bitsmith.passes import get_pass
from bitsmith.search import _optuna
from bitsmith.search.config import SearchConfig
from bitsmith.search.process import WORKER, WORKER_ATTR
from bitsmith.search.runners import Context
from bitsmith.search.learned import LearnedSpace
from bitsmith.search.spaces import JointSpace, SeedSpace


def build_candidate(base: Graph, space: SeedSpace | JointSpace | LearnedSpace, chosen: dict[str, Any],
                    ctx: Context | None = None, trial: optuna.Trial | None = None,
                    number: int | None = None) -> tuple[Graph, list]:
    """The candidate for one point of the space, and the passes that made it. A learned-widths point trains
    (seeded: the same point gives the same design), reporting each epoch to ``trial``'s pruner; finished
    trial ``number``'s design is read back when it was kept."""
    if isinstance(space, LearnedSpace):
        return space.build(base, chosen, ctx, trial, number)
    passes = space.passes(chosen)
    graph = base
    for name, cfg in passes:
        graph, _ = get_pass(name).fn(graph, cfg)
    return graph, passes


@dataclass
class Objective:
    """Scores one trial; holds no state that outlives a trial."""

    cfg: SearchConfig
    base: Graph
    space: SeedSpace | JointSpace | LearnedSpace
    ctx: Context

    def __post_init__(self):
        self.started: list[int] = []  # trial ids this process ran, to fail them cleanly on Ctrl-C
        self.params = self.space.params
        self.queued = False  # every point of the space waits in the study (exhaustive samplers; studies.open_study)
        # A stop signal may interrupt at once only while this is true (signals.Signals): never inside a storage
        # call, where an interrupt could leave a lock held or a record half written.
        self.computing = False
        self.on_start = None  # called first in every trial (signals.Signals.check)

    def measure(self, graph: Graph) -> tuple[Graph, dict[str, float], dict[str, float]]:
        """Run every runner in order: software metrics, then hardware ones."""
        out = {"software": {}, "hardware": {}}
        for runner in self.cfg.runners:
            graph, m = runner(graph, self.ctx)
            out[runner.kind].update(m)
        return graph, out["software"], out["hardware"]

    def repeated(self, chosen: dict[str, Any], trial: optuna.Trial, sw: dict[str, float],
                 hw: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """The metrics' means over the point trained with each of the learned space's seeds (``repeats``); each
        seed's own are kept in the trial's ``repeats``. A repeat that collapses prunes the trial."""
        runs = [{"seed": self.ctx.seed, **sw, **hw}]
        for seed in self.space.more_seeds(self.ctx.seed):
            try:
                _, s, h = self.measure(self.space.build_seed(self.base, chosen, self.ctx, seed))
            except CandidateError as e:
                raise CandidateError(f"repeat with seed {seed}: {e}") from None
            runs.append({"seed": seed, **s, **h})
        trial.set_user_attr("repeats", runs)
        return ({k: statistics.fmean(r[k] for r in runs) for k in sw},
                {k: statistics.fmean(r[k] for r in runs) for k in hw})

    def scale(self, values: dict[str, float]) -> dict[str, float]:
        return {m.name: m.scale * values[m.name] for m in self.cfg.metrics}

    def objective_values(self, scaled: dict[str, float]) -> list[float]:
        if not self.cfg.setup.sum_scaled_metrics:
            return [scaled[m.name] for m in self.cfg.metrics]
        return [sum(v if m.direction == self.cfg.setup.direction else -v
                    for m, v in zip(self.cfg.metrics, scaled.values()))]

    def __call__(self, trial: optuna.Trial) -> list[float]:
        if self.on_start is not None:
            self.on_start()
        return self._trial(trial)

    def _trial(self, trial: optuna.Trial) -> list[float]:
        trial_id = _optuna.trial_id(trial)
        self.started.append(trial_id)
        if self.queued and "fixed_params" not in trial.storage.get_trial_system_attrs(trial_id):
            # Every point was queued and another worker took the last one a moment ago.
            trial.set_user_attr("pruned_reason", "surplus: every point of the space was taken by other workers")
            trial.study.stop()
            raise optuna.TrialPruned("every point of the space is taken")
        # Before any parameter: a trial that holds a point always says which process ran it.
        flush = getattr(trial.storage, "flush", lambda trial_id: None)  # the journal defers its records
        trial.storage.set_trial_system_attr(trial_id, WORKER_ATTR, WORKER)
        flush(trial_id)
        chosen = {name: (self.space.suggest(trial, name) if isinstance(self.space, LearnedSpace)
                         else trial.suggest_categorical(name, choices)) for name, choices in self.params.items()}
        flush(trial_id)  # the point is on disk before it is measured: other workers and a resume see it
        self.computing = True  # a stop signal lands here at once; during storage calls it waits (signals.py)
        try:  # settings that cannot be combined prune the trial; any other error stops the search
            if self.on_start is not None:
                self.on_start()  # a signal that came while the point was written
            graph, passes = build_candidate(self.base, self.space, chosen, self.ctx, trial)
            graph, sw, hw = self.measure(graph)
            if isinstance(self.space, LearnedSpace) and self.space.spec.setup.repeats > 1:
                sw, hw = self.repeated(chosen, trial, sw, hw)
        except CandidateError as e:
            self.computing = False
            trial.set_user_attr("pruned_reason", str(e))
            raise optuna.TrialPruned(str(e)) from None
        finally:
            self.computing = False
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
