"""`bitsmith compare`: how sample-efficient each sampler is on one search's space, and each strategy (another
config's space and sampler, ``--with``) beside them.

Every point of a small enough space is evaluated once (the ground truth,
``truth``) and kept in a table beside the project, keyed by the search's record
digest; the sampler runs (in-memory Optuna studies, one per sampler and seed)
only look points up. ``strategies`` names what is compared and checks that other
configs measure the same thing; ``measure`` turns runs into curves and figures,
``output`` prints and writes them. See docs/compare.md for what is computed.

A table is checked when it is read (its key and a digest of its points); a
damaged one stops the command until ``--rebuild-truth`` evaluates it again,
keeping the old file beside it.
"""

from __future__ import annotations

import io
import json
import math
import time
from typing import Any, Self

from rich.console import Console

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError, unknown_name
from bitsmith.files import write_atomic
from bitsmith.runs import start
import numpy as np

from bitsmith.search.compare.measure import Measure, losses, pareto, summarise
from bitsmith.search.compare.output import json_safe, plot, print_fronts, print_table, write_curves
from bitsmith.search.compare.strategies import (WITH_FLAG, exhaustive_refusal, make_strategies, noisy_reason,
                                                prepare_others, reuse_inputs, size_text)
from bitsmith.search.compare.truth import REBUILD_FLAG, run_one, truth_key
from bitsmith.search.fronts import compare_fronts, designs_from_points
from bitsmith.search.prepare import prepare_search, space_size
from bitsmith.search.runners import produced
from bitsmith.search.samplers import ALIASES, SAMPLERS, public_names
from bitsmith.search.studies import optuna_quiet
from bitsmith.search.threads import search_threads

MAX_TRUTH = 4096  # at most this many points are evaluated for the ground truth
MAX_SEEDS = 1000
MAX_COMPARE_TRIALS = 100_000
FRONTS = ("accuracy", "luts", "bops")  # recorded together: the fronts under luts and under bops are compared


def parse_samplers(text: str) -> list[str]:
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise BitsmithError("--samplers: give one or more sampler names separated by commas, e.g. tpe,random")
    out = []
    for n in names:
        if n not in SAMPLERS:
            raise unknown_name("sampler", n, public_names(), "in --samplers")
        n = ALIASES.get(n, n)
        if n not in out:
            out.append(n)
    return out


def check_numbers(seeds: int, trials: int | None, tolerance: float) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise BitsmithError(f"--seeds {seeds}: use 1 to {MAX_SEEDS} seeds per sampler")
    if trials is not None and not 1 <= trials <= MAX_COMPARE_TRIALS:
        raise BitsmithError(f"--trials {trials}: use 1 to {MAX_COMPARE_TRIALS:,} trials per run")
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise BitsmithError(f"--tolerance {tolerance}: a fraction of the objective's range, 0 <= t < 1 "
                            "(e.g. 0.01)")


