"""Helpers shared by the benchmarks (not part of the package)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def jsc_layout_file(rows: int, seed: int = 0) -> Path:
    """A JSC-layout CSV of the real set's size (the real set cannot be downloaded here)."""
    import pandas as pd

    from bitsmith.data.jsc import CLASS_NAMES, FEATURES

    path = Path(tempfile.gettempdir()) / f"bitsmith-bench-jsc-{rows}-{seed}.csv"
    if not path.exists():
        rng = np.random.default_rng(seed)
        y = rng.integers(0, len(CLASS_NAMES), rows)
        x = rng.normal(0, 1.5, (len(CLASS_NAMES), len(FEATURES)))[y] + rng.normal(0, 1.0, (rows, len(FEATURES)))
        frame = pd.DataFrame(x.astype(np.float32), columns=list(FEATURES))
        frame["class"] = np.array(CLASS_NAMES)[y]
        frame.to_csv(path, index=False)
    return path


def _spin(stop) -> None:  # a busy background process: pure Python, one core, no I/O
    x = 0
    while not stop.is_set():
        for _ in range(10_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


class busy:
    """``with busy(n):`` runs ``n`` busy background processes, started and stopped by the benchmark itself.

    Contention as on a shared machine: each one keeps a core busy for as long as
    the block runs. ``busy(0)`` is the idle case, so that one loop measures both.
    """

    def __init__(self, n: int):
        self.n = n
        self.procs: list = []

    def __enter__(self) -> "busy":
        import multiprocessing
        import time

        # fork: the child only spins, and needs no `if __name__ == "__main__"` guard in the script
        ctx = multiprocessing.get_context("fork")
        self.stop = ctx.Event()
        self.procs = [ctx.Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        if self.n:
            time.sleep(0.2)  # they are up and spinning
        return self

    def __exit__(self, *exc) -> None:
        if self.n:
            self.stop.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()

    @property
    def label(self) -> str:
        return "idle" if self.n == 0 else f"{self.n} busy processes"
