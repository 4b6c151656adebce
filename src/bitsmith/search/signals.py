"""SIGINT and SIGTERM during a search: the same clean stop, at a point where no trial is half-recorded."""

from __future__ import annotations

import contextlib
import signal


class Signals:
    """SIGINT and SIGTERM during a search. While a trial computes (builds and measures its design: nearly all
    of its time) they stop it at once, and Optuna marks the trial failed. Anywhere else, in a storage call
    above all, an interrupt could leave the journal's lock held, a record half written, or a trial
    half-recorded (Optuna's lock release, for one, then fails with "No such file or directory"), so the
    stop waits for the next safe point: the start of the computation, or the end of the trial."""

    def __init__(self):
        self.objective = None  # set once the search's objective exists
        self.pending = False

    def __call__(self, signum, frame):
        if self.objective is None or self.objective.computing:
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
