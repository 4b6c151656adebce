"""Search pieces in Python: config checks, spaces, objectives, Pareto fronts."""

import re

import pytest

from bitsmith.errors import BitsmithError
from bitsmith.search.config import parse_search
from bitsmith.search.runners import Context
from bitsmith.search.spaces import build_space, check_space
from bitsmith.search.study import Objective
from tests.helpers import assert_unchanged, graph_of, snapshot


def quant_space(by="type", **seed):
    return {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": by},
            "seed": {"default": {"config": {"name": [None]}}, **seed}}


LINEAR = {"config": {"name": ["integer"], "data_in_width": [4, 8], "weight_width": [2, 4, 8], "bias_width": [8]}}


def search_cfg(space=None, metrics=None, **setup):
    return {"search_space": space or quant_space(linear=LINEAR),
            "strategy": {"sw_runner": {"basic_evaluation": {"num_samples": 64}},
                         "hw_runner": {"average_bitwidth": {"compare_to": 32}},
                         "setup": {"n_trials": 5, "sampler": "random", **setup},
                         "metrics": metrics or {"accuracy": {"scale": 1.0, "direction": "maximize"},
                                                "average_bitwidth": {"scale": 0.2, "direction": "minimize"}}}}


def test_space_by_type_exposes_only_lists_of_several():
    g = graph_of("jsc-toy")
    space = build_space(g, quant_space(linear=LINEAR))
    assert space.params == {"linear/data_in_width": [4, 8], "linear/weight_width": [2, 4, 8]}
    cfg = space.passes({"linear/weight_width": 4})[0][1]
    assert cfg["by"] == "type" and cfg["linear"]["config"]["weight_width"] == 4
    assert cfg["linear"]["config"]["data_in_width"] == 4  # unsampled: first choice


def test_space_by_name_applies_default_per_node_and_skips_inert_fields():
    g = graph_of("jsc-three-linear-layers")
    space = build_space(g, {"name": "graph/channel_multiply/channel_multiplier", "setup": {"by": "name"},
                            "seed": {"default": {"config": {"name": ["output_only"], "channel_multiplier": [1, 2]}},
                                     "seq_blocks_3": {"config": {"name": ["inplace"], "channel_multiplier": [1, 2]}},
                                     "seq_blocks_6": {"config": {"name": [None]}}}})
    # The default reaches the Linear nodes only; the ReLU's "inplace" factor is no parameter.
    assert set(space.params) == {"seq_blocks_2/channel_multiplier", "seq_blocks_4/channel_multiplier"}


def test_joint_space_prefixes_and_orders_passes():
    g = graph_of("jsc-three-linear-layers")
    space = build_space(g, {"name": "graph/joint",
                            "channel_multiply": {"setup": {"by": "name", "mode": "auto"}, "seed": {
                                "seq_blocks_2": {"config": {"name": ["output_only"], "channel_multiplier": [1, 2]}}}},
                            "quantize": {"setup": {"by": "type"}, "seed": {"linear": LINEAR}}})
    assert "channel_multiply:seq_blocks_2/channel_multiplier" in space.params
    assert "quantize:linear/weight_width" in space.params
    assert [name for name, _ in space.passes({})] == ["channel_multiply", "quantize"]


@pytest.mark.parametrize("space,message", [
    (quant_space(linear={"config": {"name": ["integer"], "weight_width": []}}),
     r"weight_width = \[\] in the config: expected at least 1 value"),
    (quant_space(linear={"config": {"name": ["integer"], "wieght_width": [2]}}), "did you mean 'weight_width'"),
    (quant_space(linear={"config": {"name": ["integer"], "data_in_width": [0, 8], "weight_width": [4],
                                    "bias_width": [4]}}), r"data_in_width\[0\] = 0 in the config: expected a value >= 1"),
    (quant_space(linear={"config": {"name": ["integer"], "data_in_width": [8] * 2000}}),
     "at most 1024 values"),
    (quant_space(linear={"config": {"name": ["integer"], "data_in_width": [8]}}), "on a Linear needs weight_width"),
    ({"name": "graph/quantize/mixed_precision"}, "did you mean 'graph/quantize/mixed_precision_ptq'"),
])
def test_space_mistakes_fail_before_any_trial(space, message):
    g = graph_of("jsc-toy")
    with pytest.raises(BitsmithError, match=message):
        check_space(g, build_space(g, space))


