"""Nothing started is skipped: trials of dead processes are failed, and failed points queued again.

On every start, trials left RUNNING by a process that no longer runs become
FAIL, and every failed point is enqueued again with Optuna's own retry callback
(at most ``max_retry`` times), so brute force and grid evaluate each point once
in total. On database storages Optuna's heartbeat finds dead workers of other
machines as well (``studies.open_study`` hands it the same callback).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from bitsmith.search import _optuna
from bitsmith.search.process import WORKER_ATTR, alive


def recover(study, store, max_retry: int) -> tuple[int, int]:
    """Fail trials whose process died; enqueue each failed point again. Returns (failed now, enqueued)."""
    from optuna.trial import TrialState

    failed_now = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(WORKER_ATTR)
        if owner and alive(owner) is False:
            with contextlib.suppress(RuntimeError, ValueError):  # another worker got there first
                store.set_trial_state_values(_optuna.trial_id(t), TrialState.FAIL)
                failed_now += 1
    trials = study.get_trials(deepcopy=True)  # the retry callback extends lists it finds in the trial
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    settled = {_point(t) for t in trials if t.state != TrialState.FAIL}
    retry = retry_callback(max_retry)
    enqueued = 0
    for t in trials:
        if t.state == TrialState.FAIL and _params(t) and t.number not in retried and _point(t) not in settled:
            before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            retry(study, t)  # adds a WAITING trial with the same params, unless retried max_retry times already
            if len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) > before:
                enqueued += 1
                settled.add(_point(t))
    return failed_now, enqueued


def retry_callback(max_retry: int):
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


def fail_unfinished(store, trial_ids: list[int]) -> None:
    """A stop between Optuna's own steps can leave this process's last trial RUNNING: mark it failed."""
    from optuna.trial import TrialState

    for trial_id in trial_ids[-2:]:
        with contextlib.suppress(Exception):  # the storage may be what failed
            if store.get_trial(trial_id).state == TrialState.RUNNING:
                store.set_trial_state_values(trial_id, TrialState.FAIL)
