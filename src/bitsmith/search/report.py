"""What a search prints and writes: the best-trials table, JSON/CSV, plots; and ``bitsmith report``, which
writes them again from a stored study."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.schema import Notes
from bitsmith.search.prepare import prepare_search
from bitsmith.search.storage import StorageOptions, hide_password, open_storage, resolve_study_name, study_names
from bitsmith.search.studies import open_study, optuna_quiet, study_settings
from bitsmith.search.study import best_trials, build_candidate, is_feasible


def write_outputs(search, study, console, storage: str | None, full: bool = True) -> dict[str, Any]:
    """Every file a search leaves, from what the study holds (so a resumed or interrupted run is complete).

    ``full = False`` (a stop by Ctrl-C or SIGTERM) writes the tables only: the best designs'
    checkpoints and test figures may need re-training, which belongs in the next run or in
    ``bitsmith report``.
    """
    import tomli_w

    from bitsmith.checkpoint import save_checkpoint
    from bitsmith.jobs import checkpoint_meta
    from bitsmith.train import evaluate

    settings, cfg, objective, base, out = search.settings, search.cfg, search.objective, search.base, search.out
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    write_trials(trials, out)
    best = best_trials(study, cfg.directions)
    tests, entries = {}, []
    for t in best if full else []:
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
        entries.append({**trial_row(t), "test_metrics": test, "checkpoint": str(ckpt),
                        "config_file": str(d / "config.toml")})
    if not full:
        entries = [trial_row(t) for t in best]
    names = [m.name for m in cfg.metrics] if not cfg.setup.sum_scaled_metrics else ["weighted sum"]
    (out / "best.json").write_text(json.dumps(
        {"study": study.study_name, "storage": hide_password(storage) if storage else str(out / "study.journal"),
         "directions": cfg.directions,
         "metrics": [m.__dict__ for m in cfg.metrics], "best": entries}, indent=1, default=str))
    plots = []
    if full and any(t.state.name == "COMPLETE" for t in trials):
        plot_history(trials, cfg.directions, names, out / "history.png")
        plots.append(out / "history.png")
        if len(cfg.metrics) >= 2:
            plot_pareto(trials, best, cfg.metrics[1].name, cfg.metrics[0].name, out / "pareto.png")
            plots.append(out / "pareto.png")
    print_best(best, tests, console)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "WAITING")}
    queued = f", {states['WAITING']} queued" if states["WAITING"] else ""
    console.print(f"{len(trials)} trials ({states['COMPLETE']} complete, {states['PRUNED']} pruned, "
                  f"{states['FAIL']} failed{queued}) in study {study.study_name!r}\nwritten to {out}: best.json, "
                  f"trials.csv, trials.json" + (", best/trial_N/{model.ckpt,config.toml}" if full else "")
                  + "".join(f", {p.name}" for p in plots), highlight=False)
    return {"study": study.study_name, "n_trials": len(trials), "best": entries, "out": str(out),
            "states": states}


def _none_to_na(value: Any) -> Any:
    if value is None:
        return "NA"
    if isinstance(value, dict):
        return {k: _none_to_na(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_none_to_na(v) for v in value]
    return value


def _show(v: Any) -> Any:
    """A metric as the table prints it: counts exactly, small measured figures to 4 significant digits."""
    if not isinstance(v, float):
        return v
    v = float(v)  # a numpy float would print as np.float64(...)
    if not math.isfinite(v):
        return v
    if v.is_integer():  # params, MACs, BOPs, bits (a scale of 1.0 makes them floats)
        return int(v)
    if (v * 8).is_integer() or abs(v) >= 1000:
        # Bytes are multiples of 1/8 (3 decimals, exact); 4 digits would drop a large value's fraction.
        return round(v, 3)
    return float(f"{v:.4g}")


def _round(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: _show(v) for k, v in (d or {}).items()}


def trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
        "duration_s": t.duration.total_seconds() if t.duration else None,
        "feasible": is_feasible(t) if t.state == optuna.trial.TrialState.COMPLETE else None,
        "pruned_reason": t.user_attrs.get("pruned_reason"),
        "software_metrics": t.user_attrs.get("software_metrics"),
        "hardware_metrics": t.user_attrs.get("hardware_metrics"),
        "scaled_metrics": t.user_attrs.get("scaled_metrics"),
        "config": t.user_attrs.get("config"),
    }


def write_trials(trials: list[optuna.trial.FrozenTrial], out: Path) -> None:
    rows = [trial_row(t) for t in trials]
    (out / "trials.json").write_text(json.dumps(rows, indent=1, default=str))
    flat = []
    for r in rows:
        row = {k: r[k] for k in ("number", "state", "duration_s", "feasible", "pruned_reason")}
        for i, v in enumerate(r["values"] or []):
            row[f"value_{i}"] = v
        for group in ("params", "software_metrics", "hardware_metrics", "scaled_metrics"):
            prefix = {"params": "param", "software_metrics": "sw", "hardware_metrics": "hw",
                      "scaled_metrics": "scaled"}[group]
            row |= {f"{prefix}.{k}": v for k, v in (r[group] or {}).items()}
        flat.append(row)
    fields = list(dict.fromkeys(k for row in flat for k in row))
    with (out / "trials.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)


def print_best(best: list[optuna.trial.FrozenTrial], tests: dict[int, dict[str, float]], console) -> None:
    from rich.table import Table

    table = Table(title="Best trial(s):", title_justify="left", show_lines=True)
    for col in ("number", "software_metrics", "hardware_metrics", "scaled_metrics"):
        table.add_column(col, overflow="fold")
    for t in best:
        table.add_row(str(t.number), *(str(_round(t.user_attrs.get(k)))
                                       for k in ("software_metrics", "hardware_metrics", "scaled_metrics")))
    console.print(table)
    if tests:
        tt = Table(title="Test split (re-evaluated; validation figures above chose the designs):",
                   title_justify="left")
        for col in ("number", "test_accuracy", "test_loss"):
            tt.add_column(col)
        for n, m in tests.items():
            tt.add_row(str(n), f"{m['accuracy']:.4f}", f"{m['loss']:.4f}")
        console.print(tt)


def plot_history(trials, directions: list[str], names: list[str], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global state touched

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig = Figure(figsize=(7, 2.6 * len(directions)))
    axes = fig.subplots(len(directions), 1, squeeze=False)
    for i, (ax, direction) in enumerate(zip(axes[:, 0], directions)):
        xs = [t.number for t in done]
        ys = [t.values[i] for t in done]
        ax.scatter(xs, ys, s=12, alpha=0.6, label="trial")
        best, line = None, []
        for y in ys:
            best = y if best is None else (max(best, y) if direction == "maximize" else min(best, y))
            line.append(best)
        ax.step(xs, line, where="post", color="C3", label=f"best so far ({direction})")
        ax.set_ylabel(names[i])
        ax.legend(loc="best", fontsize=8)
    axes[-1, 0].set_xlabel("trial")
    fig.suptitle("optimisation history")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_pareto(trials, best, x: str, y: str, path: Path) -> None:
    """The first two metrics of every complete trial, the chosen designs highlighted."""
    from matplotlib.figure import Figure

    def value(t, name):
        m = {**(t.user_attrs.get("software_metrics") or {}), **(t.user_attrs.get("hardware_metrics") or {})}
        return m.get(name)

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for feasible, style in ((True, dict(c="C0", label="trial")), (False, dict(c="C7", marker="x", label="infeasible"))):
        pts = [(value(t, x), value(t, y)) for t in done if is_feasible(t) == feasible]
        if pts:
            ax.scatter(*zip(*pts), s=14, alpha=0.6, **style)
    front = sorted((value(t, x), value(t, y)) for t in best)
    if front:
        ax.plot(*zip(*front), "o-", color="C3", label="best / Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("designs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(settings: Settings, options: StorageOptions, console=None) -> dict[str, Any]:
    """Write the tables, plots and best checkpoints of a stored study, at any time, from any machine.

    The study's own settings come first; a config file and flags override them
    (e.g. ``--load`` where the checkpoint lives elsewhere on this machine).
    """
    from bitsmith.jobs import make_console

    console = console or make_console()
    with optuna_quiet():
        default_journal = settings.output_dir / "search" / "study.journal"
        if options.url is None and not default_journal.is_file():
            raise BitsmithError(f"no study journal at {default_journal}; give --project-dir / --project of a "
                                "search, or --storage and --study-name")
        store, _ = open_storage(options.url, default_journal, options.timeout)
        name, exists = resolve_study_name(store, options.study_name or settings.project_name, False)
        if not exists:
            raise BitsmithError(f"no study {name!r} in {hide_password(str(options.url or default_journal))}; studies "
                                f"there: {', '.join(study_names(store)) or 'none'}; choose one with --study-name")
        stored = study_settings(optuna.load_study(study_name=name, storage=store))
        if "settings" in stored:
            given = settings.model_dump(include=settings.model_fields_set)
            merged = Settings(**{**stored["settings"], **given})
            merged._source = settings.source if settings.model_fields_set else stored.get("source", "the study")
            settings = merged
        search = prepare_search(settings, None, Notes(settings.strict, quiet=True))
        study, _, _ = open_study(search, StorageOptions(options.url, name, options.timeout), fresh=False,
                                 create=False)
        return write_outputs(search, study, console, options.url, full=True)
