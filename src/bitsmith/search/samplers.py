"""Optuna samplers by name, each seeded.

Constraints reach the samplers that use them (TPE, NSGA-II/III, GP) through
``Trial.set_constraint``; no sampler needs them at construction.
"""

from __future__ import annotations

from collections.abc import Callable
import warnings
from typing import Any

import optuna

from bitsmith.errors import unknown_name

def _tpe(seed, space):
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _cmaes(seed, space):
    # CMA-ES handles numeric parameters; categorical ones go to its independent sampler.
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Callable[[int, dict[str, list[Any]]], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsgaii": lambda seed, space: optuna.samplers.NSGAIISampler(seed=seed),
    "nsgaiii": lambda seed, space: optuna.samplers.NSGAIIISampler(seed=seed),
    "random": lambda seed, space: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda seed, space: optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False),
    "cmaes": _cmaes,
    "gp": lambda seed, space: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False),
    "grid": lambda seed, space: optuna.samplers.GridSampler(space or {"_": [0]}, seed=seed),
    "brute-force": lambda seed, space: optuna.samplers.BruteForceSampler(seed=seed),
}
SAMPLERS["brute_force"] = SAMPLERS["brute-force"]  # MASE lab spelling
SAMPLERS["bruteforce"] = SAMPLERS["brute-force"]
EXHAUSTIVE = {"grid", "brute-force", "brute_force", "bruteforce"}


def make_sampler(name: str, seed: int, space: dict[str, list[Any]]) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, [n for n in SAMPLERS if n not in ("brute_force", "bruteforce")],
                           "in [search.strategy.setup]")
    with warnings.catch_warnings():  # some samplers are marked experimental; they are still Optuna's own
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed, space)
