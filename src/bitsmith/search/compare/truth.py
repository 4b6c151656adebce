"""The ground truth of a comparison: every point's measurement, kept in a table keyed by the search's record
digest, and in-memory sampler runs that look points up."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

from bitsmith.errors import CandidateError
from bitsmith.search.prepare import record
from bitsmith.search.study import build_candidate


def truth_key(search) -> str:
    """The record digest without what only the sampler run uses (sampler, seed)."""
    rec = record(search)
    rec.pop("sampler", None)
    rec.pop("seed", None)
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def point_key(chosen: dict[str, Any]) -> str:
    return json.dumps(chosen, sort_keys=True, default=str)


class Table:
    """point -> what the search's objective would record for it (values, constraint violations)."""

    def __init__(self, search, path: Path | None):
        self.search, self.path = search, path
        self.rows: dict[str, dict[str, Any]] = {}
        self.evaluations, self.eval_seconds = 0, 0.0
        self.reused = False
        if path is not None and path.is_file():
            self.rows = json.loads(path.read_text())["points"]
            self.reused = True
        self.dirty = False

    def evaluate(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The search's own measurement of one point (a CandidateError: recorded as pruned)."""
        obj = self.search.objective
        t0 = time.perf_counter()
        try:
            graph, _ = build_candidate(obj.base, obj.space, chosen)
            _, sw, hw = obj.measure(graph)
        except CandidateError as e:
            row = {"values": None, "violations": [], "metrics": {}, "pruned": str(e)}
        else:
            metrics = {**sw, **hw}
            row = {"values": obj.objective_values(obj.scale(metrics)),
                   "violations": [c.violation(metrics[c.metric]) for c in obj.cfg.constraints],
                   "metrics": metrics, "pruned": None}
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - t0
        return row

    def get(self, chosen: dict[str, Any], noisy: bool) -> dict[str, Any]:
        if noisy:
            return self.evaluate(chosen)
        key = point_key(chosen)
        if key not in self.rows:
            self.rows[key] = self.evaluate(chosen)
            self.dirty = True
        return self.rows[key]

    def fill(self, params: dict[str, list[Any]]) -> None:
        names = list(params)
        for combo in itertools.product(*(params[n] for n in names)):
            self.get(dict(zip(names, combo)), noisy=False)

    def save(self, complete: bool) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"complete": complete, "points": self.rows}, default=str))
        tmp.replace(self.path)  # a stop mid-write never leaves a torn table


def feasible(row: dict[str, Any]) -> bool:
    return row["values"] is not None and all(v <= 0 for v in row["violations"])


def run_one(table: Table, params, directions, constraints, name: str, seed: int, n_trials: int,
            noisy: bool) -> list[tuple[str, dict[str, Any]]]:
    """One in-memory study; the (point, row) of every trial in order."""
    import optuna

    from bitsmith.search.samplers import make_sampler

    study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed, params))
    history: list[tuple[str, dict[str, Any]]] = []

    def objective(trial):
        chosen = {n: trial.suggest_categorical(n, c) for n, c in params.items()}
        row = table.get(chosen, noisy)
        history.append((point_key(chosen), row))
        if row["values"] is None:
            raise optuna.TrialPruned(row["pruned"])
        for c, v in zip(constraints, row["violations"]):
            trial.set_constraint(c.metric, v)  # as the search does: constraint-aware samplers read it
        return row["values"]

    study.optimize(objective, n_trials=n_trials, gc_after_trial=False)  # brute force / grid may stop early
    return history