@pytest.mark.parametrize("space,message", [
    (quant_space("name", seq_blocks_12={"config": {"name": [None]}}, seq_blocks_2=LINEAR),
     r"\[search.search_space.seed.seq_blocks_12\] matches no node .*did you mean 'seq_blocks_2'"),
    (quant_space(lineer=LINEAR, linear=LINEAR), "matches no layer type .*did you mean 'linear'"),
    (quant_space("name", linear=LINEAR, seq_blocks_2=LINEAR), "'linear' is a layer type"),
])
def test_unmatched_seed_keys_warn_or_fail_under_strict(space, message, capsys):
    from bitsmith.config import Notes

    g = graph_of("jsc-toy")
    built = build_space(g, space, Notes(strict=False))
    assert re.search(message, capsys.readouterr().err)
    assert built.params  # the matched seed is searched
    with pytest.raises(BitsmithError, match=message + r".*\(--strict makes this an error\)"):
        build_space(g, space, Notes(strict=True))


@pytest.mark.parametrize("setup,message", [
    ({"n_trials": 0}, r"\[search.strategy.setup\] n_trials = 0 in the config: expected a value >= 1"),
    ({"sampler": "tpee"}, "sampler = 'tpee' .*did you mean 'tpe'"),
    ({"sampler": 3}, "sampler = 3 .*expected a string"),
    ({"sum_scaled_metrics": "false"}, "sum_scaled_metrics = 'false' .*expected true or false"),
    ({"seed": 2**64}, "expected a value <= 4294967295"),
    ({"direction": "up"}, "direction = 'up'"),
    ({"n_trails": 3}, "did you mean 'n_trials'"),
])
def test_setup_mistakes(setup, message):
    from bitsmith.search.samplers import make_sampler

    with pytest.raises(BitsmithError, match=message):
        cfg = parse_search(search_cfg(**setup))
        make_sampler(cfg.setup.sampler, 0, {})


def test_metric_no_runner_produces():
    with pytest.raises(BitsmithError, match=r"metric 'latency' .*is produced by no runner.*sw_runner.latency"):
        parse_search(search_cfg(metrics={"latency": {"scale": 1.0, "direction": "minimize"}}))


def test_basic_train_never_fits_on_the_scoring_split():
    raw = search_cfg()
    raw["strategy"]["sw_runner"]["basic_train"] = {"data_loader": "val_dataloader"}
    with pytest.raises(BitsmithError, match="fine-tuning uses the training split"):
        parse_search(raw)


def test_unknown_runner():
    raw = search_cfg()
    raw["strategy"]["hw_runner"]["avg_bitwidth"] = {}
    with pytest.raises(BitsmithError, match="did you mean 'average_bitwidth'"):
        parse_search(raw)


def test_weighted_sum_flips_opposite_directions_and_reads_negative_scales():
    cfg = parse_search(search_cfg(sum_scaled_metrics=True, direction="maximize"))
    g = graph_of("jsc-tiny")
    obj = Objective(cfg, g, build_space(g, cfg.space), None)
    scaled = obj.scale({"accuracy": 0.9, "average_bitwidth": 5.0})
    assert scaled == {"accuracy": 0.9, "average_bitwidth": 1.0}
    assert obj.objective_values(scaled) == [pytest.approx(0.9 - 1.0)]
    # An older file: negative scale, same direction as the study -> minimized, no warning.
    old = parse_search(search_cfg(sum_scaled_metrics=True, metrics={
        "accuracy": {"scale": 1.0}, "average_bitwidth": {"scale": -0.2, "direction": "maximize"}}))
    assert old.metrics[1].direction == "minimize" and old.metrics[1].scale == 0.2 and not old.warnings
    # Both a negative scale and an opposite direction: ambiguous, read once, with a warning.
    amb = parse_search(search_cfg(sum_scaled_metrics=True, metrics={
        "accuracy": {"scale": 1.0}, "average_bitwidth": {"scale": -0.2, "direction": "minimize"}}))
    assert amb.metrics[1].direction == "minimize" and amb.metrics[1].scale == 0.2
    assert len(amb.warnings) == 1 and "read as minimize once" in amb.warnings[0]


