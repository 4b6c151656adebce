"""Running a search: one process or several workers on one study, resumed, retried, stopped cleanly.

- Nothing started is skipped: on every start, trials left RUNNING by a dead
  process become FAIL, and every failed point is enqueued again (at most
  ``max_retry`` times), so brute force and grid evaluate each point once in
  total. On database storages Optuna's heartbeat finds dead workers of other
  machines as well.
- SIGINT and SIGTERM stop the same way: the trial in flight is marked FAIL and
  the outputs are written from what the study holds, without re-training.
- A study remembers what its trials measured (config, runners, data contents,
  weights); resuming or joining with anything else is refused, the
  differences listed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitsmith.config import Notes, Settings
from bitsmith.errors import BitsmithError
from bitsmith.search.samplers import SAMPLERS
from bitsmith.search.storage import StorageOptions, hide_password

WORKER_ATTR = "bitsmith:worker"  # trial system attr: which process runs it (host, pid, process start)
RECORD_ATTR = "bitsmith_record"  # study user attr: what its trials measure, for the resume check
MAX_WORKERS = 256


@dataclass
class Search:
    """What one process needs to run trials of a search."""

    settings: Settings
    cfg: Any  # SearchConfig
    base: Any  # Graph
    objective: Any  # Objective
    out: Path


def prepare_search(settings: Settings, overrides: dict[str, Any] | None, notes: Notes) -> Search:
    """Check the config, load data and model, trace, build and pre-check the space."""
    from bitsmith.graph import trace
    from bitsmith.jobs import check_output_dir, prepare
    from bitsmith.search.config import parse_search
    from bitsmith.search.runners import Context
    from bitsmith.search.spaces import build_space, check_space
    from bitsmith.search.study import Objective

    cfg = parse_search(settings.search, settings.seed, overrides, settings.source)
    for warning in cfg.warnings:
        notes.warn(warning)
    out = settings.output_dir / "search"
    check_output_dir(out)
    p = prepare(settings)
    base = trace(p.model.eval(), p.data.in_shape)
    space = build_space(base, cfg.space, notes)
    check_space(base, space)
    if SAMPLERS[cfg.setup.sampler].exhaustive and space_size(space.params) > MAX_POINTS:
        raise BitsmithError(f"sampler {cfg.setup.sampler!r} visits every point, and this space has "
                            f"{space_size(space.params):,} (at most {MAX_POINTS:,}); use tpe, random or qmc, or "
                            "give fewer choices")
    return Search(p.settings, cfg, base, Objective(cfg, base, space, Context(p.data, p.device, cfg.seed)), out)


def record(search: Search) -> dict[str, Any]:
    """Everything a trial's measurements depend on: config, runners, data contents and weights."""
    import hashlib

    weights = hashlib.sha256()
    for name, tensor in search.base.gm.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    s, data = search.settings, search.objective.ctx.data
    return json.loads(json.dumps({"model": s.model, "dataset": s.dataset, "data": data.info.get("digest", data.source),
                                  "weights": weights.hexdigest()[:16], **search.cfg.digest_data()}, default=str))


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two records differ, as ``path: old -> new`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    short = lambda v: (repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "...")  # noqa: E731
    return [f"{path}: {short(old)} -> {short(new)}"]


def open_study(search: Search, options: StorageOptions, fresh: bool, create: bool = True, seed_offset: int = 0):
    """The study (created, resumed or joined), its storage and the journal backend (or None)."""
    import optuna

    from bitsmith.search.samplers import make_sampler
    from bitsmith.search.storage import open_storage, resolve_study_name

    setup = search.cfg.setup
    rdb = {"heartbeat_interval": setup.heartbeat_interval, "grace_period": setup.grace_period,
           "heartbeat_stale_trial_callback": _retry(setup.max_retry)}
    import warnings

    with warnings.catch_warnings():  # the heartbeat is marked experimental; it is Optuna's way to find dead workers
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        store, backend = open_storage(options.url, search.out / "study.journal", options.timeout,
                                      **({} if _is_journal(options.url) else rdb))
    if backend is not None:  # a journal: each new trial names its process in its first record
        store.creation_attrs = {WORKER_ATTR: WORKER}
    base_name = options.study_name or setup.study_name or search.settings.project_name
    name, exists = resolve_study_name(store, base_name, fresh and create)
    sampler = make_sampler(setup.sampler, search.cfg.seed + seed_offset, search.objective.params)
    where = options.url or search.out / "study.journal"
    created = False
    if exists:  # loading writes nothing, so a refused resume leaves the storage as it was
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
    elif not create:
        raise BitsmithError(f"no study {name!r} in {hide_password(str(where))}; run `bitsmith search` first, or name the study "
                            "with --study-name")
    else:
        try:
            study = optuna.create_study(study_name=name, storage=store, sampler=sampler,
                                        directions=search.cfg.directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # a worker elsewhere created it a moment ago
            study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
    mine = record(search)
    stored = study.user_attrs.get(RECORD_ATTR)
    if stored is None and not study.user_attrs.get("bitsmith_config"):
        study.set_user_attr(RECORD_ATTR, mine)
        study.set_user_attr("bitsmith", {"model": search.settings.model, "dataset": search.settings.dataset,
                                         "metrics": [m.name for m in search.cfg.metrics],
                                         "settings": search.settings.model_dump(mode="json"),
                                         "source": search.settings.source})
    elif stored != mine:
        diff = differences(stored, mine) if stored else ["it was made by an older bitsmith that kept no details"]
        raise BitsmithError(f"study {name!r} in {hide_password(str(where))} was made with another config ("
                            f"{'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); pass --fresh to start a new "
                            "study beside it (nothing is deleted), or --study-name to choose another")
    if SAMPLERS[setup.sampler].exhaustive and _queue_every_point(study, search, created):
        search.objective.queued = True
        # The queue decides every point; Optuna's brute force would stop the study at a failed point
        # that is queued again (it counts failed points as visited).
        study.sampler = optuna.samplers.RandomSampler(seed=search.cfg.seed + seed_offset)
    return study, store, backend


QUEUED_ATTR = "bitsmith_queued"  # study user attr: every point of an exhaustive space is queued
MAX_POINTS = 100_000


def _queue_every_point(study, search: Search, created: bool) -> bool:
    """Brute force and grid with several workers: every point is queued once, by the process that created
    the study, and workers only take queued points (Optuna's samplers alone can hand two racing workers
    the same point). The queue is shuffled with the search seed."""
    import itertools
    import random
    import time

    if study.user_attrs.get(QUEUED_ATTR) is not None:
        return True
    if not created and study.trials:
        return False  # a study from before queueing: its sampler goes on as it was
    if not created:  # the creator is queueing right now: wait for it
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if study.user_attrs.get(QUEUED_ATTR) is not None:
                return True
        raise BitsmithError(f"study {study.study_name!r}: the worker that created it did not finish queueing the "
                            "points of its space; run the same command again")
    params = search.objective.params
    names = list(params)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(params[n] for n in names))]
    random.Random(search.cfg.seed).shuffle(points)
    for point in points:
        study.enqueue_trial(point)
    study.set_user_attr(QUEUED_ATTR, len(points))
    return True


def _queue_callbacks(cfg) -> list:
    """An exhaustive search ends when its queue of points is empty."""
    from optuna.trial import TrialState

    def stop_when_empty(study, trial):
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    return [stop_when_empty] if SAMPLERS[cfg.setup.sampler].exhaustive else []


# From about this many rows scored per trial, more intra-op threads pay off on an idle machine
# (benchmarks/threads.py: jsc-toy, whole validation split, 66,400 rows: 17 ms with 2 threads, 43 ms with 1;
# equal with two busy processes); below it a trial is mostly Python, and threads only cost.
LARGE_EVALUATION_ROWS = 16_384


def search_threads(cfg, val_rows: int, n_workers: int = 1) -> int:
    """Intra-op threads per process: ``setup.num_threads``, else the latency runner's; else torch's default for
    a single process scoring at least LARGE_EVALUATION_ROWS rows per trial, and 1 otherwise."""
    explicit = cfg.setup.num_threads or next((t for r in cfg.runners if (t := r.threads())), None)
    if explicit:
        return explicit
    rows = max((min(r.settings.num_samples or val_rows, val_rows) for r in cfg.runners
                if r.name == "basic_evaluation"), default=0)
    import torch

    return torch.get_num_threads() if n_workers == 1 and rows >= LARGE_EVALUATION_ROWS else 1


def one_callback(*callbacks) -> list:
    """Optuna deep-copies the finished trial for each callback; one callback that calls the rest copies it once."""
    chain = [c for c in callbacks if c]

    def each(study, trial) -> None:
        for callback in chain:
            callback(study, trial)

    return [each]


def space_size(params: dict[str, list[Any]]) -> int:
    import math

    return math.prod(len(c) for c in params.values())


def _is_journal(url: str | None) -> bool:
    return url is None or url.startswith("journal:") or "://" not in url


# -- who runs a trial, and whether it is still alive ------------------------------------------

def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: clock ticks since boot), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


WORKER = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(owner: dict[str, Any]) -> bool | None:
    """Whether the process that ran a trial still runs; None when it ran on another machine."""
    if owner.get("host") != WORKER["host"]:
        return None
    pid = owner.get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, OverflowError):
        return True
    return owner.get("start") is None or _start_time(pid) == owner.get("start")


def recover(study, store, max_retry: int) -> tuple[int, int]:
    """Fail trials whose process died; enqueue each failed point again. Returns (failed now, enqueued)."""
    from optuna.trial import TrialState

    failed_now = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(WORKER_ATTR)
        if owner and _alive(owner) is False:
            with contextlib.suppress(RuntimeError, ValueError):  # another worker got there first
                store.set_trial_state_values(t._trial_id, TrialState.FAIL)
                failed_now += 1
    trials = study.get_trials(deepcopy=True)  # the retry callback extends lists it finds in the trial
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    settled = {_point(t) for t in trials if t.state != TrialState.FAIL}
    retry = _retry(max_retry)
    enqueued = 0
    for t in trials:
        if t.state == TrialState.FAIL and _params(t) and t.number not in retried and _point(t) not in settled:
            before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            retry(study, t)  # adds a WAITING trial with the same params, unless retried max_retry times already
            if len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) > before:
                enqueued += 1
                settled.add(_point(t))
    return failed_now, enqueued


def _retry(max_retry: int):
    """Optuna's own retry: a WAITING copy of the failed trial, its retry_history extended."""
    import warnings

    import optuna

    with warnings.catch_warnings():  # marked experimental; it is Optuna's documented way to retry
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def _params(t) -> dict[str, Any]:
    """The point a trial holds: its parameters, or the queued point it took (a trial stopped before its first
    parameter was chosen, and a queued trial not yet taken, have only that)."""
    return t.params or t.system_attrs.get("fixed_params") or {}


def _point(t) -> str:
    return json.dumps(_params(t), sort_keys=True, default=str)


# -- signals ---------------------------------------------------------------------------------

class Signals:
    """SIGINT and SIGTERM during a search. Inside a trial they stop it at once (Optuna marks the trial
    failed); inside Optuna's own bookkeeping (writing a trial's state) an interrupt would leave the
    trial half-recorded, so the stop waits for the next safe point: the end of that step, or the start
    of the next trial."""

    def __init__(self):
        self.objective = None  # set once the search's objective exists
        self.pending = False

    def __call__(self, signum, frame):
        if self.objective is None or self.objective.in_trial:
            raise KeyboardInterrupt
        self.pending = True

    def check(self, *args) -> None:
        """An Optuna callback (after a trial is recorded) and the first step of every trial."""
        if self.pending:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM (what schedulers and `kill` send) stops like Ctrl-C; both wait for a safe point."""
    import threading

    signals = Signals()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield signals
        return
    previous = {sig: signal.signal(sig, signals) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def optuna_quiet():
    """Optuna logs every trial at INFO; bitsmith reports trials itself. Restores the caller's level."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def fail_unfinished(store, trial_ids: list[int]) -> None:
    """A stop between Optuna's own steps can leave this process's last trial RUNNING: mark it failed."""
    from optuna.trial import TrialState

    for trial_id in trial_ids[-2:]:
        with contextlib.suppress(Exception):  # the storage may be what failed
            if store.get_trial(trial_id).state == TrialState.RUNNING:
                store.set_trial_state_values(trial_id, TrialState.FAIL)


# -- the search ------------------------------------------------------------------------------

def run_search(settings: Settings, storage: StorageOptions | str | None = None, fresh: bool = False,
               overrides: dict[str, Any] | None = None, console=None, n_workers: int = 1,
               export: str | None = None) -> dict[str, Any]:
    """Run (or resume) the search ``settings.search`` describes, in ``n_workers`` processes; write its results.

    ``export`` ("hls4ml" or "qonnx"): also export every design on the front, into ``best/trial_N/``.
    """
    options = storage if isinstance(storage, StorageOptions) else StorageOptions(storage)
    if not 1 <= n_workers <= MAX_WORKERS:
        raise BitsmithError(f"--n-workers {n_workers}: use 1 to {MAX_WORKERS} worker processes")
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
    """Export each best design's checkpoint beside it: best/trial_N/hls4ml/ or best/trial_N/model.onnx."""
    from bitsmith.export import export
    from bitsmith.jobs import make_console

    console = console or make_console()
    written = []
    for entry in summary["best"]:
        ckpt = Path(entry["checkpoint"])
        out = ckpt.parent / ("hls4ml" if to == "hls4ml" else "model.onnx")
        design = settings.model_copy(update={"load_name": str(ckpt), "load_type": "pl"})
        design._source = settings.source
        export(design, to, out, console=console)
        written.append(str(out))
    return written


def _run(settings, options, fresh, overrides, console, n_workers, signals) -> dict[str, Any]:
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from bitsmith.jobs import make_console
    from bitsmith.search.study import Progress

    console = console or make_console()
    search = prepare_search(settings, overrides, settings.notes)
    search.objective.on_start = signals.check
    signals.objective = search.objective
    cfg, settings = search.cfg, search.settings
    console.print(f"search: model={settings.model} dataset={settings.dataset} sampler={cfg.setup.sampler} "
                  f"n_trials={cfg.setup.n_trials} seed={cfg.seed}"
                  + (f" workers={n_workers}" if n_workers > 1 else "")
                  + ("" if settings.load_name else " (no checkpoint: freshly initialised weights)"), highlight=False)
    study, store, backend = open_study(search, options, fresh)
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
    label = "weighted sum" if cfg.setup.sum_scaled_metrics else cfg.metrics[0].name
    progress = Progress(console, remaining, cfg.directions, backend, label, done_before, shared=n_workers > 1)
    threads = search_threads(cfg, len(search.objective.ctx.data.val), n_workers)
    old_threads = torch.get_num_threads()
    interrupted = False
    workers = _start_workers(search, options, study.study_name, overrides, n_workers - 1, threads) \
        if remaining and n_workers > 1 else []
    try:
        torch.set_num_threads(threads)  # once for the whole search, never per trial
        with progress.bar:
            if remaining:
                # n_trials is the study's total, also when several workers share it.
                study.optimize(search.objective, n_trials=remaining, timeout=cfg.setup.timeout,
                               n_jobs=cfg.setup.n_jobs, gc_after_trial=False,
                               callbacks=one_callback(signals.check, progress,
                                                      MaxTrialsCallback(cfg.setup.n_trials, states=finished),
                                                      *_queue_callbacks(cfg)))
        _join(workers)
    except KeyboardInterrupt:
        interrupted = True
        fail_unfinished(store, search.objective.started)
        _stop(workers)
    finally:
        torch.set_num_threads(old_threads)
    if backend is not None:
        backend.sync()
    from bitsmith.search.report import write_outputs

    summary = write_outputs(search, study, console, options.url, full=not interrupted)
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


# -- worker processes --------------------------------------------------------------------------

def _start_workers(search: Search, options: StorageOptions, study_name: str, overrides, count: int,
                   threads: int) -> list:
    """``count`` more processes on the same study (spawned: no state inherited from this one)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    payload = {"settings": search.settings.model_dump(mode="json"), "source": search.settings.source,
               "options": options, "study": study_name, "overrides": overrides, "threads": threads}
    procs = [ctx.Process(target=worker_main, args=(payload, i + 1), daemon=False) for i in range(count)]
    for p in procs:
        p.start()
    return procs


def _join(procs: list) -> None:
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise BitsmithError(f"{len(bad)} worker process(es) stopped with an error (exit {bad[0]}); their message "
                            "is above. The same command resumes the study")


def _stop(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker fails its trial in flight and exits
    for p in procs:
        p.join(timeout=10)


def worker_main(payload: dict[str, Any], index: int) -> None:
    """One extra worker process: the same search, on the same study, until the study's total is reached."""
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    settings = Settings(**payload["settings"])
    settings._source = payload["source"]
    torch.set_num_threads(payload["threads"])
    code = 0
    options = payload["options"]
    with optuna_quiet(), stop_on_signals() as signals:
        search = store = None
        try:
            search = prepare_search(settings, payload["overrides"], Notes(settings.strict, quiet=True))
            search.objective.on_start = signals.check
            signals.objective = search.objective
            study, store, backend = open_study(search, StorageOptions(options.url, payload["study"], options.timeout),
                                               fresh=False, create=False, seed_offset=index)
            finished = (TrialState.COMPLETE, TrialState.PRUNED)
            cb = one_callback(signals.check, backend and (lambda st, t: backend.sync()),
                              MaxTrialsCallback(search.cfg.setup.n_trials, states=finished),
                              *_queue_callbacks(search.cfg))
            study.optimize(search.objective, n_trials=search.cfg.setup.n_trials, timeout=search.cfg.setup.timeout,
                           callbacks=cb, gc_after_trial=False)
        except KeyboardInterrupt:
            if store is not None:
                fail_unfinished(store, search.objective.started)
            code = 130
        except BitsmithError as e:
            print(f"bitsmith: error: worker {index}: {e}", file=sys.stderr)
            code = 2
    sys.exit(code)


# -- report ----------------------------------------------------------------------------------

def write_report(settings: Settings, options: StorageOptions, console=None) -> dict[str, Any]:
    """Write the tables, plots and best checkpoints of a stored study, at any time, from any machine.

    The study's own settings come first; a config file and flags override them
    (e.g. ``--load`` where the checkpoint lives elsewhere on this machine).
    """
    import optuna

    from bitsmith.jobs import make_console
    from bitsmith.search.report import write_outputs
    from bitsmith.search.storage import open_storage, resolve_study_name

    console = console or make_console()
    with optuna_quiet():
        default_journal = settings.output_dir / "search" / "study.journal"
        if options.url is None and not default_journal.is_file():
            raise BitsmithError(f"no study journal at {default_journal}; give --project-dir / --project of a "
                                "search, or --storage and --study-name")
        store, _ = open_storage(options.url, default_journal, options.timeout)
        name, exists = resolve_study_name(store, options.study_name or settings.project_name, False)
        if not exists:
            from bitsmith.search.storage import study_names

            raise BitsmithError(f"no study {name!r} in {hide_password(str(options.url or default_journal))}; studies there: "
                                f"{', '.join(study_names(store)) or 'none'}; choose one with --study-name")
        stored = optuna.load_study(study_name=name, storage=store).user_attrs.get("bitsmith", {})
        if "settings" in stored:
            given = settings.model_dump(include=settings.model_fields_set)
            merged = Settings(**{**stored["settings"], **given})
            merged._source = settings.source if settings.model_fields_set else stored.get("source", "the study")
            settings = merged
        search = prepare_search(settings, None, Notes(settings.strict, quiet=True))
        study, _, _ = open_study(search, StorageOptions(options.url, name, options.timeout), fresh=False,
                                 create=False)
        return write_outputs(search, study, console, options.url, full=True)
