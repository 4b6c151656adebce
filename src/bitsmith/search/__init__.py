"""Search a design space of a trained model with Optuna: ``bitsmith search``."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.search.storage import StorageOptions


def run_search(settings: Settings, storage: str | None = None, fresh: bool = False,
               overrides: dict[str, Any] | None = None, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the search ``settings.search`` describes; write and print its results."""
    import optuna

    with _optuna_quiet(optuna):
        return _run_search(settings, storage, fresh, overrides, console)


def _run_search(settings, storage, fresh, overrides, console) -> dict[str, Any]:
    import optuna
    import torch

    from bitsmith.graph import trace
    from bitsmith.jobs import check_output_dir, make_console, prepare
    from bitsmith.search.config import parse_search
    from bitsmith.search.runners import Context
    from bitsmith.search.samplers import make_sampler
    from bitsmith.search.spaces import build_space, check_space
    from bitsmith.search.storage import open_storage, resolve_study_name
    from bitsmith.search.study import Objective, Progress, config_hash

    console = console or make_console()
    cfg = parse_search(settings.search, settings.seed, overrides, settings.source)
    notes = settings.notes
    for warning in cfg.warnings:
        notes.warn(warning)
    out = settings.output_dir / "search"
    check_output_dir(out)
    p = prepare(settings)
    settings = p.settings
    console.print(f"search: model={settings.model} dataset={settings.dataset} sampler={cfg.setup.sampler} "
                  f"n_trials={cfg.setup.n_trials} seed={cfg.seed}"
                  + ("" if settings.load_name else " (no checkpoint: freshly initialised weights)"), highlight=False)
    base = trace(p.model.eval(), p.data.in_shape)
    space = build_space(base, cfg.space, notes)
    check_space(base, space)
    objective = Objective(cfg, base, space, Context(p.data, p.device, cfg.seed))
    sampler = make_sampler(cfg.setup.sampler, cfg.seed, objective.params)

    store, backend = open_storage(storage, out / "study.journal")
    name, exists = resolve_study_name(store, cfg.setup.study_name or settings.project_name, fresh)
    digest = config_hash(settings, cfg, base)
    if exists:  # loading writes nothing, so a refused resume leaves the storage as it was
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
    else:  # load_if_exists: workers on other machines may create the same study at the same moment
        study = optuna.create_study(study_name=name, storage=store, sampler=sampler, directions=cfg.directions,
                                    load_if_exists=True)
    stored = study.user_attrs.get("bitsmith_config")
    if stored is None:
        study.set_user_attr("bitsmith_config", digest)
        study.set_user_attr("bitsmith", {"model": settings.model, "dataset": settings.dataset,
                                         "metrics": [m.name for m in cfg.metrics]})
    elif stored != digest:
        raise BitsmithError(f"study {name!r} in {storage or out / 'study.journal'} was made with another config "
                            "(model, weights, data, space, metrics, sampler or seed); pass --fresh to start a new "
                            "study beside it (nothing is deleted)")
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done_before = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(cfg.setup.n_trials - done_before, 0)
    if done_before:
        console.print(f"resuming study {name!r}: {done_before} trials done, {remaining} to go", highlight=False)

    label = "weighted sum" if cfg.setup.sum_scaled_metrics else cfg.metrics[0].name
    progress = Progress(console, remaining, cfg.directions, backend, label)
    interrupted = False
    threads = next((t for r in cfg.runners if (t := r.threads())), None)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # once for the whole search, never per trial
    with progress.bar:
        try:
            if remaining:
                # n_trials is the study's total, also when several workers share it.
                total = optuna.study.MaxTrialsCallback(cfg.setup.n_trials, states=finished)
                study.optimize(objective, n_trials=remaining, timeout=cfg.setup.timeout, n_jobs=cfg.setup.n_jobs,
                               callbacks=[progress, total], gc_after_trial=False)
        except KeyboardInterrupt:
            interrupted = True
            _fail_unfinished(store, objective.started)
        finally:
            torch.set_num_threads(old_threads)
    if backend is not None:
        backend.sync()
    summary = write_outputs(settings, cfg, study, objective, base, out, console, storage)
    summary["interrupted"] = interrupted
    if interrupted:
        console.print(f"interrupted: {summary['n_trials']} trials in the study; outputs written to {out}",
                      highlight=False)
    elif not summary["best"]:
        summary["failed"] = _no_design(study, console)
    return summary


