"""Running a search: one process or several workers on one study, resumed, retried, stopped cleanly.

The flow of one search (each step its own module):
``prepare`` (config, data, model, space) -> ``studies.open_study`` (create, resume
or join; the resume check; exhaustive points queued) -> ``recovery.recover``
(trials of dead processes failed, their points queued again) -> Optuna's
``study.optimize`` over ``study.Objective``, in this process and in
``workers`` -> ``report.write_outputs``. ``signals`` turns SIGINT and SIGTERM
into the same clean stop: the trial in flight is marked FAIL and the tables are
written from what the study holds, without re-training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.runs import point_latest
from bitsmith.search import workers
from bitsmith.search.prepare import prepare_search
from bitsmith.search.recovery import fail_unfinished, recover
from bitsmith.search.report import write_outputs
from bitsmith.search.signals import stop_on_signals
from bitsmith.search.storage import StorageOptions
from bitsmith.search.studies import objective_names, open_study, optuna_quiet, run_trials, trial_callbacks
from bitsmith.search.study import is_feasible
from bitsmith.search.threads import search_threads


def run_search(settings: Settings, storage: StorageOptions | str | None = None, fresh: bool = False,
               overrides: dict[str, Any] | None = None, console=None, n_workers: int = 1,
               export: str | None = None) -> dict[str, Any]:
    """Run (or resume) the search ``settings.search`` describes, in ``n_workers`` processes; write its results.

    ``export`` ("hls4ml" or "qonnx"): also export every design on the front, into ``best/trial_N/``.
    """
    options = storage if isinstance(storage, StorageOptions) else StorageOptions(storage)
    if not 1 <= n_workers <= workers.MAX_WORKERS:
        raise BitsmithError(f"--n-workers {n_workers}: use 1 to {workers.MAX_WORKERS} worker processes")
    if n_workers > 1 and options.url and ":memory:" in options.url:
        raise BitsmithError(f"--n-workers {n_workers} needs a storage that processes can share; an in-memory "
                            "database is private to one process: use the default journal file or a database file")
    if export is not None:  # before the search: a missing extra should not cost one
        from bitsmith.export import check_target

        check_target(export, flag="--export")
    with optuna_quiet(), stop_on_signals() as signals:
        summary = _run(settings, options, fresh, overrides, console, n_workers, signals)
    if export is not None and not summary["interrupted"]:
        summary["exports"] = _export_front(settings, summary, export, console)
    return summary


def _export_front(settings: Settings, summary: dict[str, Any], to: str, console) -> list[str]:
    """Export each best design's checkpoint beside it: best/trial_N/hls4ml/, best/trial_N/verilog/ or
    best/trial_N/model.onnx."""
    from bitsmith.export import export
    from bitsmith.jobs import make_console

    console = console or make_console()
    written = []
    for entry in summary["best"]:
        ckpt = Path(entry["checkpoint"])
        out = ckpt.parent / ("model.onnx" if to == "qonnx" else to)
        design = settings.model_copy(update={"load_name": str(ckpt), "load_type": "pl"})
        design._source = settings.source
        export(design, to, out, console=console)
        written.append(str(out))
    return written


def _run(settings, options, fresh, overrides, console, n_workers, signals) -> dict[str, Any]:
    import torch
    from optuna.trial import TrialState

    from bitsmith.jobs import make_console

    console = console or make_console()
    search = prepare_search(settings, overrides, settings.notes)
    search.objective.on_start = signals.check
    signals.objective = search.objective
    cfg, settings = search.cfg, search.settings
    console.print(f"search: model={settings.model} dataset={settings.dataset} sampler={cfg.setup.sampler} "
                  f"n_trials={cfg.setup.n_trials} seed={cfg.seed}"
                  + (f" workers={n_workers}" if n_workers > 1 else "")
                  + ("" if settings.load_name else " (no checkpoint: freshly initialised weights)"), highlight=False)
    study, store, backend = open_study(search, options, fresh, overrides=overrides)
    failed_now, enqueued = recover(study, store, cfg.setup.max_retry)
    if failed_now or enqueued:
        console.print(f"recovered: {failed_now} trial(s) of stopped processes marked failed, {enqueued} failed "
                      "point(s) queued again", highlight=False)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done_before = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(cfg.setup.n_trials - done_before, 0)
    if search.objective.queued:  # what is left of the space is what waits in the queue
        remaining = min(remaining, len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))))
    if done_before:
        console.print(f"resuming study {study.study_name!r}: {done_before} trials done, {remaining} to go",
                      highlight=False)
    label = objective_names(cfg)[0]
    progress = Progress(console, remaining, cfg.directions, backend, label, done_before, shared=n_workers > 1)
    threads = search_threads(cfg, len(search.objective.ctx.data.val), n_workers)
    old_threads = torch.get_num_threads()
    interrupted = False
    procs = workers.start_workers(search, options, study.study_name, overrides, n_workers - 1, threads) \
        if remaining and n_workers > 1 else []
    try:
        torch.set_num_threads(threads)  # once for the whole search, never per trial
        with progress.bar:
            if remaining:
                # n_trials is the study's total, also when several workers share it.
                run_trials(study, store, search, remaining, trial_callbacks(cfg, signals.check, progress),
                           n_jobs=cfg.setup.n_jobs)
                progress(study, None)  # the last count, other workers' trials included
        workers.join(procs)
    except KeyboardInterrupt:
        interrupted = True
        fail_unfinished(store, search.objective.started)
        workers.stop(procs)
    finally:
        torch.set_num_threads(old_threads)
    if backend is not None:
        backend.sync()
    summary = write_outputs(search, study, console, options.url, full=not interrupted)
    point_latest(search.out, link=search.root / "latest")  # <project>/search/latest: the study run last
    summary["interrupted"] = interrupted
    if interrupted:
        console.print(f"interrupted: {summary['states']['COMPLETE']} trials complete; tables written to {search.out}. "
                      "The same command resumes (the trial in flight is run again); `bitsmith report` writes the "
                      "best designs' checkpoints", highlight=False)
    elif not summary["best"]:
        summary["failed"] = _no_design(study, console)
    return summary


def _no_design(study, console) -> bool:
    """Say why no trial gave a design (every one pruned, or infeasible); True when none completed."""
    from collections import Counter

    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        console.print(f"no feasible design: all {len(complete)} complete trials break a constraint "
                      "(see trials.csv, column feasible)", highlight=False)
        return False
    reasons = Counter(t.user_attrs.get("pruned_reason", "unknown") for t in trials if t.state == TrialState.PRUNED)
    console.print(f"no trial completed: {sum(reasons.values())} pruned, for these reasons:", highlight=False)
    for reason, n in reasons.most_common():
        console.print(f"  {n} x {reason}", highlight=False, markup=False)
    return True


class Progress:
    """A rich progress bar fed by Optuna callbacks; fsyncs the journal after each trial."""

    def __init__(self, console, total: int, directions: list[str], backend, label: str = "objective",
                 done_before: int = 0, shared: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[best]}"), console=console)
        self.task = self.bar.add_task("search", total=total, best="")
        self.directions, self.backend, self.label = directions, backend, label
        self.done_before, self.shared = done_before, shared
        self.best: float | None = None

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        if self.backend is not None:
            self.backend.sync()
        text = ""
        if trial is not None and trial.state == TrialState.COMPLETE and is_feasible(trial):
            v = trial.values[0]  # several objectives: the best of the first one
            better = self.best is None or (v > self.best if self.directions[0] == "maximize" else v < self.best)
            self.best = v if better else self.best
        if self.best is not None:
            text = f"best {self.label} {self.best:.4g}"
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        if self.shared or trial is None:  # other workers' trials count too
            done = len(study.get_trials(deepcopy=False, states=finished)) - self.done_before
            self.bar.update(self.task, completed=done, best=text)
        else:
            self.bar.update(self.task, advance=int(trial.state in finished), best=text)
