"""Optuna samplers by name, each seeded.

Constraints reach the samplers that use them (TPE, NSGA-II/III, GP) through
``Trial.set_constraint``; no sampler needs them at construction.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from bitsmith.errors import unknown_name

Space = dict[str, list[Any]]


@dataclass(frozen=True)
class SamplerSpec:
    make: Callable[[int, Space], optuna.samplers.BaseSampler]
    multi_objective: bool = True
    exhaustive: bool = False  # visits every point once, then the study stops


SAMPLERS: dict[str, SamplerSpec] = {
    "tpe": SamplerSpec(lambda seed, space: optuna.samplers.TPESampler(seed=seed, multivariate=True)),
    "nsgaii": SamplerSpec(lambda seed, space: optuna.samplers.NSGAIISampler(seed=seed)),
    "nsgaiii": SamplerSpec(lambda seed, space: optuna.samplers.NSGAIIISampler(seed=seed)),
    "random": SamplerSpec(lambda seed, space: optuna.samplers.RandomSampler(seed=seed)),
    "qmc": SamplerSpec(lambda seed, space: optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                                                       warn_independent_sampling=False)),
    # CMA-ES handles numeric parameters; categorical ones go to its independent sampler.
    "cmaes": SamplerSpec(lambda seed, space: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
                         multi_objective=False),
    "gp": SamplerSpec(lambda seed, space: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)),
    "grid": SamplerSpec(lambda seed, space: optuna.samplers.GridSampler(space or {"_": [0]}, seed=seed),
                        exhaustive=True),
    "brute-force": SamplerSpec(lambda seed, space: optuna.samplers.BruteForceSampler(seed=seed), exhaustive=True),
}
ALIASES = {"brute_force": "brute-force", "bruteforce": "brute-force"}  # MASE lab spellings
SAMPLERS |= {alias: SAMPLERS[name] for alias, name in ALIASES.items()}


def public_names() -> list[str]:
    return [n for n in SAMPLERS if n not in ALIASES]


def make_sampler(name: str, seed: int, space: Space) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, public_names(), "in [search.strategy.setup]")
    with warnings.catch_warnings():  # some samplers are marked experimental; they are still Optuna's own
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name].make(seed, space)
