"""SIGINT and SIGTERM during a search: the same clean stop, at a point where no trial is half-recorded."""

from __future__ import annotations

import contextlib
import signal


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
