"""The journal storage: Optuna's journal file, with fewer and cheaper writes per trial, and errors that reach
the caller.

The default journal writes a trial in three appends (other processes see each
at once) and syncs the file once per finished trial instead of once per record
(see ``Journal``): a killed process loses nothing, a power cut at most the
trial in flight. The file is Optuna's own journal format, readable by
``optuna.storages.journal.JournalFileBackend``. A write that fails (full disk, no
permission) is cut back to the size the file had before it, and raises
:class:`StorageError`.

How a write error travels through Optuna (5.x): ``study.optimize`` ->
``_run_trial``. An error in ``study.ask`` or in a callback leaves ``optimize``
as it is. An error inside the objective (``trial.suggest_*``,
``set_user_attr``) is caught and becomes the trial's FAIL state; Optuna then
writes that state and re-raises the error, unless that write fails too. When
the write of a trial's final state fails, ``_run_trial`` reads the trial back,
finds it still RUNNING and ends in ``AssertionError: Should not reach``, which
hides the real error. ``Journal.get_trial`` therefore shows such a trial in the
state that could not be written, so that Optuna re-raises the
``StorageError``. With ``n_jobs > 1`` Optuna drops the errors of the last trials
in flight; the backend keeps its first error and ``sync()`` raises it again.

Optuna's private names are used through ``search/_optuna.py`` only.
"""

from __future__ import annotations

import copy
import errno
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from bitsmith.errors import BitsmithError
from bitsmith.search import _optuna
from bitsmith.search._optuna import JournalOperation
from bitsmith.search.storage.limit import TrialLimit, file_lock

_FINISHED = (TrialState.COMPLETE.value, TrialState.PRUNED.value, TrialState.FAIL.value)


class StorageError(BitsmithError):
    """A write to the study's storage failed (full disk, no permission); what is on disk is kept."""


class TrialSyncedJournal(JournalFileBackend):
    """Optuna's journal file, fsynced per trial (``sync``) rather than per record."""

    def __init__(self, file_path: str, lock_obj) -> None:
        super().__init__(file_path, lock_obj)
        self.path, self.lock = file_path, lock_obj
        self.error: StorageError | None = None  # the first failed write: sync() raises it again
        self.read_only_torn = False  # a torn end that could not be cut off: appending would bury it

    def read_logs(self, log_number_from: int):
        # Most reads find nothing new: one stat instead of open, read and close.
        known = _optuna.record_offsets(self).get(log_number_from)
        if known is not None:
            try:
                if os.stat(self.path).st_size == known:
                    return iter(())
            except OSError:
                pass
        return super().read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> tuple[int, int]:
        """Append records under the lock; returns where they start in the file and their length."""
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        if self.read_only_torn:
            raise StorageError(f"cannot write to the study journal {self.path}: it ends in a torn record that "
                               "could not be cut off, the file being read-only; make it writable and run the same "
                               "command again (the journal is repaired when it is opened)")
        try:
            self.lock.acquire()  # creates a file beside the journal: fails on a full or read-only disk too
            try:
                return self._append(data), len(data)
            finally:
                self.lock.release()
        except OSError as e:
            raise self._failed(e) from None  # counts the trials on disk: after releasing the lock

    def _append(self, data: bytes) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.fstat(fd).st_size
            done = 0
            try:
                while done < len(data):  # unbuffered: nothing is left to be flushed after a failure
                    done += self._write(fd, memoryview(data)[done:])
            except OSError:
                self._cut(fd, start, len(data))
                raise
        finally:
            os.close(fd)
        return start

    def _write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    @staticmethod
    def _cut(fd: int, start: int, length: int) -> None:
        """Remove the part of a record that did reach the file (a torn record would break every later load)."""
        try:
            # Under the lock nobody else appends; should the file have grown by more, those bytes are not ours.
            if start < os.fstat(fd).st_size <= start + length:
                os.ftruncate(fd, start)
        except OSError:
            pass  # the torn end is cut off when the journal is next opened

    def sync(self) -> None:
        if self.error is not None:
            raise StorageError(str(self.error))
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                _datasync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise self._failed(e) from None

    def _failed(self, e: OSError) -> StorageError:
        fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
               errno.EACCES: "make it and its directory writable", errno.EPERM: "make it and its directory writable",
               errno.EROFS: "make its file system writable"}.get(e.errno, "fix the cause")
        n = _finished_trials(Path(self.path))
        kept = f"the {n} finished trials already on disk are kept" if n is not None else "what is on disk is kept"
        error = StorageError(f"cannot write to the study journal {self.path}: {e.strerror or e}; {fix} and "
                             f"run the same command again to resume ({kept})")
        self.error = self.error or error
        return error


