"""Optuna samplers by name, each seeded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from bitsmith.errors import unknown_name

ConstraintsFn = Callable[[optuna.trial.FrozenTrial], list[float]] | None


def _tpe(seed, space, constraints):
    return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, multivariate=True,
                                      warn_independent_sampling=False)


def _cmaes(seed, space, constraints):
    # CMA-ES handles numeric parameters; categorical ones go to its independent sampler.
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Callable[[int, dict[str, list[Any]], ConstraintsFn], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsgaii": lambda seed, space, c: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=c),
    "nsgaiii": lambda seed, space, c: optuna.samplers.NSGAIIISampler(seed=seed, constraints_func=c),
    "random": lambda seed, space, c: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda seed, space, c: optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False),
    "cmaes": _cmaes,
    "gp": lambda seed, space, c: optuna.samplers.GPSampler(seed=seed, constraints_func=c,
                                                           warn_independent_sampling=False),
    "grid": lambda seed, space, c: optuna.samplers.GridSampler(space or {"_": [0]}, seed=seed),
    "brute-force": lambda seed, space, c: optuna.samplers.BruteForceSampler(seed=seed),
}
SAMPLERS["brute_force"] = SAMPLERS["brute-force"]  # MASE lab spelling
SAMPLERS["bruteforce"] = SAMPLERS["brute-force"]
EXHAUSTIVE = {"grid", "brute-force", "brute_force", "bruteforce"}


def make_sampler(name: str, seed: int, space: dict[str, list[Any]], constraints: ConstraintsFn):
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, [n for n in SAMPLERS if n not in ("brute_force", "bruteforce")],
                           "in [search.strategy.setup]")
    return SAMPLERS[name](seed, space, constraints)