class Progress:
    """Where a long compare is: a bar on a terminal; in a log, a line at each tenth of a stage (deterministic,
    so reruns print the same lines)."""

    def __init__(self, console):
        self.console, self.bar, self.task = console, None, None
        self.terminal = console.is_terminal
        if self.terminal:
            from rich import progress as rp

            self.bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                   rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self) -> Self:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Take the bar away (before the results are printed, or on an error)."""
        if self.bar:
            self.bar.stop()
            self.bar = None

    def stage(self, description: str, total: int, done: int = 0) -> None:
        if self.bar:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(description, total=total, completed=done)

    def bar_advance(self, description: str | None = None, n: int = 1) -> None:
        if self.bar:
            self.bar.update(self.task, advance=n, description=description)

    def line(self, done: int, total: int, text: str) -> None:
        """``text`` in a log, when ``done`` is the last step or crosses a tenth of ``total``."""
        if not self.terminal and (done == total or done * 10 // total > (done - 1) * 10 // total):
            self.console.print(text, highlight=False)


def run_compare(settings: Settings, samplers: str, seeds: int, trials: int | None, tolerance: float = 0.01,
                console=None, rebuild_truth: bool = False, overwrite: bool = False,
                others: list[Settings] | tuple = ()) -> dict[str, Any]:
    """Compare samplers on the search ``settings`` describes, and the searches of ``others`` (``--with``, each
    with its own sampler), into a run folder ``compare/version_N``; a finished comparison with the same inputs
    is reused (``overwrite``: run it again)."""
    from bitsmith.jobs import make_console

    names = parse_samplers(samplers)
    check_numbers(seeds, trials, tolerance)
    console = console or make_console()
    import torch

    old_threads = torch.get_num_threads()
    try:
        with optuna_quiet(), Progress(console) as progress:
            return _compare(settings, names, seeds, trials, tolerance, console, rebuild_truth, overwrite, progress,
                            list(others))
    finally:
        torch.set_num_threads(old_threads)


def _compare(settings, names, seeds, trials, tolerance, console, rebuild, overwrite, progress,
             others) -> dict[str, Any]:
    from bitsmith.jobs import check_output_dir

    t_start = time.perf_counter()
    # The config's own sampler plays no part; random takes any number of objectives.
    search = prepare_search(settings, {"sampler": "random"}, settings.notes)
    settings = search.settings  # the checkpoint may name the model and data set, and so the project
    cfg, params = search.cfg, search.objective.params
    import torch

    torch.set_num_threads(search_threads(cfg, len(search.objective.ctx.data.val)))  # as a search does, once
    n_trials = trials or cfg.setup.n_trials
    directions = cfg.directions
    if not params:
        raise BitsmithError("this space has nothing to search: no parameter has more than one choice; give some "
                            "key of [search.search_space.seed] a list of two or more values")
    for n in names:
        if len(directions) > 1 and not SAMPLERS[n].multi_objective:
            raise BitsmithError(f"sampler {n!r} optimizes one objective, but this search has {len(directions)}; "
                                "drop it from --samplers or set sum_scaled_metrics = true")
    size = space_size(params)
    noisy = noisy_reason(search)
    exhaustive = [n for n in names if SAMPLERS[n].exhaustive]
    refused = exhaustive_refusal(search, exhaustive, f"--samplers {','.join(exhaustive)} visit", MAX_TRUTH)
    if refused:
        raise refused
    if rebuild and noisy:
        raise BitsmithError(f"{REBUILD_FLAG}: {noisy}, so this search has no ground-truth table to rebuild; "
                            f"drop {REBUILD_FLAG}")
    extra = prepare_others(search, others)
    for o in extra:
        own = o.cfg.setup.sampler
        if SAMPLERS[own].exhaustive and (refused := exhaustive_refusal(
                o, [own], f"{WITH_FLAG} {o.settings.source}: its sampler {own} visits", MAX_TRUTH)):
            raise refused
    # Across configs there is no ground truth: every strategy is measured against the best any run found.
    truth = not extra and size <= MAX_TRUTH and not noisy
    out = settings.output_dir / "compare"
    check_output_dir(out)
    key = truth_key(search)
    strategies = make_strategies(search, names, extra, out, rebuild)
    console.print(f"compare: model={settings.model} dataset={settings.dataset} space={size_text(search)} "
                  f"{'strategies' if extra else 'samplers'}={','.join(s.name for s in strategies)} seeds={seeds} "
                  f"trials={n_trials} tolerance={tolerance:g}", highlight=False)
    inputs = {"command": "compare", "key": key, "samplers": names, "seed": cfg.seed, "seeds": seeds,
              "trials": n_trials, "tolerance": tolerance}
    if extra:
        inputs |= {"with": reuse_inputs(extra), "strategies": [s.name for s in strategies]}
    run = start(out, inputs, overwrite or rebuild)
    if run.reused:
        done = run.reuse()
        console.print(done.get("table", ""), end="", markup=False, highlight=False, soft_wrap=True)
        console.print(f"reusing {run.dir}: a finished comparison of the same search, samplers, seeds and trials "
                      f"(its table above; {', '.join(done.get('files', []))}); pass --overwrite to run it again",
                      highlight=False)
        return {**json.loads((run.dir / "summary.json").read_text()), "out": str(run.dir), "reused_run": True}
    with run:  # a failure before anything is written leaves no run folder
        return _runs(run, strategies, bool(extra), seeds, n_trials, tolerance, truth, size, rebuild, console,
                     progress, t_start)


def two_fronts(cfg, table, histories, truth: bool) -> dict[str, Any] | None:
    """The fronts under luts and under bops, when the search records both and accuracy: over the whole space
    (ground truth), else over every point this comparison's runs evaluated (a point's first evaluation)."""
    if not set(FRONTS) <= produced(cfg.runners):
        return None
    if truth:
        rows = table.rows
    else:
        rows = {}
        for hs in histories.values():
            for h in hs:
                for point, row in h:
                    rows.setdefault(point, row)
    designs = designs_from_points(rows, FRONTS[0], FRONTS[1:])
    if not designs:
        return None
    over = "the whole space" if truth else "points evaluated"
    return {**compare_fronts(designs, FRONTS[1], FRONTS[2]), "over": over}


def _runs(run, strategies, several, seeds, n_trials, tolerance, truth, size, rebuild, console, progress,
          t_start) -> dict[str, Any]:
    """The ground truth, then every strategy over every seed; results into the run's folder. ``several``:
    strategies come from more than one config (``--with``)."""
    main = strategies[0]
    search, table = main.search, main.table
    cfg, params, directions = search.cfg, search.objective.params, search.cfg.directions
    signs = [1 if d == "maximize" else -1 for d in directions]
    tables = list({id(s.table): s.table for s in strategies}.values())
    out, key = run.dir, table.key
    if truth:
        before = len(table.rows)
        missing = size - before

        def step():
            done = before + table.evaluations
            progress.bar_advance()
            progress.line(table.evaluations, missing, f"ground truth: {done:,} of {size:,} points")

        if missing:
            progress.stage("ground truth", size, before)
        table.fill(params, step)
        what = "reused" if table.evaluations == 0 else f"evaluated {table.evaluations} new point(s) ({before} reused)"
        if rebuild:
            what = f"rebuilt, {what}"
        console.print(f"ground truth: {what}, {size:,} points, table {table.path}", highlight=False)
    elif several:
        console.print("ground truth: none; strategies on different configs are compared against the best any run "
                      "of any strategy found", highlight=False)
    elif main.noisy:
        console.print(f"ground truth: none; {main.noisy}, so every trial is evaluated afresh; compared against "
                      "the best any run found", highlight=False)
    else:
        console.print(f"ground truth: none; the space has {size:,} points (more than {MAX_TRUTH:,}); compared "
                      "against the best any run found (points evaluated are kept for reuse)", highlight=False)

    def evaluated() -> tuple[int, float]:
        return sum(t.evaluations for t in tables), sum(t.eval_seconds for t in tables)

    t_sample = time.perf_counter()
    _, eval_s_before = evaluated()
    histories: dict[str, list] = {s.name: [] for s in strategies}
    runs = len(strategies) * seeds
    progress.stage("sampler runs", runs * n_trials)
    for i, (st, s) in enumerate(((st, s) for st in strategies for s in range(seeds)), 1):
        seed = cfg.seed + s  # every strategy over the same sampler seeds
        what = f"{st.name}, seed {seed}"
        progress.bar_advance(f"sampler runs: {what} ({i} of {runs})", 0)
        h = run_one(st.table, st.search.objective.params, directions, st.search.cfg.constraints, st.sampler, seed,
                    n_trials, st.noisy is not None, on_trial=progress.bar_advance)
        histories[st.name].append(h)
        progress.bar_advance(n=n_trials - len(h))  # a run that stopped early (space exhausted)
        progress.line(i, runs, f"sampler runs: {i} of {runs} ({what} done)")
    progress.close()
    evaluations, eval_s = evaluated()
    sampling_s = time.perf_counter() - t_sample - (eval_s - eval_s_before)
    for t in tables:
        t.save(complete=len(t.rows) >= space_size(t.search.objective.params))
        if t.backup:
            console.print(f"ground truth: the previous table is kept as {t.backup}", highlight=False)

    if truth:
        reference = losses(table.rows.values(), signs)
    else:  # one reference for every strategy: the curves are comparable
        reference = losses([r for hs in histories.values() for h in hs for _, r in h], signs)
    if len(reference) == 0:
        raise BitsmithError("no feasible design anywhere: every point evaluated was pruned or breaks a constraint; "
                            "nothing to compare against")
    box = None
    if several and len(signs) > 1:  # each strategy's own front bounds the box, so none lies wholly outside it
        box = np.concatenate([pareto(p) for p in (losses([r for h in hs for _, r in h], signs)
                                                   for hs in histories.values()) if len(p)])
    measure = Measure(reference, signs, tolerance, box)
    at_opt, at_tol = measure.target()
    summary, curves = summarise(list(histories), histories, measure, n_trials, at_opt, at_tol)
    for st in strategies:
        summary[st.name] |= st.describe()
    kind = "best" if len(signs) == 1 else "hypervolume"
    label = ("weighted sum" if cfg.setup.sum_scaled_metrics else cfg.metrics[0].name) if kind == "best" \
        else "hypervolume / true front's" if truth else "hypervolume / best found"
    noun = "strategy" if several else "sampler"
    write_curves(curves, out / "curves.csv")
    png = out / f"compare_{kind}.png"
    optimum_text = f"{at_opt:.6g}" if kind == "best" else "1 (the whole front)"
    plot(curves, summary, n_trials, at_opt, at_tol, label, kind, truth, tolerance, measure.sign, png, noun)
    result = {"space_points": size, "ground_truth": truth, "key": key, "samplers": summary, "optimum": at_opt,
              "directions": directions, "tolerance": tolerance, "trials": n_trials, "seeds": seeds,
              "reference": (None if kind == "best" else
                            {"ideal": measure.ideal.tolist(), "range": measure.range.tolist(),
                             "point": measure.ref.tolist(), "true_front": len(measure.front)})}
    fronts = None
    if all(set(FRONTS) <= produced(st.search.cfg.runners) for st in strategies):
        fronts = two_fronts(cfg, table, histories, truth)
    if fronts is not None:
        result["fronts"] = fronts
    write_atomic(out / "summary.json", json.dumps(json_safe(result), indent=1, default=str), "summary")
    # Kept in run.json, to be shown again when the run is reused.
    shown = Console(file=io.StringIO(), width=console.width, soft_wrap=console.soft_wrap, record=True)
    named = sorted({p for st in strategies for p in st.search.objective.params})
    for c in (console, shown):
        print_table(c, summary, kind, n_trials, seeds, optimum_text, truth, tolerance, noun)
        if fronts is not None:
            print_fronts(c, fronts, truth, named)
    total = time.perf_counter() - t_start
    console.print(f"time: total {total:.1f}s, evaluating {eval_s:.1f}s ({evaluations} evaluations), "
                  f"sampling {sampling_s:.1f}s\nwritten to {out}: curves.csv, summary.json, {png.name}"
                  + (f"; ground truth {table.path}" if table.path and truth else ""), highlight=False)
    run.finish({"files": ["curves.csv", "summary.json", png.name], "table": shown.export_text()})
    return {**result, "out": str(out), "png": str(png), "evaluations": evaluations,
            "reused": evaluations == 0 and truth}
