"""Where studies live: Optuna's journal file by default, any Optuna storage URL on request.

The default journal writes a trial in three appends (other processes see each
at once) and syncs the file once per finished trial instead of once per record
(see ``_Journal``): a killed process loses nothing, a power cut at most the
trial in flight. The file is Optuna's own journal format, readable by
``optuna.storages.journal.JournalFileBackend``.

The journal is kept loadable, also by stock Optuna:

* a write that fails (full disk, no permission) is cut back to the size the
  file had before it, and raises :class:`StorageError`;
* a journal whose last record was torn by a crash, power cut or full disk is
  repaired when it is opened (a copy of the original is kept beside it);
* a lock left by a killed process is removed when the journal is opened, and
  waited for at most ``LOCK_GRACE_S`` seconds while it runs.

How a write error travels through Optuna (5.0): ``study.optimize`` ->
``_run_trial``. An error in ``study.ask`` or in a callback leaves ``optimize``
as it is. An error inside the objective (``trial.suggest_*``,
``set_user_attr``) is caught and becomes the trial's FAIL state; Optuna then
writes that state and re-raises the error, unless that write fails too. When
the write of a trial's final state fails, ``_run_trial`` reads the trial back,
finds it still RUNNING and ends in ``AssertionError: Should not reach``, which
hides the real error. ``_Journal.get_trial`` therefore shows such a
trial in the state that could not be written, so that Optuna re-raises the
``StorageError``. With ``n_jobs > 1`` Optuna drops the errors of the last trials
in flight; the backend keeps its first error and ``sync()`` raises it again.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import re
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from bitsmith.errors import BitsmithError

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
TAIL_BYTES = 64 * 1024  # the end of a journal read at open to find a torn record
LOCK_GRACE_S = 2  # a record takes milliseconds to write; a lock this old was left by a killed process
_FINISHED = (TrialState.COMPLETE.value, TrialState.PRUNED.value, TrialState.FAIL.value)


class StorageError(BitsmithError):
    """A write to the study's storage failed (full disk, no permission); what is on disk is kept."""


@dataclass(frozen=True)
class StorageOptions:
    """Where a study lives, as the command line says it: ``--storage``, ``--study-name``, ``--storage-timeout``."""

    url: str | None = None  # None: the journal file under the project
    study_name: str | None = None
    timeout: float = 10.0  # seconds to wait for a database storage


