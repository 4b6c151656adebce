"""The hls4ml LHC jet-substructure set (JSC): 16 high-level features, 5 classes.

Sources, first found wins: a local file (``data_path`` / ``--data-path`` /
``$BITSMITH_JSC_PATH``); the processed cache of the OpenML copy; a download
from OpenML (data set 42468), once, into the cache directory.

Class indices are alphabetical, ``g q t w z`` -> 0..4, for both file layouts:
OpenML's ``class`` column and the older HDF5 release's one-hot ``j_g j_q j_w
j_z j_t`` columns (which list the classes in another order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bitsmith.data._base import VAL_SIZE, DataSplits, cache_dir, cached, recipe, split_and_scale, to_splits
from bitsmith.data.registry import register_dataset
from bitsmith.errors import BitsmithError

OPENML_ID = 42468
ENV_PATH = "BITSMITH_JSC_PATH"
ENV_OFFLINE = "BITSMITH_OFFLINE"
HDF5_KEY = "t_allpar_new"
FEATURES = (
    "zlogz", "c1_b0_mmdt", "c1_b1_mmdt", "c1_b2_mmdt", "c2_b1_mmdt", "c2_b2_mmdt",
    "d2_b1_mmdt", "d2_b2_mmdt", "d2_a1_b1_mmdt", "d2_a1_b2_mmdt", "m2_b1_mmdt",
    "m2_b2_mmdt", "n2_b1_mmdt", "n2_b2_mmdt", "mass_mmdt", "multiplicity",
)
CLASS_NAMES = ("g", "q", "t", "w", "z")
TARGET = "class"
H5_FEATURES = tuple(f"j_{f}" for f in FEATURES)
H5_LABELS = tuple(f"j_{c}" for c in CLASS_NAMES)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 files start with the signature, or hold it after a user block of 512, 1024, 2048... bytes.
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


def is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        for offset in HDF5_OFFSETS:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def one_line(e: Exception) -> str:
    """A library error as one line: PyTables puts HDF5's whole back trace into its messages."""
    trace = getattr(e, "h5backtrace", None)
    if trace:
        return str(trace[-1][-1])  # the innermost cause, e.g. "truncated file: eof = ..."
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else "no details"


def read_frame(path: Path):
    """Read a CSV, Parquet or HDF5 file into a pandas DataFrame."""
    import pandas as pd

    suffixes = "".join(path.suffixes).lower()
    try:
        if ".csv" in suffixes:
            return pd.read_csv(path)
        if suffixes.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if suffixes.endswith((".h5", ".hdf5", ".hdf", ".z")):
            # Checked first: HDF5's own error for a file of another kind is a 20-line back trace.
            if not is_hdf5(path):
                raise BitsmithError(f"{path} is not an HDF5 file (no HDF5 signature); give the JSC file "
                                    f"as .csv, .parquet or a pandas HDF5 file (.h5/.z)")
            with pd.HDFStore(path, mode="r") as store:
                keys = [k.lstrip("/") for k in store.keys()]
                key = HDF5_KEY if HDF5_KEY in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise BitsmithError(f"{path}: HDF5 file has keys {keys}, expected {HDF5_KEY!r}")
                return store[key]
    except ImportError as e:
        raise BitsmithError(f"reading {path.name} needs {e.name}: pip install 'bitsmith[files]'") from None
    except BitsmithError:
        raise
    except Exception as e:  # pandas raises many types for unreadable files
        raise BitsmithError(f"cannot read JSC file {path}: {type(e).__name__}: {one_line(e)}") from None
    raise BitsmithError(f"{path}: unknown file type {suffixes or '(none)'}; use .csv, .parquet or .h5/.z")


def where(path: Path, i: int) -> str:
    """The file and data row ``i`` (0-based) as a person counts them; a CSV's line 1 is its header."""
    line = f" (line {i + 2})" if ".csv" in "".join(path.suffixes).lower() else ""
    return f"{path}: row {i + 1}{line}"


def numbers(frame, columns: tuple[str, ...], path: Path) -> np.ndarray:
    """``columns`` as float32; a cell that is not a number is named by row and column."""
    import pandas as pd

    try:
        return frame[list(columns)].to_numpy(np.float32)
    except (ValueError, TypeError):
        pass  # find the culprit; only failed conversions pay for this
    for c in columns:
        col = frame[c]
        bad = (pd.to_numeric(col, errors="coerce").isna() & col.notna()).to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise BitsmithError(f"{where(path, i)}, column {c!r} holds {str(col.iloc[i])[:40]!r}, not a number")
    raise BitsmithError(f"{path}: columns {', '.join(columns)} cannot be read as numbers")


