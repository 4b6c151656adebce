"""Solving layers outside the caller's thread: worker processes, and a time cap per layer.

The solver is C++ that holds the interpreter while it runs, so a thread would serialise a process's
trials on it and could not be stopped; a process can be. Each bitsmith process keeps up to ``workers``
solver processes (``python -m bitsmith.cost.worker``, started on first use and kept for later trials).
They are plain subprocesses rather than ``multiprocessing`` ones, which would import the caller's main
script again and fail in a script without a ``__main__`` guard. A solve that runs past its cap has its
process killed, and the caller gets a one-line error naming the layer.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bitsmith.errors import BitsmithError

HEADER = struct.Struct("<Q")  # the length of each pickled message


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2])  # where the bitsmith package is, installed or not
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": src if not path else f"{src}{os.pathsep}{path}"}


class _Worker:
    """One solver process; ``call`` sends a job and waits for its answer, at most ``timeout_s``."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "bitsmith.cost.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())

    def _read(self, n: int, deadline: float) -> bytes:
        fd, chunks, got = self.proc.stdout.fileno(), [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, n - got)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def call(self, fn: str, args: tuple, timeout_s: float) -> Any:
        data = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(HEADER.pack(len(data)) + data)
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        size = HEADER.unpack(self._read(HEADER.size, deadline))[0]
        ok, value = pickle.loads(self._read(size, deadline))  # our own child's answer
        if not ok:
            raise BitsmithError(value)
        return value

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


_idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()  # None: a free slot for a new process
_started = 0
_lock = threading.Lock()


def _take(workers: int) -> _Worker:
    global _started
    with _lock:
        grow = _started < workers and _idle.empty()
        if grow:
            _started += 1
    w = None if grow else _idle.get()
    if w is not None:
        return w
    try:
        return _Worker()
    except OSError as e:
        _idle.put(None)
        raise BitsmithError(f"cannot start the solver process: {e}") from None


def _give_back(w: _Worker | None) -> None:
    _idle.put(w if w is not None and w.proc.poll() is None else None)


def shutdown() -> None:
    """Stop the idle solver processes (they also exit when this process does: their stdin closes)."""
    while True:
        try:
            w = _idle.get_nowait()
        except queue.Empty:
            return
        if w is not None:
            w.kill()


atexit.register(shutdown)


def _run_one(fn: str, args: tuple, label: str, timeout_s: float, workers: int) -> Any:
    w = _take(workers)
    try:
        return w.call(fn, args, timeout_s)
    except TimeoutError:
        w.kill()
        w = None
        raise BitsmithError(f"{label}: the solver did not finish within {timeout_s:g} s; raise timeout_s in "
                            "its table, or make the layer smaller or narrower") from None
    except (EOFError, OSError, pickle.UnpicklingError):
        w.kill()
        w = None
        raise BitsmithError(f"{label}: the solver's process died (out of memory?); run again, or make the "
                            "layer smaller or narrower") from None
    except BitsmithError as e:
        raise BitsmithError(f"{label}: {e}") from None
    except BaseException:  # Ctrl-C while waiting: the process may be mid-answer, so it cannot be reused
        w.kill()
        w = None
        raise
    finally:
        _give_back(w)


def run_all(fn: str, jobs: list[tuple[str, tuple]], timeout_s: float, workers: int = 1) -> list[Any]:
    """``fn(*args)`` of the adapter for each ``(label, args)``, on up to ``workers`` solver processes, in
    order; a BitsmithError naming the first job that fails or runs past ``timeout_s``."""
    if not jobs:
        return []
    if workers == 1 or len(jobs) == 1:
        return [_run_one(fn, args, label, timeout_s, workers) for label, args in jobs]
    with cf.ThreadPoolExecutor(min(workers, len(jobs))) as pool:
        futures = [pool.submit(_run_one, fn, args, label, timeout_s, workers) for label, args in jobs]
        return [f.result() for f in futures]
