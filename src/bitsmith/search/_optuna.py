"""Every private Optuna name bitsmith uses, and the Optuna versions they were checked with.

bitsmith reaches past Optuna's public interface in these places only, each for a
reason given where it is used:

* ``optuna.storages.journal._storage.JournalOperation``: the journal's op codes
  (the records bitsmith writes itself, ``storage/journal.py``);
* ``JournalFileBackend._log_number_offset``: where each record starts in the
  file (a read that finds nothing new is one ``stat``; own records need no
  read-back);
* ``JournalStorage._thread_lock``, ``._replay_result``, ``._write_log``,
  ``._sync_with_backend``: the storage's lock, its in-memory replay, one write
  and one read-back;
* on the replay (``JournalStorageReplayResult``): ``worker_id``,
  ``log_number_read``, ``get_trial``, ``_trials``, ``_study_id_to_trial_ids``,
  ``_trial_id_to_study_id``, ``_last_created_trial_id_by_this_process``;
* ``Trial._trial_id`` / ``FrozenTrial._trial_id``: the storage's id of a trial
  (Optuna's storage API takes ids; its trial objects give only numbers publicly);
* ``BruteForceSampler._populate_tree``: overridden, to skip trials stopped
  before their point was chosen (``samplers.py``);
* ``optuna._hypervolume.compute_hypervolume``: the hypervolume of a front
  (``compare/measure.py``, ``plots.py``);
* ``RDBStorage._create_new_trial``: what Optuna's trial cache for database
  storages calls to make a trial, bypassing ``create_new_trial``; overridden so
  that a study's total holds across processes (``storage/limit.py``).
* a pruner's ``prune(study, trial)`` given a stand-in study and trials whose intermediate values are
  a user attribute (``report_and_prune``): Optuna's ``Trial.report`` refuses multi-objective studies,
  and its pruners read only ``direction`` and ``get_trials`` of the study they are given.

Optuna may change any of these in any release. ``TESTED`` lists the minor
versions whose own storage, study and trial tests pass in the journal mode
against bitsmith's storage (``scripts/optuna-conformance.sh``, run by CI);
``pyproject.toml`` pins Optuna to them, and a test fails when the installed
version is not among them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import optuna
from optuna._hypervolume import compute_hypervolume  # noqa: F401  (re-exported: the one place it is named)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation  # noqa: F401  (re-exported)
from optuna.trial import FrozenTrial

TESTED = ("5.1",)  # Optuna minor versions checked by the conformance run


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial."""
    return trial._trial_id


# -- the journal file backend ----------------------------------------------------------------------

def record_offsets(backend: JournalFileBackend) -> dict[int, int]:
    """Log number -> byte offset where that record starts (the backend's own index, shared, mutable)."""
    return backend._log_number_offset


# -- the journal storage ----------------------------------------------------------------------------

def thread_lock(storage: JournalStorage) -> threading.Lock:
    return storage._thread_lock


def write_log(storage: JournalStorage, op_code: int, fields: dict[str, Any]) -> None:
    """Append one record through Optuna's own writer (under ``thread_lock``)."""
    storage._write_log(op_code, fields)


def read_new_records(storage: JournalStorage) -> None:
    """Replay every record appended since the last read (under ``thread_lock``)."""
    storage._sync_with_backend()


class Replay:
    """What a journal storage has replayed: a view of ``JournalStorage._replay_result``, read at each use
    (Optuna replaces that object when it restores a snapshot)."""

    def __init__(self, storage: JournalStorage):
        self._storage = storage

    @property
    def _r(self) -> Any:
        return self._storage._replay_result

    @property
    def worker_id(self) -> str:
        return self._r.worker_id

    @property
    def log_number_read(self) -> int:
        return self._r.log_number_read

    def advance(self, n_records: int) -> int:
        """Count ``n_records`` more as read (own records, whose trial is set with ``put``); the new number."""
        self._r.log_number_read += n_records
        return self._r.log_number_read

    def last_created_trial_id(self) -> int:
        return self._r._last_created_trial_id_by_this_process

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._r.get_trial(trial_id)

    def put(self, trial_id: int, trial: FrozenTrial) -> None:
        self._r._trials[trial_id] = trial

    def study_trials(self, trial_id: int) -> list[tuple[int, FrozenTrial]]:
        """Every trial of the study ``trial_id`` belongs to, in order of creation."""
        r = self._r
        return [(i, r._trials[i]) for i in r._study_id_to_trial_ids[r._trial_id_to_study_id[trial_id]]]


# -- database storages ----------------------------------------------------------------------------

class HookedRDBStorage(optuna.storages.RDBStorage):
    """Optuna's database storage, every new trial made inside ``creating(template_trial)``."""

    def creating(self, template_trial: FrozenTrial | None):
        return contextlib.nullcontext()

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        with self.creating(template_trial):
            return super()._create_new_trial(study_id, template_trial)


# -- samplers ---------------------------------------------------------------------------------------

def brute_force_sampler() -> type:
    """Optuna's brute force, blind to trials stopped before all their parameters were chosen.

    A stop (Ctrl-C, SIGTERM, a kill) can land between a trial's creation and its
    suggestions; Optuna's tree then meets a trial with fewer parameters than the
    space and raises "param_name mismatch". Such a trial evaluated no point.
    """
    return _BruteForce


class _BruteForce(optuna.samplers.BruteForceSampler):
    @staticmethod
    def _populate_tree(tree, trials, params):
        full = max((len(t.params) for t in trials), default=0)
        optuna.samplers.BruteForceSampler._populate_tree(tree, [t for t in trials if len(t.params) == full], params)


# -- pruners ----------------------------------------------------------------------------------------

class _Peers:
    """What a pruner reads of a study: the trials a trial is compared with, one direction (accuracy up)."""

    direction = optuna.study.StudyDirection.MAXIMIZE

    def __init__(self, trials: list[FrozenTrial]):
        self._trials = trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return [t for t in self._trials if states is None or t.state in states]


def _with_history(t: FrozenTrial, history: list[float]) -> FrozenTrial:
    """``t`` as a pruner sees it: ``history`` (one value per step, from 1) as its intermediate values."""
    return FrozenTrial(number=t.number, state=t.state, value=None, values=t.values, datetime_start=t.datetime_start,
                       datetime_complete=t.datetime_complete, params=t.params, distributions=t.distributions,
                       user_attrs={}, system_attrs={}, intermediate_values=dict(enumerate(history, 1)),
                       trial_id=trial_id(t))


def report_and_prune(trial: optuna.Trial, pruner: optuna.pruners.BasePruner, history: list[float],
                     history_attr: str, peer_param: str) -> bool:
    """Record this trial's ``history`` (a value per step so far) in its user attribute ``history_attr`` and ask
    ``pruner`` whether to stop it, comparing only with finished trials whose ``peer_param`` is at least this
    trial's. The values are not Optuna intermediate values: ``Trial.report`` refuses multi-objective studies,
    and TPE reads a pruned trial's intermediate values with a single direction."""
    trial.set_user_attr(history_attr, list(history))
    me = trial.storage.get_trial(trial_id(trial))
    mine = me.params.get(peer_param)
    peers = [_with_history(t, t.user_attrs.get(history_attr, []))
             for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
             if mine is None or t.params.get(peer_param, -float("inf")) >= mine]
    return pruner.prune(_Peers(peers), _with_history(me, history))
