"""Every sampler, and every spelling MASE's files use, drives a real (small) search.

Each search is a mixed-precision space over a traced digits-mlp, scored on the
real digits validation split (first 64 rows) plus the average bit width.
"""

from __future__ import annotations

import optuna
import pytest
import torch

from bitsmith.errors import BitsmithError
from bitsmith.search.config import parse_search
from bitsmith.search.runners import Context
from bitsmith.search.samplers import ALIASES, SAMPLERS, make_sampler, public_names
from bitsmith.search.spaces import build_space
from bitsmith.search.study import Objective, build_candidate
from tests.helpers import graph_of

EXPECTED_NAMES = ["tpe", "nsgaii", "nsgaiii", "random", "qmc", "cmaes", "gp", "grid", "brute-force"]
# MASE's labs write these; it matches sampler names in any case.
MASE_SPELLINGS = {"bruteforce": "brute-force", "brute_force": "brute-force", "TPE": "tpe",
                  "BruteForce": "brute-force", "NSGAII": "nsgaii"}

SPACE = {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type"},
         "seed": {"default": {"config": {"name": [None]}},
                  "linear": {"config": {"name": ["integer"], "data_in_width": [4, 8], "weight_width": [2, 4, 8],
                                        "bias_width": [8]}},
                  "relu": {"config": {"name": ["integer"], "data_in_width": [4, 8]}}}}
PARAMS = {"linear/data_in_width": [4, 8], "linear/weight_width": [2, 4, 8], "relu/data_in_width": [4, 8]}
N_POINTS = 2 * 3 * 2
TWO = {"accuracy": {"scale": 1.0, "direction": "maximize"},
       "average_bitwidth": {"scale": 0.2, "direction": "minimize"}}


@pytest.fixture(scope="module")
def base():
    return graph_of("digits-mlp", (64,), 10)


@pytest.fixture(scope="module")
def ctx():
    from bitsmith.data import get_dataset

    return Context(get_dataset("digits"), torch.device("cpu"), 0)


def raw_search(sampler: str, objectives: int = 1, seed: int = 0, hardware_only: bool = False) -> dict:
    strategy = {"hw_runner": {"average_bitwidth": {"compare_to": 32}},
                "setup": {"sampler": sampler, "seed": seed, "n_trials": 5, "sum_scaled_metrics": objectives == 1},
                "metrics": TWO}
    if hardware_only:
        strategy["metrics"] = {"average_bitwidth": TWO["average_bitwidth"]}
    else:
        strategy["sw_runner"] = {"basic_evaluation": {"num_samples": 64}}
    return {"search_space": SPACE, "strategy": strategy}


def run_study(base, ctx, sampler: str, n_trials: int, objectives: int = 1, seed: int = 0,
              hardware_only: bool = False):
    cfg = parse_search(raw_search(sampler, objectives, seed, hardware_only))
    obj = Objective(cfg, base, build_space(base, cfg.space), ctx)
    assert obj.params == PARAMS
    study = optuna.create_study(directions=cfg.directions, sampler=make_sampler(cfg.setup.sampler, cfg.seed, obj.params))
    study.optimize(obj, n_trials=n_trials)
    return cfg, obj, study