def test_trials_never_touch_the_base_graph():
    from bitsmith.data import get_dataset

    data = get_dataset("digits")
    g = graph_of("digits-mlp", (64,), 10)
    raw = search_cfg()
    raw["strategy"]["sw_runner"]["basic_train"] = {"max_steps": 3}
    cfg = parse_search(raw)
    snap = snapshot(g)
    obj = Objective(cfg, g, build_space(g, cfg.space), Context(data, __import__("torch").device("cpu"), 0))
    import optuna

    study = optuna.create_study(directions=cfg.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(obj, n_trials=4)
    assert_unchanged(g, snap)
    assert all(t.user_attrs["software_metrics"]["train_loss"] > 0 for t in study.trials)


# --- "prune" vs "stop": which errors a trial survives -------------------------------------------------

from typing import Literal  # noqa: E402

import optuna  # noqa: E402

from bitsmith.errors import CandidateError  # noqa: E402
from bitsmith.search.samplers import make_sampler  # noqa: E402


@pytest.fixture
def picky_runner():
    """A hardware runner, known only inside the test, that fails on one Linear weight width."""
    from bitsmith.config import Table
    from bitsmith.quant import formats
    from bitsmith.search.runners import RUNNERS, Runner

    class PickySettings(Table):
        fail_on: int
        error: Literal["candidate", "plain"] = "candidate"

    class Picky(Runner):
        name = "test_picky"
        kind = "hardware"
        Settings = PickySettings
        metrics = frozenset({"weight_width"})

        def __call__(self, graph, ctx):
            width = next(f["weight"].width for m in graph.gm.modules() if (f := formats(m)) and "weight" in f)
            if width == self.settings.fail_on:
                error = CandidateError if self.settings.error == "candidate" else BitsmithError
                raise error(f"test_picky refuses weight width {width}")
            return graph, {"weight_width": float(width)}

    assert "test_picky" not in RUNNERS
    RUNNERS["test_picky"] = Picky
    try:
        yield
    finally:
        del RUNNERS["test_picky"]


def _picky_study(fail_on: int, error: str, order=(4, 2, 8)):
    raw = {"search_space": quant_space(linear=LINEAR),
           "strategy": {"hw_runner": {"test_picky": {"fail_on": fail_on, "error": error}},
                        "setup": {"sampler": "random"},
                        "metrics": {"weight_width": {"direction": "minimize"}}}}
    cfg = parse_search(raw)
    g = graph_of("jsc-tiny")
    obj = Objective(cfg, g, build_space(g, cfg.space), None)
    study = optuna.create_study(directions=cfg.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    for w in order:  # a fixed order: the failing point first
        study.enqueue_trial({"linear/data_in_width": 8, "linear/weight_width": w})
    return study, obj


def test_candidate_error_while_measuring_prunes_the_trial_and_the_study_goes_on(picky_runner):
    study, obj = _picky_study(fail_on=4, error="candidate")
    study.optimize(obj, n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.COMPLETE]
    pruned = study.trials[0]
    assert pruned.params["linear/weight_width"] == 4
    assert pruned.user_attrs["pruned_reason"] == "test_picky refuses weight width 4"
    assert "hardware_metrics" not in pruned.user_attrs
    assert [t.values for t in study.trials[1:]] == [[2.0], [8.0]]
    assert [t.user_attrs["hardware_metrics"] for t in study.trials[1:]] == [{"weight_width": 2.0},
                                                                         {"weight_width": 8.0}]
    assert study.best_trial.number == 1


def test_plain_error_from_a_runner_stops_the_study(picky_runner):
    study, obj = _picky_study(fail_on=2, error="plain")
    with pytest.raises(BitsmithError, match="test_picky refuses weight width 2") as raised:
        study.optimize(obj, n_trials=3)
    assert type(raised.value) is BitsmithError  # not a CandidateError
    ran = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                                   optuna.trial.TrialState.PRUNED))
    assert [t.state for t in ran] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert ran[1].params["linear/weight_width"] == 2 and "pruned_reason" not in ran[1].user_attrs
    assert [t.state for t in study.trials][2:] == [optuna.trial.TrialState.WAITING]  # the third point never ran


