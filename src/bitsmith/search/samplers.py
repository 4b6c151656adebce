"""Optuna samplers by name, each seeded.

Constraints reach the samplers that use them (TPE, NSGA-II/III, GP) through
``Trial.set_constraint``; no sampler needs them at construction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from bitsmith.errors import unknown_name

Space = dict[str, list[Any]]


@dataclass(frozen=True)
class SamplerSpec:
    """An Optuna sampler class by name (Optuna is imported only when one is made) and what it can do."""

    cls: str
    options: dict[str, Any] = field(default_factory=dict)
    multi_objective: bool = True
    exhaustive: bool = False  # visits every point once, then the study stops

    def make(self, seed: int, space: Space):
        import optuna

        args = [space or {"_": [0]}] if self.cls == "GridSampler" else []
        if self.cls == "BruteForceSampler":
            from bitsmith.search._optuna import brute_force_sampler

            cls = brute_force_sampler()
        else:
            cls = getattr(optuna.samplers, self.cls)
        return cls(*args, seed=seed, **self.options)


QUIET = {"warn_independent_sampling": False}
SAMPLERS: dict[str, SamplerSpec] = {
    "tpe": SamplerSpec("TPESampler", {"multivariate": True}),
    "nsgaii": SamplerSpec("NSGAIISampler"),
    "nsgaiii": SamplerSpec("NSGAIIISampler"),
    "random": SamplerSpec("RandomSampler"),
    "qmc": SamplerSpec("QMCSampler", {"scramble": True, **QUIET}),
    # CMA-ES handles numeric parameters; categorical ones go to its independent sampler.
    "cmaes": SamplerSpec("CmaEsSampler", QUIET, multi_objective=False),
    "gp": SamplerSpec("GPSampler", QUIET),
    "grid": SamplerSpec("GridSampler", exhaustive=True),
    "brute-force": SamplerSpec("BruteForceSampler", exhaustive=True),
}
ALIASES = {"brute_force": "brute-force", "bruteforce": "brute-force"}  # MASE lab spellings
SAMPLERS |= {alias: SAMPLERS[name] for alias, name in ALIASES.items()}


def public_names() -> list[str]:
    return [n for n in SAMPLERS if n not in ALIASES]


def make_sampler(name: str, seed: int, space: Space):
    """A seeded Optuna sampler; ``space`` (parameter -> choices) is what grid search walks."""
    import optuna

    if name not in SAMPLERS:
        raise unknown_name("sampler", name, public_names(), "in [search.strategy.setup]")
    with warnings.catch_warnings():  # some samplers are marked experimental; they are still Optuna's own
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name].make(seed, space)
