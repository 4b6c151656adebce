"""Opening a search's study: created, resumed or joined, checked against what its trials measured, and, for
exhaustive samplers, every point queued once; with the callbacks every process runs it with."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from bitsmith.errors import BitsmithError
from bitsmith.search.prepare import Search, default_study_name, differences, record, record_digest
from bitsmith.search.process import WORKER, WORKER_ATTR
from bitsmith.search.learned import LearnedSpace
from bitsmith.search.recovery import retry_callback
from bitsmith.search.samplers import SAMPLERS
from bitsmith.search.storage import (
    StorageOptions,
    StudyFull,
    hide_password,
    open_storage,
    resolve_study_name,
    study_names,
)

RECORD_ATTR = "bitsmith_record"  # study user attr: what its trials measure, for the resume check
QUEUED_ATTR = "bitsmith_queued"  # study user attr: every point of an exhaustive space is queued
QUEUE_WAIT_S = 120  # a worker waits this long for the study's creator to queue every point


def open_study(search: Search, options: StorageOptions, fresh: bool, create: bool = True, seed_offset: int = 0,
               overrides: dict[str, Any] | None = None):
    """The study (created, resumed or joined), its storage and the journal backend (or None); ``search.out``
    becomes the study's own output folder. ``overrides``: the command line's changes to the config, stored
    with a new study so that ``bitsmith report`` rebuilds the same search."""
    import warnings

    import optuna

    from bitsmith.search.samplers import make_sampler

    setup = search.cfg.setup
    rdb = {"heartbeat_interval": setup.heartbeat_interval, "grace_period": setup.grace_period,
           "heartbeat_stale_trial_callback": retry_callback(setup.max_retry)}
    with warnings.catch_warnings():  # the heartbeat is marked experimental; it is Optuna's way to find dead workers
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        store, backend = open_storage(options.url, search.journal, options.timeout, create=create,
                                      **({} if is_journal(options.url) else rdb))
    if backend is not None:  # a journal: each new trial names its process in its first record
        store.creation_attrs = {WORKER_ATTR: WORKER}
    named = options.study_name or setup.study_name
    base_name = named or default_study_name(search.settings)
    name, exists = resolve_study_name(store, base_name, fresh and create)
    if create and not exists and not named:
        _note_older_default(store, search.settings.project_name, base_name)
    search.out = search.root / name
    sampler = make_sampler(setup.sampler, search.cfg.seed + seed_offset, search.objective.params)
    where = options.url or search.journal
    created = False
    if exists:  # loading writes nothing, so a refused resume leaves the storage as it was
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
    elif not create:
        raise BitsmithError(f"no study {name!r} in {hide_password(str(where))}; run `bitsmith search` first, or name "
                            "the study with --study-name")
    else:
        try:
            study = optuna.create_study(study_name=name, storage=store, sampler=sampler,
                                        directions=search.cfg.directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # a worker elsewhere created it a moment ago
            study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
        else:
            with warnings.catch_warnings():  # experimental in Optuna; the dashboard shows these names
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(objective_names(search.cfg))
    mine = record(search)
    stored = study.user_attrs.get(RECORD_ATTR)
    if stored is None and not study.user_attrs.get("bitsmith_config"):
        study.set_user_attr(RECORD_ATTR, mine)
        study.set_user_attr("bitsmith", {"model": search.settings.model, "dataset": search.settings.dataset,
                                         "metrics": [m.name for m in search.cfg.metrics],
                                         "settings": search.settings.model_dump(mode="json"),
                                         "overrides": {k: v for k, v in (overrides or {}).items() if v is not None},
                                         "source": search.settings.source})
    elif stored != mine:
        diff = differences(stored, mine) if stored else ["it was made by an older bitsmith that kept no details"]
        raise BitsmithError(f"study {name!r} in {hide_password(str(where))} was made with another config ("
                            f"{'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}); pass --fresh to start a new "
                            "study beside it (nothing is deleted), or --study-name to choose another")
    if isinstance(search.objective.space, LearnedSpace):  # trained designs kept, so the best need no retraining
        search.objective.space.keep(search.out / "designs", record_digest(mine))
    if SAMPLERS[setup.sampler].exhaustive and _queue_every_point(study, search, created):
        search.objective.queued = True
        # The queue decides every point; Optuna's brute force would stop the study at a failed point
        # that is queued again (it counts failed points as visited).
        study.sampler = optuna.samplers.RandomSampler(seed=search.cfg.seed + seed_offset)
    return study, store, backend


def _note_older_default(store, older: str, base_name: str) -> None:
    """Before studies took their config's name, the default was the project's (``older``): say how to go on
    with such a study."""
    if base_name != older and older in study_names(store):
        print(f"note: study {older!r} here was made before studies took their config's name; this starts "
              f"{base_name!r}. To go on with the older one: --study-name {older}", file=sys.stderr)


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
        deadline = time.monotonic() + QUEUE_WAIT_S
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


def run_trials(study, store, search: Search, n_trials: int, callbacks: list, n_jobs: int = 1) -> None:
    """``study.optimize`` until this process has run ``n_trials`` or the study holds its total: the storage
    refuses to start a trial past ``setup.n_trials`` in all processes together (``storage.limit``)."""
    cfg = search.cfg
    if hasattr(store, "limit_trials"):
        store.limit_trials(store.get_study_id_from_name(study.study_name), cfg.setup.n_trials,
                           queued_only=search.objective.queued)
    try:
        study.optimize(search.objective, n_trials=n_trials, timeout=cfg.setup.timeout, n_jobs=n_jobs,
                       gc_after_trial=False, callbacks=callbacks)
    except StudyFull:
        pass  # another process started the last trial the study needed


def trial_callbacks(cfg, *first) -> list:
    """What every process runs after each trial: ``first``, then a stop once the study holds ``n_trials``
    finished trials (from all processes), and for exhaustive samplers once the queue is empty."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    def stop_when_empty(study, trial):
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()

    stops = [MaxTrialsCallback(cfg.setup.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))]
    if SAMPLERS[cfg.setup.sampler].exhaustive:
        stops.append(stop_when_empty)
    return one_callback(*first, *stops)


def one_callback(*callbacks) -> list:
    """Optuna deep-copies the finished trial for each callback; one callback that calls the rest copies it once."""
    chain = [c for c in callbacks if c]

    def each(study, trial) -> None:
        for callback in chain:
            callback(study, trial)

    return [each]


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


def is_journal(url: str | None) -> bool:
    return url is None or url.startswith("journal:") or "://" not in url


def objective_names(cfg) -> list[str]:
    """What each objective value is: a metric's name, or the weighted sum of them all."""
    return ["weighted sum"] if cfg.setup.sum_scaled_metrics else [m.name for m in cfg.metrics]


def study_settings(study) -> dict[str, Any]:
    """What the study stored of the settings that made it (``open_study``), for ``bitsmith report``."""
    return study.user_attrs.get("bitsmith", {})