class _TrialSyncedJournal(JournalFileBackend):
    """Optuna's journal file, fsynced per trial (``sync``) rather than per record."""

    def __init__(self, file_path: str, lock_obj=None) -> None:
        super().__init__(file_path, lock_obj)
        self.error: StorageError | None = None  # the first failed write: sync() raises it again
        self.read_only_torn = False  # a torn end that could not be cut off: appending would bury it

    def read_logs(self, log_number_from: int):
        # Most reads find nothing new: one stat instead of open, read and close.
        known = self._log_number_offset.get(log_number_from)
        if known is not None:
            try:
                if os.stat(self._file_path).st_size == known:
                    return iter(())
            except OSError:
                pass
        return super().read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> tuple[int, int]:
        """Append records under the lock; returns where they start in the file and their length."""
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        if self.read_only_torn:
            raise StorageError(f"cannot write to the study journal {self._file_path}: it ends in a torn record that "
                               "could not be cut off, the file being read-only; make it writable and run the same "
                               "command again (the journal is repaired when it is opened)")
        try:
            self._lock.acquire()  # creates a file beside the journal: fails on a full or read-only disk too
            try:
                return self._append(data), len(data)
            finally:
                self._lock.release()
        except OSError as e:
            raise self._failed(e) from None  # counts the trials on disk: after releasing the lock

    def _append(self, data: bytes) -> int:
        fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
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
            fd = os.open(self._file_path, os.O_RDONLY)
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
        n = _finished_trials(Path(self._file_path))
        kept = f"the {n} finished trials already on disk are kept" if n is not None else "what is on disk is kept"
        error = StorageError(f"cannot write to the study journal {self._file_path}: {e.strerror or e}; {fix} and "
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


class _Journal(JournalStorage):
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

    def __init__(self, backend: _TrialSyncedJournal) -> None:
        super().__init__(backend)
        self._unwritten: dict[int, tuple[TrialState, Any]] = {}
        self._own: dict[int, _Own] = {}  # running trials of this process
        self.creation_attrs: dict[str, Any] = {}  # system attrs written in each new trial's first record

    # -- writes ---------------------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None or not self.creation_attrs:
            trial_id = super().create_new_trial(study_id, template_trial)
        else:
            log = {"study_id": study_id, "datetime_start": datetime.now(tz=timezone.utc).isoformat(
                timespec="microseconds"), "system_attrs": dict(self.creation_attrs)}
            with self._thread_lock:
                self._write_log(JournalOperation.CREATE_TRIAL, log)
                self._sync_with_backend()
                trial_id = self._replay_result._last_created_trial_id_by_this_process
        if template_trial is None:
            with self._thread_lock:
                self._own[trial_id] = _Own(self._replay_result.get_trial(trial_id))
        return trial_id

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        with self._thread_lock:
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
        with self._thread_lock:
            own = self._own.get(trial_id)
            if own is not None:
                self._record(own, JournalOperation.SET_TRIAL_USER_ATTR,
                             {"trial_id": trial_id, "user_attr": {key: value}})
                own.user_attrs[key] = _as_stored(value)
                return
        super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._thread_lock:
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
        with self._thread_lock:
            own = self._own.get(trial_id)
            if own is not None:
                self._record(own, JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
                             {"trial_id": trial_id, "step": step, "intermediate_value": intermediate_value})
                own.intermediate_values[step] = intermediate_value
                return
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)

    def flush(self, trial_id: int) -> None:
        """Write the trial's pending records now (one locked append, no fsync)."""
        with self._thread_lock:
            own = self._own.get(trial_id)
            if own is not None and own.records:
                records, own.records = own.records, []
                self._write(records, trial_id, own.trial())

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        try:
            with self._thread_lock:
                own = self._own.get(trial_id)
                if own is not None and state.is_finished():
                    del self._own[trial_id]
                    now = datetime.now(tz=timezone.utc)
                    record = {"op_code": JournalOperation.SET_TRIAL_STATE_VALUES,
                              "worker_id": self._replay_result.worker_id, "trial_id": trial_id, "state": state,
                              "values": values, "datetime_complete": now.isoformat(timespec="microseconds")}
                    final = copy.copy(own.trial())
                    final.state = state
                    final.values = list(values) if values is not None else final.values
                    final.datetime_complete = now.astimezone().replace(tzinfo=None)  # as Optuna's replay reads it
                    self._write([*own.records, record], trial_id, final)
                    return True
            owned = super().set_trial_state_values(trial_id, state, values)
            if state == TrialState.RUNNING and owned:  # a queued trial this process took
                with self._thread_lock:
                    self._own[trial_id] = _Own(self._replay_result.get_trial(trial_id))
            return owned
        except StorageError:
            if state.is_finished():
                self._unwritten[trial_id] = (state, values)
            raise

    def _record(self, own: _Own, op_code: int, fields: dict[str, Any]) -> None:
        own.records.append({"op_code": op_code, "worker_id": self._replay_result.worker_id, **fields})
        own.frozen = None

    def _write(self, records: list[dict[str, Any]], trial_id: int, trial: FrozenTrial) -> None:
        """Append this process's records of one trial, which make ``trial``; under ``_thread_lock``."""
        replay, backend = self._replay_result, self._backend
        known_end = backend._log_number_offset.get(replay.log_number_read)
        start, length = backend.append_logs(records)
        if start == known_end:  # nothing new from others before them: the trial they make is known
            replay._trials[trial_id] = trial
            replay.log_number_read += len(records)
            backend._log_number_offset[replay.log_number_read] = start + length
            return
        first_error = None
        while True:  # read everything, ours included, even past a record that the replay refuses
            try:
                self._sync_with_backend()
                break
            except (KeyError, ValueError, RuntimeError) as e:  # e.g. another process failed this trial
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _check_distribution(self, trial_id: int, name: str, distribution: BaseDistribution) -> None:
        """The check Optuna's replay makes of a parameter, made before its record is kept back."""
        replay = self._replay_result
        for other in replay._study_id_to_trial_ids[replay._trial_id_to_study_id[trial_id]]:
            known = replay._trials[other].distributions.get(name)
            if known is not None:
                check_distribution_compatibility(known, distribution)
                return

    # -- reads ----------------------------------------------------------------------------------

    def _show(self, trial: FrozenTrial) -> FrozenTrial:
        own = self._own.get(trial._trial_id)
        return own.trial() if own is not None and trial.state == TrialState.RUNNING else trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = super().get_trial(trial_id)
        with self._thread_lock:
            trial = self._show(trial)
        if trial_id in self._unwritten and trial.state == TrialState.RUNNING:
            # In memory only: Optuna asserts that a told trial is finished before it re-raises the error.
            trial = copy.copy(trial)
            trial.state, trial.values = self._unwritten[trial_id]
        return trial

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy=False, states=states)
        if self._own:
            with self._thread_lock:
                trials = [self._show(t) for t in trials]
        return copy.deepcopy(trials) if deepcopy else trials