def check_trials(study, obj, n_trials: int, objectives: int) -> None:
    trials = study.trials
    assert len(trials) == n_trials
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE, (t.number, t.state, t.user_attrs)
        assert set(t.params) == set(PARAMS) and all(t.params[k] in PARAMS[k] for k in PARAMS)
        sw, hw = t.user_attrs["software_metrics"], t.user_attrs["hardware_metrics"]
        assert 2.0 < hw["average_bitwidth"] < 32.0
        assert hw["memory_density"] == pytest.approx(32 / hw["average_bitwidth"])
        bits = 0.2 * hw["average_bitwidth"]
        if "basic_evaluation" in [r.name for r in obj.cfg.runners]:
            assert 0.0 <= sw["accuracy"] <= 1.0 and sw["loss"] > 0
            acc = sw["accuracy"]
        else:
            assert sw == {}
            acc = None
        if objectives == 1:  # the weighted sum: accuracy up, bit width (scale 0.2) down
            assert t.values == [pytest.approx(-bits if acc is None else acc - bits)]
        else:
            assert t.values == [pytest.approx(acc), pytest.approx(bits)]
    # The stored metrics are those of the design the params describe.
    t = trials[-1]
    graph, passes = build_candidate(obj.base, obj.space, t.params)
    assert t.user_attrs["config"] == passes
    _, sw, hw = obj.measure(graph)
    assert sw == t.user_attrs["software_metrics"] and hw == t.user_attrs["hardware_metrics"]
    if SAMPLERS[obj.cfg.setup.sampler].exhaustive:  # visits every point at most once
        points = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(points)) == len(points)


def test_public_names_are_every_documented_sampler():
    assert public_names() == EXPECTED_NAMES
    assert set(ALIASES) == {"bruteforce", "brute_force"}


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_each_sampler_runs_a_single_objective_search(base, ctx, name):
    cfg, obj, study = run_study(base, ctx, name, 5)
    assert cfg.setup.sampler == name and cfg.directions == ["maximize"]
    check_trials(study, obj, 5, 1)


@pytest.mark.parametrize("name", [n for n in EXPECTED_NAMES if SAMPLERS[n].multi_objective])
def test_each_multi_objective_sampler_runs_a_pareto_search(base, ctx, name):
    cfg, obj, study = run_study(base, ctx, name, 4, objectives=2)
    assert cfg.directions == ["maximize", "minimize"]
    check_trials(study, obj, 4, 2)
    assert study.best_trials  # a Pareto front exists


def test_only_cmaes_is_single_objective():
    assert [n for n in EXPECTED_NAMES if not SAMPLERS[n].multi_objective] == ["cmaes"]


@pytest.mark.parametrize("spelling,name", MASE_SPELLINGS.items())
def test_mase_spellings_run_the_same_sampler(base, spelling, name):
    cfg, obj, study = run_study(base, None, spelling, 4, hardware_only=True)
    assert SAMPLERS[cfg.setup.sampler] is SAMPLERS[name]
    assert type(study.sampler) is type(make_sampler(name, 0, PARAMS))
    check_trials(study, obj, 4, 1)


@pytest.mark.parametrize("spelling", ["CMAES", "cmaes"])
def test_cmaes_refuses_two_objectives_before_any_trial(spelling):
    with pytest.raises(BitsmithError, match=r"sampler 'cmaes' optimizes one objective, but this search has 2 "
                                            r"\(sum_scaled_metrics = false\); set sum_scaled_metrics = true"):
        parse_search(raw_search(spelling, objectives=2))


@pytest.mark.parametrize("name", ["grid", "brute-force"])
def test_exhaustive_samplers_visit_every_point_once_then_stop(base, name):
    _, _, study = run_study(base, None, name, N_POINTS + 5, hardware_only=True)
    points = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(study.trials) == N_POINTS and len(points) == N_POINTS


def _sequence(base, name: str, seed: int) -> list[dict]:
    n = 14 if name == "tpe" else 6  # TPE: past its 10 random start-up trials, into its model-based ones
    _, _, study = run_study(base, None, name, n, seed=seed, hardware_only=True)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", ["tpe", "random", "nsgaii", "qmc", "nsgaiii", "gp", "cmaes", "grid",
                                  "brute-force"])
def test_same_seed_same_sequence(base, name):
    first = _sequence(base, name, 7)
    assert _sequence(base, name, 7) == first
    assert len({tuple(sorted(p.items())) for p in first}) > 1  # a sequence, not one point repeated


@pytest.mark.parametrize("name", ["tpe", "random", "nsgaii", "qmc"])
def test_another_seed_another_sequence(base, name):
    assert _sequence(base, name, 7) != _sequence(base, name, 8)