def frame_to_arrays(frame, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features in OpenML order and class indices, from either layout."""
    cols = set(frame.columns)
    openml_missing = [c for c in (*FEATURES, TARGET) if c not in cols]
    h5_missing = [c for c in (*H5_FEATURES, *H5_LABELS) if c not in cols]
    if not openml_missing:
        features = FEATURES
        x = numbers(frame, FEATURES, path)
        labels = frame[TARGET].astype(str).str.strip().str.strip("b'\"").to_numpy()
        known = np.isin(labels, CLASS_NAMES)
        if not known.all():
            i = int(known.argmin())
            raise BitsmithError(f"{where(path, i)}, column 'class' holds {str(frame[TARGET].iloc[i])[:40]!r}, "
                                f"not a JSC class label; expected one of {', '.join(CLASS_NAMES)}")
        index = {c: i for i, c in enumerate(CLASS_NAMES)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
    elif not h5_missing:
        features = H5_FEATURES
        x = numbers(frame, H5_FEATURES, path)
        onehot = numbers(frame, H5_LABELS, path)
        bad = ~np.all((onehot == 0) | (onehot == 1), axis=1) | (onehot.sum(axis=1) != 1)
        if bad.any():
            i = int(bad.argmax())
            raise BitsmithError(f"{where(path, i)}: label columns {', '.join(H5_LABELS)} hold "
                                f"{onehot[i].tolist()}, not one-hot (a single 1, the rest 0)")
        y = onehot.argmax(axis=1).astype(np.int64)
    else:
        missing, layout = ((openml_missing, "OpenML") if len(openml_missing) <= len(h5_missing)
                           else (h5_missing, "HDF5 (j_ prefixed)"))
        raise BitsmithError(
            f"{path}: missing JSC columns for the {layout} layout: {', '.join(missing[:4])}"
            f"{f' and {len(missing) - 4} more' if len(missing) > 4 else ''}; "
            f"see the column list in the docs (docs/data.md)")
    finite = np.isfinite(x)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BitsmithError(f"{where(path, int(i))}, column {features[j]!r} holds {x[i, j]}, not a finite number "
                            f"(an empty cell reads as nan); fix or drop that row")
    return x, y


def check_file(path: Path, shown: str) -> None:
    if not path.is_file():
        what = ("does not exist" if not path.exists() else
                "is a directory, not a file" if path.is_dir() else "is not a regular file")
        raise BitsmithError(f"JSC file {shown!r} {what}; check --data-path / data_path / ${ENV_PATH}")


def read_jsc_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path).expanduser()
    check_file(path, str(path))
    return frame_to_arrays(read_frame(path), path)


def download_openml() -> tuple[np.ndarray, np.ndarray]:
    """Fetch OpenML 42468 once (scikit-learn keeps the raw download in the cache)."""
    where = cache_dir()
    hint = (f"download hls4ml_lhc_jets_hlf (OpenML {OPENML_ID}) as CSV or Parquet and pass "
            f"--data-path FILE (or data_path in the config, or ${ENV_PATH}); processed data is cached in {where}")
    if os.environ.get(ENV_OFFLINE):
        raise BitsmithError(f"JSC is not cached and ${ENV_OFFLINE} is set, so it is not downloaded: {hint}")
    from sklearn.datasets import fetch_openml

    try:
        bunch = fetch_openml(data_id=OPENML_ID, data_home=str(where / "openml"), as_frame=True, parser="auto")
    except Exception as e:  # network errors come in many types
        raise BitsmithError(f"cannot download JSC from OpenML ({type(e).__name__}: {e}): {hint}") from None
    frame = bunch.frame if bunch.frame is not None else bunch.data.assign(**{TARGET: bunch.target})
    return frame_to_arrays(frame, Path(f"openml:{OPENML_ID}"))


@register_dataset("jsc", reads_file=True,
                  description="LHC jet substructure, 16 features, 5 classes (--data-path FILE, cache or OpenML 42468)")
def load_jsc(data_path: str | None = None, val_size: float = VAL_SIZE) -> DataSplits:
    path = data_path or os.environ.get(ENV_PATH)
    if path:
        p = Path(path).expanduser().resolve()
        check_file(p, str(path))
        st = p.stat()
        source = f"file:{p}:{st.st_size}:{st.st_mtime_ns}"
        read = lambda: read_jsc_file(p)  # noqa: E731
    else:
        source = f"openml:{OPENML_ID}"
        read = download_openml

    def build():
        x, y = read()
        return split_and_scale(x, y, recipe(val_size), class_names=CLASS_NAMES), {"rows": int(len(x))}

    arrays, meta = cached("jsc", source, build, recipe(val_size))
    return to_splits("jsc", arrays, (len(FEATURES),), CLASS_NAMES, source, meta)