# fdatasync also writes the file's size, so every record is readable after a crash; it skips the
# modification time, which nothing reads. macOS and Windows have only fsync.
_datasync = getattr(os, "fdatasync", os.fsync)


class _Own:
    """A running trial of this process: the records not yet written, and the trial as they make it."""

    def __init__(self, trial: FrozenTrial):
        self.base, self.records = trial, []
        self.params, self.distributions = dict(trial.params), dict(trial.distributions)
        self.user_attrs, self.system_attrs = dict(trial.user_attrs), dict(trial.system_attrs)
        self.intermediate_values = dict(trial.intermediate_values)
        self.frozen: FrozenTrial | None = trial

    def trial(self) -> FrozenTrial:
        if self.frozen is None:
            t = copy.copy(self.base)
            t.params, t.distributions = dict(self.params), dict(self.distributions)
            t.user_attrs, t.system_attrs = dict(self.user_attrs), dict(self.system_attrs)
            t.intermediate_values = dict(self.intermediate_values)
            self.frozen = t
        return self.frozen


class Journal(TrialLimit, JournalStorage):
    """Optuna's journal storage, with fewer and cheaper writes per trial, and errors that reach the caller.

    Per trial, Optuna writes one record per parameter and attribute, each under the
    file lock, and reads each back and replays it. Here a trial this process runs
    costs three locked appends: its creation (carrying ``creation_attrs``, so that a
    trial always names its process), its parameters and attributes so far
    (``flush``, called once the point is chosen, so that other workers and a resume
    see it before it is measured), and the rest with its final state, after which
    the file is fsynced. Until written, records are shown by this process's own
    reads. When nobody else wrote in between, this process's records are not read
    back: the trial they make is known. The records are Optuna's own; stock Optuna
    reads the file as usual.

    A failed write of a trial's end reaches the caller (see the module's docstring).
    """

    def __init__(self, backend: TrialSyncedJournal) -> None:
        super().__init__(backend)
        self._file, self._replay = backend, _optuna.Replay(self)
        self._unwritten: dict[int, tuple[TrialState, Any]] = {}
        self._own: dict[int, _Own] = {}  # running trials of this process
        self.creation_attrs: dict[str, Any] = {}  # system attrs written in each new trial's first record

    # -- writes ---------------------------------------------------------------------------------

    def study_lock(self, study_id: int):
        return file_lock(Path(f"{self._file.path}.trials-lock"))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        with self.room(starting=template_trial is None, new=True):
            if template_trial is not None or not self.creation_attrs:
                trial_id = super().create_new_trial(study_id, template_trial)
            else:
                log = {"study_id": study_id, "datetime_start": datetime.now(tz=timezone.utc).isoformat(
                    timespec="microseconds"), "system_attrs": dict(self.creation_attrs)}
                with _optuna.thread_lock(self):
                    _optuna.write_log(self, JournalOperation.CREATE_TRIAL, log)
                    _optuna.read_new_records(self)
                    trial_id = self._replay.last_created_trial_id()
        if template_trial is None:
            with _optuna.thread_lock(self):
                self._own[trial_id] = _Own(self._replay.get_trial(trial_id))
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        with _optuna.thread_lock(self):
            own = self._own.get(trial_id)
            if own is not None:
                self._check_distribution(trial_id, param_name, distribution)
                self._record(own, JournalOperation.SET_TRIAL_PARAM,
                             {"trial_id": trial_id, "param_name": param_name,
                              "param_value_internal": param_value_internal,
                              "distribution": distribution_to_json(distribution)})
                own.params[param_name] = distribution.to_external_repr(param_value_internal)
                own.distributions[param_name] = distribution
                return
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with _optuna.thread_lock(self):
            own = self._own.get(trial_id)
            if own is not None:
                self._record(own, JournalOperation.SET_TRIAL_USER_ATTR,
                             {"trial_id": trial_id, "user_attr": {key: value}})
                own.user_attrs[key] = _as_stored(value)
                return
        super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with _optuna.thread_lock(self):
            own = self._own.get(trial_id)
            if own is not None:
                stored = _as_stored(value)
                if own.system_attrs.get(key, _MISSING) != stored:  # the worker is in the first record
                    self._record(own, JournalOperation.SET_TRIAL_SYSTEM_ATTR,
                                 {"trial_id": trial_id, "system_attr": {key: value}})
                    own.system_attrs[key] = stored
                return
        super().set_trial_system_attr(trial_id, key, value)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        with _optuna.thread_lock(self):
            own = self._own.get(trial_id)
            if own is not None:
                self._record(own, JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
                             {"trial_id": trial_id, "step": step, "intermediate_value": intermediate_value})
                own.intermediate_values[step] = intermediate_value
                return
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)

    def flush(self, trial_id: int) -> None:
        """Write the trial's pending records now (one locked append, no fsync)."""
        with _optuna.thread_lock(self):
            own = self._own.get(trial_id)
            if own is not None and own.records:
                records, own.records = own.records, []
                self._write(records, trial_id, own.trial())

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        try:
            with _optuna.thread_lock(self):
                own = self._own.get(trial_id)
                if own is not None and state.is_finished():
                    del self._own[trial_id]
                    now = datetime.now(tz=timezone.utc)
                    record = {"op_code": JournalOperation.SET_TRIAL_STATE_VALUES,
                              "worker_id": self._replay.worker_id, "trial_id": trial_id, "state": state,
                              "values": values, "datetime_complete": now.isoformat(timespec="microseconds")}
                    final = copy.copy(own.trial())
                    final.state = state
                    final.values = list(values) if values is not None else final.values
                    final.datetime_complete = now.astimezone().replace(tzinfo=None)  # as Optuna's replay reads it
                    self._write([*own.records, record], trial_id, final)
                    return True
            with self.room(starting=state == TrialState.RUNNING):  # a queued trial taken
                owned = super().set_trial_state_values(trial_id, state, values)
            if state == TrialState.RUNNING and owned:  # a queued trial this process took
                with _optuna.thread_lock(self):
                    self._own[trial_id] = _Own(self._replay.get_trial(trial_id))
            return owned
        except StorageError:
            if state.is_finished():
                self._unwritten[trial_id] = (state, values)
            raise

    def _record(self, own: _Own, op_code: int, fields: dict[str, Any]) -> None:
        own.records.append({"op_code": op_code, "worker_id": self._replay.worker_id, **fields})
        own.frozen = None

    def _write(self, records: list[dict[str, Any]], trial_id: int, trial: FrozenTrial) -> None:
        """Append this process's records of one trial, which make ``trial``; under the thread lock."""
        offsets = _optuna.record_offsets(self._file)
        known_end = offsets.get(self._replay.log_number_read)
        start, length = self._file.append_logs(records)
        if start == known_end:  # nothing new from others before them: the trial they make is known
            self._replay.put(trial_id, trial)
            offsets[self._replay.advance(len(records))] = start + length
            return
        first_error = None
        while True:  # read everything, ours included, even past a record that the replay refuses
            try:
                _optuna.read_new_records(self)
                break
            except (KeyError, ValueError, RuntimeError) as e:  # e.g. another process failed this trial
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _check_distribution(self, trial_id: int, name: str, distribution: BaseDistribution) -> None:
        """The check Optuna's replay makes of a parameter, made before its record is kept back: against the
        first trial of the study that has the parameter, this process's unwritten ones included."""
        for other, trial in self._replay.study_trials(trial_id):
            own = self._own.get(other)
            known = (own.distributions if own is not None else trial.distributions).get(name)
            if known is not None:
                check_distribution_compatibility(known, distribution)
                return

    # -- reads ----------------------------------------------------------------------------------

    def _show(self, trial: FrozenTrial) -> FrozenTrial:
        own = self._own.get(_optuna.trial_id(trial))
        return own.trial() if own is not None and trial.state == TrialState.RUNNING else trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = super().get_trial(trial_id)
        with _optuna.thread_lock(self):
            trial = self._show(trial)
        if trial_id in self._unwritten and trial.state == TrialState.RUNNING:
            # In memory only: Optuna asserts that a told trial is finished before it re-raises the error.
            trial = copy.copy(trial)
            trial.state, trial.values = self._unwritten[trial_id]
        return trial

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy=False, states=states)
        if self._own:
            with _optuna.thread_lock(self):
                trials = [self._show(t) for t in trials]
        return copy.deepcopy(trials) if deepcopy else trials


_MISSING = object()


def _as_stored(value: Any) -> Any:
    """An attribute as the journal gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(value)) if not isinstance(value, (str, int, float, bool, type(None))) else value


def _finished_trials(path: Path) -> int | None:
    """How many trials the journal holds as complete, pruned or failed (read in full: errors only)."""
    finished: set[int] = set()
    created = 0
    try:
        with path.open("rb") as f:
            for line in f:
                if not line.startswith((b'{"op_code":4,', b'{"op_code":6,')) or not line.endswith(b"\n"):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record["op_code"] == 4:
                    if record.get("state") in _FINISHED:
                        finished.add(created)
                    created += 1
                elif record.get("state") in _FINISHED:
                    finished.add(record.get("trial_id"))
    except OSError:
        return None
    return len(finished)