_MISSING = object()


def _as_stored(value: Any) -> Any:
    """An attribute as the journal gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps(value)) if not isinstance(value, (str, int, float, bool, type(None))) else value


def open_storage(url: str | None, default_path: Path, timeout: float = 10.0, **rdb_kwargs):
    """An Optuna storage for ``url`` (None: the journal file at ``default_path``) and its journal backend.

    A journal gives ``(JournalStorage, backend)``, the backend having ``sync()``; a
    database URL gives ``(RDBStorage(url, ..., **rdb_kwargs), None)``, connecting
    within ``timeout`` seconds.
    """
    if url is not None and "://" in url and not url.startswith("journal:"):
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme in RDB_SCHEMES:  # before the suffix: sqlite:///dir/x.journal is a database
            return _open_rdb(url, timeout, rdb_kwargs), None
    elif url is None or url.endswith((".journal", ".log")) or url.startswith("journal:"):
        return _open_journal(Path(url.removeprefix("journal:").removeprefix("//") if url else default_path))
    raise BitsmithError(f"storage {hide_password(url)!r} is not a storage bitsmith can open; use a journal file path "
                        "(*.journal), sqlite:///FILE.db or postgresql://USER@HOST/DB")


# -- journal files --------------------------------------------------------------------------------

def _open_journal(path: Path):
    _check_journal(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BitsmithError(f"cannot open the journal file {path}: {e.strerror or e}") from None
    _remove_stale_lock(path)
    torn = _torn_end(path)
    with warnings.catch_warnings():  # Optuna warns that a grace period under 3 s "might be too small"
        warnings.simplefilter("ignore")
        lock = JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)
    try:
        backend = _TrialSyncedJournal(str(path), lock_obj=lock)
        storage = _Journal(backend)  # reads every record: a damaged one raises here
    except OSError as e:
        raise BitsmithError(f"cannot open the journal file {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise _damaged(path, e) from None
    if torn is not None:  # repaired only now, so that a file damaged elsewhere too is left as it is
        _repair(backend, path, *torn)
    return storage, backend


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # also UnicodeDecodeError
        return False
    return isinstance(record, dict) and "op_code" in record


def _check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal before anything is appended to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        first = f.readline(1 << 20)
    head = b'{"op_code"'
    if _is_record(first) or (not first.endswith(b"\n") and (first.startswith(head) or head.startswith(first))):
        return  # a record, or a first record torn while it was written (repaired later)
    raise BitsmithError(f"{path} is not an Optuna journal file; give another --storage path "
                        "(the file is left as it is)")


def _torn_end(path: Path) -> tuple[int, int, bytes] | None:
    """``(size, keep, tail)`` when the journal's last record is incomplete, else None: the repaired file is
    its first ``keep`` bytes followed by ``tail``.

    Reads only the end of the file. ``keep`` is where the last line starts; ``tail``
    is what of that line is a complete record: the newline of a record that lacks
    only that, or a record another process appended after a torn one.
    """
    if not path.is_file():
        return None
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        window = TAIL_BYTES
        while True:  # widen the window until it holds the whole last line
            start = max(0, size - window)
            f.seek(start)
            data = f.read(size - start)
            nl = data.rfind(b"\n", 0, len(data) - 1)
            if nl >= 0 or start == 0:
                break
            window *= 8
    last, keep = data[nl + 1:], start + nl + 1
    if _is_record(last):
        return None if last.endswith(b"\n") else (size, size, b"\n")
    if last.endswith(b"\n"):  # a complete write after a torn one: keep it, from where it starts
        at = last.rfind(b'{"op_code":')
        while at > 0:
            if _is_record(last[at:]) and b'"worker_id":' in last[at:]:
                return size, keep, last[at:]
            at = last.rfind(b'{"op_code":', 0, at)
    return size, keep, b""


def _repair(backend: _TrialSyncedJournal, path: Path, size: int, keep: int, tail: bytes) -> None:
    """Cut the torn last record off (or end a complete one with its newline), keeping a copy of the original."""
    if tail == b"\n":
        what = "a complete last record without its newline"
    elif tail:
        what = "an incomplete record followed by a complete one"
    else:
        what = "an incomplete last record"
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        backend.read_only_torn = True  # readable as it is; a write after it would bury the torn record
        _warn(f"{path} ends in {what} (a crash or full disk while writing) and is read-only, so it is read as "
              "it is and not repaired")
        return
    # The copy is made before taking the lock: a long copy would outlast the lock's grace period.
    copy_path = _keep_copy(path, size, what)
    backend._lock.acquire()
    try:
        if path.stat().st_size != size:
            raise BitsmithError(f"{path} changed while bitsmith was repairing its torn end (another process is "
                                "writing to it); stop the other processes and run the command again")
        with path.open("r+b") as f:
            f.truncate(keep)
            f.seek(keep)
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise BitsmithError(f"cannot repair the torn end of {path}: {e.strerror or e}; the original is kept as "
                            f"{copy_path}") from None
    finally:
        backend._lock.release()
    if tail == b"\n":
        _warn(f"{path} ended in {what}; added the newline, every record is kept; the original is kept as "
              f"{copy_path}")
    else:
        cut = f"the {size - keep - len(tail)} bytes of the incomplete one" if tail else f"its last {size - keep} bytes"
        _warn(f"{path} ended in {what} (a crash, power cut or full disk while writing): cut off {cut}, every "
              f"complete record is kept; the original is kept as {copy_path}")


def _keep_copy(path: Path, size: int, what: str) -> Path:
    """A copy of the first ``size`` bytes of ``path`` beside it, under a name not taken before."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    for n in range(1, 1000):
        target = path.with_name(f"{path.name}.torn-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            out = target.open("xb")  # never overwrites an earlier copy
        except FileExistsError:
            continue
        except OSError as e:
            raise _no_copy(path, what, e) from None
        try:
            with out, path.open("rb") as src:
                left = size
                while left:
                    chunk = src.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            target.unlink(missing_ok=True)
            raise _no_copy(path, what, e) from None
        return target
    raise BitsmithError(f"{path} ends in {what}, and there are too many earlier copies beside it; remove some "
                        f"{path.name}.torn-* files")


def _no_copy(path: Path, what: str, e: OSError) -> BitsmithError:
    return BitsmithError(f"{path} ends in {what}, which bitsmith cuts off after keeping a copy of the file, and the "
                         f"copy failed: {e.strerror or e}; free some space and run the command again (the file is "
                         "left as it is)")


def _damaged(path: Path, error: Exception) -> BitsmithError:
    """The error for a journal that Optuna cannot read, naming the first damaged line (a full read: errors only)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break  # the end: torn, repaired after the read
            if not _is_record(line) and f.peek(1):
                return BitsmithError(f"{path} line {number} is not a valid journal record, and it is not the last "
                                     "line, so bitsmith does not repair it; restore the file from a backup or give "
                                     "another --storage path (the file is left as it is)")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return BitsmithError(f"cannot read the journal file {path}: {first} (the file is left as it is)")


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


def _remove_stale_lock(path: Path) -> None:
    """Remove a lock older than ``LOCK_GRACE_S`` (its process was killed while writing), with a warning."""
    lock = path.with_name(path.name + ".lock")
    try:
        st = os.lstat(lock)  # lstat: the lock is a symlink to the journal, whose own mtime tells nothing
    except OSError:
        return
    if time.time() - st.st_mtime <= LOCK_GRACE_S:
        return  # held now: Optuna waits for it
    aside = lock.with_name(f"{lock.name}{uuid.uuid4()}.rename")  # renamed first, as Optuna releases it
    try:
        os.rename(lock, aside)
    except OSError:
        return  # another process removed it first
    try:
        if os.lstat(aside).st_ino != st.st_ino:  # a new lock was taken between lstat and rename: give it back
            try:
                os.link(aside, lock, follow_symlinks=False)
            except OSError:
                pass
            return
    finally:
        os.unlink(aside)
    age = time.time() - st.st_mtime
    _warn(f"removed the stale lock {lock} ({age:.0f} s old), left by a process killed while writing to the journal")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# -- databases ------------------------------------------------------------------------------------

def hide_password(url: str | None) -> str | None:
    """``url`` with its password shown as ``***`` (postgresql://user:***@host/db), for messages."""
    if not url:
        return url
    m = re.match(r"^([A-Za-z][\w+.-]*://)([^/?#]*)(.*)$", url, re.S)
    if m:
        scheme, netloc, rest = m.groups()
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        url = scheme + netloc + rest
    return re.sub(r"([?&](?:password|pass|pwd)=)[^&#]*", r"\1***", url, flags=re.I)


def _open_rdb(url: str, timeout: float, rdb_kwargs: dict[str, Any]):
    shown = hide_password(url)
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "postgres":  # SQLAlchemy dropped this alias; hosting services still hand it out
        url = "postgresql" + url[len("postgres"):]
        scheme = "postgresql"
    if scheme == "sqlite":
        _check_sqlite_dir(url, shown)
        connect = {"timeout": timeout}  # seconds to wait for another process's write lock
    elif scheme == "postgresql":
        connect = {"connect_timeout": max(2, math.ceil(timeout))}  # libpq: whole seconds, at least 2
    else:
        connect = {"connect_timeout": max(1, math.ceil(timeout))}
    engine_kwargs = dict(rdb_kwargs.pop("engine_kwargs", None) or {})
    engine_kwargs["connect_args"] = {**connect, **engine_kwargs.get("connect_args", {})}
    deadline = time.monotonic() + timeout
    for attempt in range(3):
        started = time.monotonic()
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **rdb_kwargs)
        except ImportError as e:
            raise BitsmithError(f"storage {shown} needs a database driver that is not installed ({e}); for "
                                "PostgreSQL: pip install 'bitsmith[postgres]'") from None
        except Exception as e:  # sqlalchemy raises many types for unreachable or foreign databases
            text = _first_line(e, url)
            if _timed_out(text, time.monotonic() - started, timeout):
                if scheme == "sqlite":
                    raise BitsmithError(f"storage {shown}: the database stayed locked for {timeout:g} s; check for a "
                                        "stuck process using it, or raise --storage-timeout") from None
                raise BitsmithError(f"storage {shown}: no answer within {timeout:g} s; check the server, or raise "
                                    "--storage-timeout") from None
            # Workers starting together on an empty database race to create Optuna's tables; the loser retries.
            delay = 0.3 * (attempt + 1)
            if not _creation_race(e, text) or attempt == 2 or time.monotonic() + delay > deadline:
                import sqlalchemy.exc

                hint = "; check the URL and that the server runs" \
                    if isinstance(e, sqlalchemy.exc.OperationalError) and scheme != "sqlite" else ""
                raise BitsmithError(f"cannot open storage {shown}: {text}{hint}") from None
            time.sleep(delay)


def _first_line(error: Exception, url: str) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    text = (text.splitlines() or [type(error).__name__])[0][:200]
    m = re.match(r"^[^:/]+://[^:@/]*:([^@/]+)@", url)
    return text.replace(m.group(1), "***") if m else text


def _timed_out(text: str, elapsed: float, timeout: float) -> bool:
    text = text.lower()
    return "timeout expired" in text or "timed out" in text or "database is locked" in text \
        or elapsed >= 0.9 * timeout


def _creation_race(error: Exception, text: str) -> bool:
    import sqlalchemy.exc

    text = text.lower()
    return isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in text or "duplicate key" in text


def _check_sqlite_dir(url: str, shown: str) -> None:
    import sqlalchemy.engine

    try:
        database = sqlalchemy.engine.make_url(url).database
    except Exception:  # sqlalchemy's own error comes when it connects
        return
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().parent
    if not folder.is_dir():
        raise BitsmithError(f"storage {shown}: the directory {folder} does not exist; create it "
                            f"(mkdir -p {folder}) or give another path")


# -- studies --------------------------------------------------------------------------------------

def study_names(storage) -> list[str]:
    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as e:
        raise BitsmithError(f"cannot read studies from the storage: {str(e).splitlines()[0][:200]}") from None


def resolve_study_name(storage, base: str, fresh: bool) -> tuple[str, bool]:
    """The study to use and whether it exists: the newest ``base[-N]`` (resume), or a new one (``fresh``).

    A fresh start never deletes an earlier study; it takes the next free suffix.
    """
    names = set(study_names(storage))
    taken = [base] if base in names else []
    n = 2
    while f"{base}-{n}" in names:
        taken.append(f"{base}-{n}")
        n += 1
    if not fresh and taken:
        return taken[-1], True
    if not taken:
        return base, False
    return f"{base}-{n}", False