def _no_design(study, console) -> bool:
    """Say why no trial gave a design (every one pruned, or infeasible); True when none completed."""
    from collections import Counter

    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        console.print(f"no feasible design: all {len(complete)} complete trials break a constraint "
                      "(see trials.csv, column feasible)", highlight=False)
        return False
    reasons = Counter(t.user_attrs.get("pruned_reason", "unknown") for t in trials
                      if t.state == optuna.trial.TrialState.PRUNED)
    console.print(f"no trial completed: {sum(reasons.values())} pruned, for these reasons:", highlight=False)
    for reason, n in reasons.most_common():
        console.print(f"  {n} x {reason}", highlight=False, markup=False)
    return True


class _optuna_quiet:
    """Optuna logs every trial at INFO; bitsmith reports trials itself. Restores the caller's level."""

    def __init__(self, optuna):
        self.logging = optuna.logging

    def __enter__(self):
        self.level = self.logging.get_verbosity()
        self.logging.set_verbosity(self.logging.ERROR)

    def __exit__(self, *exc):
        self.logging.set_verbosity(self.level)


def write_outputs(settings, cfg, study, objective, base, out, console, storage) -> dict[str, Any]:
    """Every file a search leaves, from what the study holds (so a resumed or interrupted run is complete)."""
    import tomli_w

    from bitsmith.checkpoint import save_checkpoint
    from bitsmith.jobs import checkpoint_meta
    from bitsmith.search import report
    from bitsmith.search.study import best_trials, build_candidate
    from bitsmith.train import evaluate

    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    report.write_trials(trials, out)
    best = best_trials(study, cfg.directions)
    tests, entries = {}, []
    for t in best:
        graph, passes = build_candidate(base, objective.space, t.params)  # a stored point: it built before
        graph, _, _ = objective.measure(graph)  # re-runs basic_train when configured (seeded: same weights)
        test = evaluate(graph.gm, objective.ctx.data.test, objective.ctx.device)
        tests[t.number] = test
        d = out / "best" / f"trial_{t.number}"
        d.mkdir(parents=True, exist_ok=True)
        meta = {**checkpoint_meta(settings, objective.ctx.data), "passes": [list(p) for p in passes],
                "search_trial": t.number}
        ckpt = save_checkpoint(d / "model.ckpt", graph.gm, meta)
        toml = {"model": settings.model, "dataset": settings.dataset, "passes": dict(passes)}
        (d / "config.toml").write_text(tomli_w.dumps(_none_to_na(toml)))
        entries.append({**report.trial_row(t), "test_metrics": test, "checkpoint": str(ckpt),
                        "config_file": str(d / "config.toml")})
    names = [m.name for m in cfg.metrics] if not cfg.setup.sum_scaled_metrics else ["weighted sum"]
    (out / "best.json").write_text(json.dumps(
        {"study": study.study_name, "storage": storage or str(out / "study.journal"), "directions": cfg.directions,
         "metrics": [m.__dict__ for m in cfg.metrics], "best": entries}, indent=1, default=str))
    plots = []
    if any(t.state.name == "COMPLETE" for t in trials):
        report.plot_history(trials, cfg.directions, names, out / "history.png")
        plots.append(out / "history.png")
        if len(cfg.metrics) >= 2:
            report.plot_pareto(trials, best, cfg.metrics[1].name, cfg.metrics[0].name, out / "pareto.png")
            plots.append(out / "pareto.png")
    report.print_best(best, tests, console)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    console.print(f"{len(trials)} trials ({states['COMPLETE']} complete, {states['PRUNED']} pruned, "
                  f"{states['FAIL']} failed) in study {study.study_name!r}\nwritten to {out}: best.json, trials.csv, "
                  f"trials.json, best/trial_N/{{model.ckpt,config.toml}}"
                  + "".join(f", {p.name}" for p in plots), highlight=False)
    return {"study": study.study_name, "n_trials": len(trials), "best": entries, "out": str(out),
            "states": states}


def _fail_unfinished(storage, trial_ids: list[int]) -> None:
    """A Ctrl-C between Optuna's own steps can leave our last trial RUNNING: mark it failed."""
    import optuna

    for trial_id in trial_ids[-2:]:
        if storage.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING:
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)


def _none_to_na(value: Any) -> Any:
    if value is None:
        return "NA"
    if isinstance(value, dict):
        return {k: _none_to_na(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_none_to_na(v) for v in value]
    return value


__all__ = ["run_search"]
