"""Shared fixtures. Every test run gets its own data cache, never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

JSC_HEAD5 = Path(__file__).resolve().parent / "data" / "openml42468_head5.csv"

# Set before bitsmith is imported anywhere, so no test touches ~/.cache.
os.environ.setdefault("BITSMITH_CACHE", tempfile.mkdtemp(prefix="bitsmith-test-cache-"))
os.environ["BITSMITH_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def jsc_head5_csv() -> Path:
    """The first five real JSC rows, kept in tests/data/ (for parsing tests)."""
    return JSC_HEAD5


def make_jsc_frame(n: int = 3000, seed: int = 0):
    """A JSC-layout table with learnable classes: per-class feature offsets plus noise."""
    import pandas as pd

    from bitsmith.data.jsc import CLASS_NAMES, FEATURES

    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASS_NAMES), n)
    centers = rng.normal(0, 2.0, (len(CLASS_NAMES), len(FEATURES)))
    x = centers[y] + rng.normal(0, 1.0, (n, len(FEATURES)))
    frame = pd.DataFrame(x.astype(np.float32), columns=list(FEATURES))
    frame["class"] = [CLASS_NAMES[i] for i in y]
    return frame


def to_h5_layout(frame):
    """The older release's layout: j_-prefixed features, one-hot j_g j_q j_w j_z j_t labels."""
    import pandas as pd

    from bitsmith.data.jsc import FEATURES

    out = pd.DataFrame({f"j_{f}": frame[f].to_numpy() for f in FEATURES})
    for c in ("g", "q", "w", "z", "t"):  # the older release's column order
        out[f"j_{c}"] = (frame["class"] == c).astype(np.int64).to_numpy()
    return out


@pytest.fixture(scope="session")
def jsc_files(tmp_path_factory) -> dict[str, Path]:
    """The same generated JSC rows written as CSV, Parquet and HDF5 (j_ layout)."""
    d = tmp_path_factory.mktemp("jsc")
    frame = make_jsc_frame()
    paths = {"csv": d / "jsc.csv", "parquet": d / "jsc.parquet", "h5": d / "jsc_truth.z"}
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    to_h5_layout(frame).to_hdf(paths["h5"], key="t_allpar_new", mode="w")
    return paths
