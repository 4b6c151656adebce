"""A study's total, kept by every process: a trial starts only while the study holds fewer than ``n_trials``.

Optuna's ``MaxTrialsCallback`` stops a process after a trial ends; processes
that start trials at the same moment still overshoot (two workers at 39 of 40
both start one). Here the count and the start of a trial (a new one, or a
queued one taken) happen under one lock that all processes of the study share;
a process that finds the study full raises :class:`StudyFull` before a trial
exists, and ends its ``optimize``. The lock is a ``flock`` on a file beside a
journal or SQLite file (the kernel drops it when a process dies), and a
PostgreSQL advisory lock for a server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from optuna.trial import TrialState

COUNTED = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)  # failed trials are retried, not counted


class StudyFull(Exception):
    """The study holds its ``n_trials``; no trial was started."""


class TrialLimit:
    """Mixin for a storage: ``limit_trials(study_id, n)``, then ``room(starting)`` around each trial start."""

    _limit: tuple[int, int, bool] | None = None

    def limit_trials(self, study_id: int, n_trials: int, queued_only: bool = False) -> None:
        """From now on, start trials of ``study_id`` only while it holds fewer than ``n_trials``; with
        ``queued_only`` (every point of the space is queued), only take queued trials, never make new ones."""
        self._limit = (study_id, n_trials, queued_only)

    @contextlib.contextmanager
    def room(self, starting: bool = True, new: bool = False):
        """Around the start of a trial (``new``: one made now, not a queued one taken): hold the study's lock,
        and raise StudyFull when the study holds its total already."""
        if self._limit is None or not starting:
            yield
            return
        study_id, n_trials, queued_only = self._limit
        if new and queued_only:
            raise StudyFull  # Optuna makes a new trial only when it found none queued: the space is done
        with self.study_lock(study_id):
            if len(self.get_all_trials(study_id, deepcopy=False, states=COUNTED)) >= n_trials:
                raise StudyFull
            yield

    def study_lock(self, study_id: int):
        raise NotImplementedError


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive ``flock`` on ``path`` (created beside the study's file; never removed: it holds no data)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def advisory_lock(engine, name: str):
    """A PostgreSQL session advisory lock keyed by ``name``, on a connection of its own."""
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"bitsmith:{name}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