def test_candidate_error_while_building_prunes_the_trial():
    # Strict widths: doubling seq_blocks_2's outputs leaves seq_blocks_4 with inputs it does not expect.
    raw = {"search_space": {"name": "graph/channel_multiply/channel_multiplier",
                            "setup": {"by": "name", "mode": "strict"},
                            "seed": {"seq_blocks_2": {"config": {"name": ["output_only"],
                                                                 "channel_multiplier": [2, 1]}}}},
           "strategy": {"hw_runner": {"params": {}}, "setup": {"sampler": "brute-force"},
                        "metrics": {"params": {"direction": "minimize"}}}}
    cfg = parse_search(raw)
    g = graph_of("jsc-three-linear-layers")
    obj = Objective(cfg, g, build_space(g, cfg.space), None)
    study = optuna.create_study(directions=cfg.directions, sampler=make_sampler(cfg.setup.sampler, 0, obj.params))
    study.enqueue_trial({"seq_blocks_2/channel_multiplier": 2})
    study.optimize(obj, n_trials=5)  # brute force: both points, then the study stops
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    reason = study.trials[0].user_attrs["pruned_reason"]
    assert "node 'seq_blocks_4' expects 16 input features" in reason and "gives 32" in reason
    assert study.trials[1].params == {"seq_blocks_2/channel_multiplier": 1}
    assert study.trials[1].user_attrs["hardware_metrics"] == {"params": sum(p.numel() for p in g.gm.parameters())}


@pytest.mark.parametrize("setup,latency,expected", [
    ({}, {}, 1),  # the default: one intra-op thread per process
    ({"num_threads": 2}, {}, 2),
    ({}, {"num_threads": 2}, 2),  # the latency table's setting, as older files write it
])
def test_threads_are_set_once_for_the_search_and_restored(tmp_path, monkeypatch, setup, latency, expected):
    import torch
    from rich.console import Console

    from bitsmith.config import load_settings
    from bitsmith.search.run import run_search

    cfg = search_cfg(n_trials=3, **setup)
    cfg["strategy"]["sw_runner"]["latency"] = {"min_repeats": 2, "max_time_ms": 1, **latency}
    settings = load_settings(None, model="digits-mlp", dataset="digits", project_dir=str(tmp_path), search=cfg)
    before = torch.get_num_threads()
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n) or real(n))
    summary = run_search(settings, console=Console(quiet=True))
    import json

    trials = json.loads((tmp_path / "digits-mlp_digits" / "search" / "latest" / "trials.json").read_text())
    assert [t["software_metrics"]["latency_threads"] for t in trials] == [expected] * 3
    assert calls == [expected, before]  # set once before the first trial, restored after: never per trial
    assert torch.get_num_threads() == before and summary["states"]["COMPLETE"] == 3


def test_thread_rule_follows_the_rows_scored_per_trial():
    """One thread when a trial scores few rows; torch's default from LARGE_EVALUATION_ROWS, single process only."""
    import torch

    from bitsmith.search.threads import LARGE_EVALUATION_ROWS, search_threads

    default = torch.get_num_threads()
    whole = parse_search(search_cfg())
    whole.runners[0].settings = whole.runners[0].settings.model_copy(update={"num_samples": None})
    assert search_threads(parse_search(search_cfg()), 100_000) == 1  # 64 rows per trial
    assert search_threads(whole, LARGE_EVALUATION_ROWS) == default
    assert search_threads(whole, LARGE_EVALUATION_ROWS - 1) == 1
    assert search_threads(whole, 100_000, n_workers=2) == 1  # workers give the parallelism
    assert search_threads(parse_search(search_cfg(num_threads=3)), 100_000) == 3
