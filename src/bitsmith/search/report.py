"""What a search prints and writes: the best-trials table, JSON/CSV, plots; and ``bitsmith report``, which
writes them again from a stored study."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import optuna

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.files import write_atomic, write_error
from bitsmith.passes.luts import render_luts
from bitsmith.schema import Notes
from bitsmith.search.fronts import compare_fronts, designs_from_trials, report_lines
from bitsmith.search.plots import plot_history, plot_pareto
from bitsmith.search.prepare import default_study_name, prepare_search
from bitsmith.search.runners import produced
from bitsmith.search.storage import StorageOptions, hide_password, open_storage, resolve_study_name, study_names
from bitsmith.search.studies import objective_names, open_study, optuna_quiet, study_settings
from bitsmith.search.study import best_trials, build_candidate, is_feasible
from bitsmith.search.table import Rows, print_best
from bitsmith.stats import accuracy_interval


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
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(out, e, "folder") from None
    trials = study.get_trials(deepcopy=False)
    write_trials(trials, out)
    best = best_trials(study, cfg.directions)
    tests, entries = {}, []
    luts = next((r for r in cfg.runners if r.name == "luts"), None)
    for t in best if full else []:
        graph, passes = build_candidate(base, objective.space, t.params, objective.ctx, number=t.number)
        graph, _, _ = objective.measure(graph)  # re-runs basic_train when configured (seeded: same weights)
        test = evaluate(graph.gm, objective.ctx.data.test, objective.ctx.device)
        tests[t.number] = test
        d = out / "best" / f"trial_{t.number}"
        meta = {**checkpoint_meta(settings, objective.ctx.data), "passes": [list(p) for p in passes],
                "search_trial": t.number}
        ckpt = save_checkpoint(d / "model.ckpt", graph.gm, meta)
        toml = {"model": settings.model, "dataset": settings.dataset, "passes": dict(passes)}
        write_atomic(d / "config.toml", tomli_w.dumps(_none_to_na(toml)), "config")
        entries.append({**trial_row(t), "test_metrics": test, "checkpoint": str(ckpt),
                        "config_file": str(d / "config.toml")})
        if luts is not None:  # solved when the trial ran: read from the cache
            entries[-1]["luts_layers"] = luts.layers(graph)
    if not full:
        entries = [trial_row(t) for t in best]
    rows, intervals = accuracy_rows(search), {}
    if "accuracy" in produced(cfg.runners):
        entries = [{**e, "accuracy_interval": _intervals(e, rows)} for e in entries]
        intervals = {"accuracy_interval": {"level": 0.95, "method": "wilson",
                                           "rows": {"validation": rows.val, "test": rows.test}}}
    names = objective_names(cfg)
    fronts = _fronts(trials, cfg)
    write_atomic(out / "best.json", json.dumps(
        {"study": study.study_name, "storage": hide_password(storage) if storage else str(search.journal),
         "directions": cfg.directions,
         "metrics": [m.__dict__ for m in cfg.metrics], **intervals, "best": entries,
         **({"fronts": fronts} if fronts else {})}, indent=1, default=str), "table")
    plots = []
    if full and any(t.state.name == "COMPLETE" for t in trials):
        plot_history(trials, cfg.directions, names, out / "history.png")
        plots.append(out / "history.png")
        if len(cfg.metrics) >= 2:
            plot_pareto(trials, best, cfg.metrics[1].name, cfg.metrics[0].name, out / "pareto.png")
            plots.append(out / "pareto.png")
    print_best(best, tests, console, rows)
    _print_luts(entries, console)
    if fronts:
        for line in report_lines(fronts):
            console.print(line, highlight=False, markup=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "WAITING")}
    queued = f", {states['WAITING']} queued" if states["WAITING"] else ""
    console.print(f"{len(trials)} trials ({states['COMPLETE']} complete, {states['PRUNED']} pruned, "
                  f"{states['FAIL']} failed{queued}) in study {study.study_name!r}\nwritten to {out}: best.json, "
                  f"trials.csv, trials.json" + (", best/trial_N/{model.ckpt,config.toml}" if full else "")
                  + "".join(f", {p.name}" for p in plots), highlight=False)
    return {"study": study.study_name, "n_trials": len(trials), "best": entries, "out": str(out),
            "states": states}


def accuracy_rows(search) -> Rows:
    """The rows each accuracy is a fraction of (for its 95% interval), and what would give the validation
    figures more of them: all of the split when ``num_samples`` caps it, else a larger ``val_size``."""
    from bitsmith.data import recipe, split_sizes

    data, evaluation = search.objective.ctx.data, next((r for r in search.cfg.runners
                                                         if r.name == "basic_evaluation"), None)
    if evaluation is None:
        return Rows(test=len(data.test))
    val, cap = evaluation.rows(len(data.val)), evaluation.settings.num_samples
    if cap and cap < len(data.val):
        remedy = f"drop num_samples = {cap} from basic_evaluation (the split has {len(data.val):,} rows)"
    else:
        larger = next((v for v in (0.25, 0.5) if v > search.settings.val_size), None)
        total = len(data.train) + len(data.val) + len(data.test)
        remedy = (f"set val_size = {larger} ({split_sizes(total, recipe(larger))['val']:,} rows) and train the model "
                  "with it too" if larger else "give the data set more rows")
    return Rows(val, len(data.test), macro=val is None, remedy=remedy)


def _intervals(entry: dict[str, Any], rows: Rows) -> dict[str, list[float] | None]:
    """A design's validation and test accuracies' 95% intervals (None: not a count of rows)."""
    val = accuracy_interval((entry.get("software_metrics") or {}).get("accuracy"), rows.val)
    test = accuracy_interval((entry.get("test_metrics") or {}).get("accuracy"), rows.test)
    return {"validation": val and list(val), "test": test and list(test)}


def _fronts(trials, cfg) -> dict[str, Any] | None:
    """Where the fronts under luts and under bops differ, when the study records accuracy, luts and bops."""
    if not {"accuracy", "luts", "bops"} <= produced(cfg.runners):
        return None
    designs = designs_from_trials([trial_row(t) for t in trials if t.state.name == "COMPLETE"])
    return compare_fronts(designs, "luts", "bops") if designs else None


SHOWN = 6  # per-layer LUT tables printed at most; best.json has every design's


def _print_luts(entries: list[dict[str, Any]], console) -> None:
    """Per-layer LUTs of the best designs: all of them, or SHOWN spread over the front by the first objective."""
    designs = sorted((e for e in entries if e.get("luts_layers")), key=lambda e: e["values"][0])
    if not designs:
        return
    picked = designs if len(designs) <= SHOWN else [
        designs[round(i * (len(designs) - 1) / (SHOWN - 1))] for i in range(SHOWN)]
    rows = [{**row, "trial": e["number"]} for e in picked for row in e["luts_layers"]]
    some = "" if picked is designs else f" ({SHOWN} of {len(designs)}, spread over the front; all in best.json)"
    render_luts(rows, console, f"Per-layer LUTs of the best designs{some}:")


def _none_to_na(value: Any) -> Any:
    if value is None:
        return "NA"
    if isinstance(value, dict):
        return {k: _none_to_na(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_none_to_na(v) for v in value]
    return value


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
        # learned widths: training time, pruned share, validation accuracy after each epoch, each seed's metrics
        **{k: t.user_attrs[k] for k in ("learned", "val_accuracy_by_epoch", "repeats") if k in t.user_attrs},
    }


def write_trials(trials: list[optuna.trial.FrozenTrial], out: Path) -> None:
    rows = [trial_row(t) for t in trials]
    write_atomic(out / "trials.json", json.dumps(rows, indent=1, default=str), "table")
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
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(flat)
    write_atomic(out / "trials.csv", text.getvalue(), "table")


def write_report(settings: Settings, options: StorageOptions, console=None) -> dict[str, Any]:
    """Write the tables, plots and best checkpoints of a stored study, at any time, from any machine.

    The study's own settings, and the command-line changes it was run with, come
    first; a config file and flags override them (e.g. ``--load`` where the
    checkpoint lives elsewhere on this machine). Nothing is created but the
    study's outputs: a storage or study that is not there is an error.
    """
    from bitsmith.jobs import make_console

    console = console or make_console()
    with optuna_quiet():
        default_journal = settings.output_dir / "search" / "study.journal"
        store, _ = open_storage(options.url, default_journal, options.timeout, create=False)
        where = hide_password(str(options.url or default_journal))
        names = study_names(store)
        name = options.study_name or (default_study_name(settings) if settings.search else None)
        if name is None and len(names) == 1:
            name = names[0]  # the one study there: no name needed
        if name is None:
            raise BitsmithError(f"{len(names)} studies in {where} ({', '.join(names) or 'none'}); choose one with "
                                "--study-name")
        name, exists = resolve_study_name(store, name, False)
        if not exists:
            raise BitsmithError(f"no study {name!r} in {where}; studies there: {', '.join(names) or 'none'}; choose "
                                "one with --study-name")
        stored = study_settings(optuna.load_study(study_name=name, storage=store))
        if "settings" in stored:
            given = settings.model_dump(include=settings.model_fields_set)
            merged = Settings(**{**stored["settings"], **given})
            merged._source = settings.source if settings.model_fields_set else stored.get("source", "the study")
            settings = merged
        search = prepare_search(settings, stored.get("overrides"), Notes(settings.strict, quiet=True))
        study, _, _ = open_study(search, StorageOptions(options.url, name, options.timeout), fresh=False,
                                 create=False)
        return write_outputs(search, study, console, options.url, full=True)
