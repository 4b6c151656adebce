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
