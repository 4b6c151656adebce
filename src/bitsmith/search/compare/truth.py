"""The ground truth of a comparison: every point's measurement, kept in a table keyed by the search's record
digest, and in-memory sampler runs that look points up."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitsmith.errors import BitsmithError, CandidateError
from bitsmith.search.learned import LearnedSpace
from bitsmith.search.prepare import record, record_digest
from bitsmith.search.study import build_candidate


def truth_key(search) -> str:
    """The record digest without what only the sampler run uses (sampler, seed)."""
    rec = record(search)
    rec.pop("sampler", None)
    rec.pop("seed", None)
    return record_digest(rec)


def point_key(chosen: dict[str, Any]) -> str:
    return json.dumps(chosen, sort_keys=True, default=str)


FORMAT = 2  # 2: the table carries its key and a digest of its contents (1, unversioned: neither)
REBUILD_FLAG = "--rebuild-truth"


def contents_digest(key: str, complete: bool, rows: dict[str, Any]) -> str:
    """sha256 over the key, completeness and every point's row: a hand edit or a torn copy shows."""
    text = json.dumps({"key": key, "complete": complete, "points": rows}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def backup_path(path: Path) -> Path:
    """The first free ``<table>.bak``, ``.bak2``, ...: a rebuild never writes over an earlier backup."""
    n = 1
    while True:
        candidate = path.with_name(path.name + (".bak" if n == 1 else f".bak{n}"))
        if not candidate.exists():
            return candidate
        n += 1


class Table:
    """point -> what the search's objective would record for it (values, constraint violations).

    ``rebuild``: start empty and, when saving, move the existing file aside (``backup_path``) instead of
    reading it.
    """

    def __init__(self, search, path: Path | None, key: str = "", rebuild: bool = False):
        self.search, self.path, self.key, self.rebuild = search, path, key, rebuild
        self.rows: dict[str, dict[str, Any]] = {}
        self.evaluations, self.eval_seconds = 0, 0.0
        self.reused = False
        self.backup: Path | None = None  # where a rebuild moved the old file
        if path is not None and path.exists() and not rebuild:
            self.rows = self._load(path)
            self.reused = True
        self.dirty = False

    def _load(self, path: Path) -> dict[str, dict[str, Any]]:
        """The checked rows of the file at ``path``; any damage is a BitsmithError naming the way out."""
        def damaged(what: str) -> BitsmithError:
            return BitsmithError(f"ground-truth table {path} {what}; pass {REBUILD_FLAG} to evaluate it again "
                                 f"(this file is then kept as {backup_path(path).name})")

        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except OSError as e:
            raise damaged(f"cannot be read ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise damaged("is not text (damaged or overwritten)") from None
        except (ValueError, RecursionError) as e:
            raise damaged(f"is not valid JSON ({str(e)[:80]}; truncated or damaged?)") from None
        if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
            raise damaged(f"is not a ground-truth table (a JSON {type(data).__name__} without \"points\")")
        if "digest" not in data:
            raise damaged("has no digest (written by an older bitsmith), so its values cannot be checked")
        if data.get("key") != self.key:
            raise damaged(f"belongs to another search (key {str(data.get('key'))[:20]!r}, this one {self.key!r})")
        if data["digest"] != contents_digest(self.key, data.get("complete"), data["points"]):
            raise damaged("does not match its digest (edited by hand or damaged)")
        bad = self._bad_row(data["points"])
        if bad:
            raise damaged(bad)
        return data["points"]

    def _bad_row(self, rows: dict[str, Any]) -> str | None:
        """What is wrong with the first malformed row (a digest recomputed by hand, a bug), or None."""
        params = self.search.objective.params
        n_values, n_constraints = len(self.search.cfg.directions), len(self.search.cfg.constraints)

        def numbers(xs, n) -> bool:
            return isinstance(xs, list) and len(xs) == n and all(isinstance(x, (int, float)) for x in xs)

        for k, row in rows.items():
            try:
                chosen = json.loads(k)
                in_space = (isinstance(chosen, dict) and chosen.keys() == params.keys()
                            and all(v in params[n] for n, v in chosen.items()))
            except ValueError:
                in_space = False
            if not in_space:
                return f"has a point that is not in this search's space ({k[:60]})"
            if not (isinstance(row, dict) and {"values", "violations", "pruned"} <= row.keys()
                    and (row["values"] is None or (numbers(row["values"], n_values)
                                                   and numbers(row["violations"], n_constraints)))):
                return f"has a malformed row for point {k[:60]}"
        return None

    def evaluate(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The search's own measurement of one point (a CandidateError: recorded as pruned)."""
        obj = self.search.objective
        t0 = time.perf_counter()
        try:
            graph, _ = build_candidate(obj.base, obj.space, chosen, obj.ctx)  # a learned space trains with ctx
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

    def fill(self, params: dict[str, list[Any]], step: Callable[[], None] | None = None) -> None:
        """Every point of the space in the table; ``step`` is called after each point newly evaluated. For the
        ground truth only: a noisy or learned space (ranges) never gets here."""
        names = list(params)
        for combo in itertools.product(*(params[n] for n in names)):
            before = self.evaluations
            self.get(dict(zip(names, combo)), noisy=False)
            if step and self.evaluations > before:
                step()

    def save(self, complete: bool) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        points = json.loads(json.dumps(self.rows, default=str))  # digest what a later run reads back
        text = json.dumps({"format": FORMAT, "key": self.key, "complete": complete,
                           "digest": contents_digest(self.key, complete, points), "points": points})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        if self.rebuild and self.path.exists():
            self.backup = backup_path(self.path)
            self.path.replace(self.backup)  # the old table is kept, never written over
        tmp.replace(self.path)  # a stop mid-write never leaves a torn table


def feasible(row: dict[str, Any]) -> bool:
    return row["values"] is not None and all(v <= 0 for v in row["violations"])


def run_one(table: Table, params, directions, constraints, name: str, seed: int, n_trials: int,
            noisy: bool, on_trial: Callable[[], None] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """One in-memory study; the (point, row) of every trial in order. ``on_trial`` is called after each."""
    import optuna

    from bitsmith.search.samplers import make_sampler

    study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed, params))
    history: list[tuple[str, dict[str, Any]]] = []
    space = table.search.objective.space
    learned = isinstance(space, LearnedSpace)  # ranges: drawn as the search draws them

    def objective(trial):
        chosen = {n: space.suggest(trial, n) if learned else trial.suggest_categorical(n, c)
                  for n, c in params.items()}
        row = table.get(chosen, noisy)
        history.append((point_key(chosen), row))
        if on_trial:
            on_trial()
        if row["values"] is None:
            raise optuna.TrialPruned(row["pruned"])
        for c, v in zip(constraints, row["violations"]):
            trial.set_constraint(c.metric, v)  # as the search does: constraint-aware samplers read it
        return row["values"]

    study.optimize(objective, n_trials=n_trials, gc_after_trial=False)  # brute force / grid may stop early
    return history
