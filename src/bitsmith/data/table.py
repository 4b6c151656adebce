"""``table``: the user's own CSV, Parquet or NPZ file with a named label column.

Every other column is a feature and must hold finite numbers. Classes are the
label column's distinct values in sorted order (0..K-1); their names are kept.
An NPZ file holds one array per column: 1-D arrays are columns, a 2-D array
``x`` of width k is the columns ``x[0] .. x[k-1]``, in the archive's order.
The processed arrays are cached by the file's contents and the label column.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from bitsmith.data._base import VAL_SIZE, DataSplits, cached, recipe, split_and_scale, to_splits
from bitsmith.data.registry import register_dataset
from bitsmith.errors import BitsmithError, closest

NAME = "table"
SUFFIXES = ".csv, .parquet or .npz"
# Bumped when reading changes what a file gives, so old cache entries are not reused.
READER_VERSION = 1
ZIP_SIGNATURE = b"PK\x03\x04"
KINDS = {"csv": "CSV", "parquet": "Parquet", "npz": "NPZ"}
USAGE = "--data-path FILE --label-column NAME (or data_path and label_column in the config)"


def kind_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".csv" in suffixes:  # also .csv.gz, .csv.zip: pandas decompresses them
        return "csv"
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if suffixes and suffixes[-1] == ".npz":
        return "npz"
    raise BitsmithError(f"{path}: unknown file type {''.join(suffixes) or '(no suffix)'}; give the data set "
                        f"as {SUFFIXES} (a spreadsheet: save it as CSV)")


def check_file(path: Path, shown: str) -> None:
    if not path.is_file():
        what = ("does not exist" if not path.exists() else
                "is a directory, not a file" if path.is_dir() else "is not a regular file")
        raise BitsmithError(f"data file {shown!r} {what}; check --data-path / data_path")
    if path.stat().st_size == 0:
        raise BitsmithError(f"data file {shown!r} is empty (0 bytes); give a table with a header and rows")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def where(path: Path, kind: str, i: int) -> str:
    """Data row ``i`` (0-based) as a person counts it; a CSV's line 1 is its header."""
    return f"{path}: row {i + 1}" + (f" (line {i + 2})" if kind == "csv" else "")


def read_npz(path: Path, label: str | None):
    """An NPZ archive as a DataFrame: 1-D arrays are columns, 2-D arrays are blocks of columns."""
    import pandas as pd

    with open(path, "rb") as f:
        if f.read(len(ZIP_SIGNATURE)) != ZIP_SIGNATURE:
            raise BitsmithError(f"{path} is not an NPZ file (not a zip archive as numpy.savez writes)")
    columns: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            try:
                a = archive[key]
            except ValueError:  # numpy refuses object arrays without pickle, and bitsmith never unpickles
                raise BitsmithError(f"{path}: array {key!r} holds Python objects (dtype=object), which are "
                                    f"not read; save it as numbers or as strings (np.asarray(a, dtype=str))") from None
            if key == label and a.ndim != 1:
                raise BitsmithError(f"{path}: the label array {key!r} has shape {a.shape}; give one class per "
                                    f"row as a 1-D array (from one-hot labels: y.argmax(axis=1))")
            if a.ndim not in (1, 2):
                raise BitsmithError(f"{path}: array {key!r} has shape {a.shape}; give 1-D arrays (one column) or "
                                    f"2-D arrays (rows x columns), e.g. images flattened with a.reshape(len(a), -1)")
            rows[key] = len(a)
            if a.ndim == 1:
                columns[key] = a
            else:
                columns.update({f"{key}[{j}]": a[:, j] for j in range(a.shape[1])})
    if len(set(rows.values())) > 1:
        raise BitsmithError(f"{path}: arrays have different numbers of rows "
                            f"({', '.join(f'{k}: {n}' for k, n in rows.items())}); every array needs one entry per row")
    return pd.DataFrame(columns)


def read_frame(path: Path, kind: str, label: str | None):
    """The file as a pandas DataFrame."""
    import pandas as pd

    try:
        if kind == "csv":
            return pd.read_csv(path, low_memory=False)  # whole columns at once: one dtype per column
        if kind == "parquet":
            return pd.read_parquet(path)
        return read_npz(path, label)
    except ImportError as e:
        raise BitsmithError(f"reading {path.name} needs {e.name}: pip install 'bitsmith[files]'") from None
    except BitsmithError:
        raise
    except UnicodeDecodeError as e:
        raise BitsmithError(f"{path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); "
                            f"save it as UTF-8 CSV") from None
    except Exception as e:  # pandas, pyarrow and zipfile raise many types for unreadable files
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise BitsmithError(f"cannot read {path} as {KINDS[kind]}: {type(e).__name__}: "
                            f"{lines[0][:200] if lines else 'no details'}; check that it is a {KINDS[kind]} file"
                            ) from None


def listed(columns: list[str], most: int = 8) -> str:
    more = f" and {len(columns) - most} more" if len(columns) > most else ""
    return ", ".join(columns[:most]) + more


def check_columns(frame, path: Path, kind: str, label: str | None) -> list[str]:
    """The feature columns, once the label column is known to be there."""
    columns = [str(c) for c in frame.columns]
    if label is None:
        raise BitsmithError(f"data set {NAME!r} needs the name of the label column: add --label-column NAME "
                            f"(or label_column in the config); {path.name}'s columns: {listed(columns)}")
    if label not in columns:
        near = closest(label, columns)
        hint = f"did you mean {near!r}? " if near else ""
        if kind == "csv" and len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = "is it separated by something other than commas? save it as comma-separated CSV; "
        raise BitsmithError(f"{path} has no column {label!r}; {hint}its columns: {listed(columns)}; "
                            f"set --label-column / label_column")
    unnamed = [i for i, c in enumerate(columns) if kind == "csv" and c.startswith("Unnamed: ")]
    if unnamed:
        raise BitsmithError(f"{path}: column {unnamed[0] + 1} has no name in the header line (a row index, as "
                            f"pandas' to_csv writes without index=False?); name that column or drop it")
    features = [c for c in columns if c != label]
    if not features:
        raise BitsmithError(f"{path} has only the label column {label!r}; the other columns are the features")
    if len(frame) == 0:
        raise BitsmithError(f"{path} has a header but no rows; give the rows of the data set")
    return features


def feature_array(frame, features: list[str], path: Path, kind: str) -> np.ndarray:
    """The feature columns as float32; the first cell that is not a finite number is named."""
    import pandas as pd

    parsed = {}
    for c in features:
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col):
            continue
        hint = (f"every column but the label column is a feature and must hold numbers: encode {c!r} as numbers "
                f"or drop it")
        if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
            raise BitsmithError(f"{path}: column {c!r} holds {col.dtype} values, not numbers; {hint}")
        parsed[c] = pd.to_numeric(col, errors="coerce")  # text that spells numbers is numbers
        bad = (parsed[c].isna() & col.notna()).to_numpy(bool)
        if bad.any():
            i = int(bad.argmax())
            raise BitsmithError(f"{where(path, kind, i)}, column {c!r} holds {str(col.iloc[i])[:40]!r}, not a number; "
                                f"{hint}")
    x = frame.assign(**parsed)[features].to_numpy(np.float32, na_value=np.nan)
    finite = np.isfinite(x)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BitsmithError(f"{where(path, kind, int(i))}, column {features[j]!r} holds {x[i, j]}, not a finite "
                            f"number (an empty cell reads as nan); fix or drop that row")
    return x


def label_array(frame, label: str, path: Path, kind: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices 0..K-1 in the sorted order of the label column's values, and the class names."""
    import pandas as pd

    col = frame[label]
    if pd.api.types.is_float_dtype(col):
        v = col.to_numpy(np.float64, na_value=np.nan)
        missing = np.isnan(v)
        fraction = ~missing & (v != np.round(v))
        if fraction.any():
            i = int(fraction.argmax())
            raise BitsmithError(
                f"{where(path, kind, i)}, label column {label!r} holds {v[i]:g}, not a whole number: class labels "
                f"are integers or names; convert the column (a quantity to predict is regression, which bitsmith "
                f"does not train)")
        if not missing.any():
            values = v.astype(np.int64)  # 1.0 is class "1", not "1.0"
    elif pd.api.types.is_bool_dtype(col) or pd.api.types.is_integer_dtype(col):
        missing = col.isna().to_numpy()  # nullable Int64 / boolean columns can hold NA
        if not missing.any():
            values = col.to_numpy(bool if pd.api.types.is_bool_dtype(col) else np.int64)
    else:
        text = col.astype("string").str.strip()
        missing = (text.isna() | (text == "")).to_numpy(bool)
        if not missing.any():
            values = text.to_numpy(str)
    if missing.any():
        i = int(missing.argmax())
        raise BitsmithError(f"{where(path, kind, i)}: the label column {label!r} is empty; give every row a class, "
                            f"or drop that row")
    classes, y = np.unique(values, return_inverse=True)
    names = tuple(str(c) for c in classes)
    if len(names) == 1:
        raise BitsmithError(f"{path}: the label column {label!r} holds one class only ({names[0]!r}); a classifier "
                            f"needs at least two: is {label!r} the right column, and the file the whole data set?")
    if 2 * len(names) > len(y):
        raise BitsmithError(f"{path}: the label column {label!r} holds {len(names)} distinct values in {len(y)} rows, "
                            f"fewer than two rows per class: is it an ID or a quantity to predict (regression)? "
                            f"name the column of class labels")
    return y.astype(np.int64), names


def read_table(path: str | Path, label: str | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], list[str]]:
    """Features, class indices, class names and feature names of a table file."""
    path = Path(path).expanduser()
    check_file(path, str(path))
    kind = kind_of(path)
    frame = read_frame(path, kind, label)
    features = check_columns(frame, path, kind, label)
    y, names = label_array(frame, label, path, kind)  # first: a wrong label column explains the rest
    x = feature_array(frame, features, path, kind)
    return x, y, names, features


@register_dataset(NAME, reads_file=True,
                  description="your own CSV, Parquet or NPZ file: --data-path FILE --label-column NAME")
def load_table(data_path: str | None = None, label_column: str | None = None,
               val_size: float = VAL_SIZE) -> DataSplits:
    if not data_path:
        raise BitsmithError(f"data set {NAME!r} reads your own file ({SUFFIXES}): give {USAGE}")
    path = Path(data_path).expanduser().resolve()
    check_file(path, str(data_path))
    kind = kind_of(path)
    if label_column is None:
        check_columns(read_frame(path, kind, None), path, kind, None)  # names the columns to choose from
    # By contents, not name or time: an edited file is never served stale, a copy reuses the entry.
    content = file_digest(path)
    source = json.dumps({"reader": READER_VERSION, "kind": kind, "sha256": content, "label_column": label_column})

    def build():
        x, y, names, features = read_table(path, label_column)
        arrays = split_and_scale(x, y, recipe(val_size), class_names=names)
        return arrays, {"rows": len(x), "file": str(path), "label_column": label_column,
                        "class_names": list(names), "features": features}

    arrays, meta = cached(NAME, source, build, recipe(val_size))
    in_shape = (int(arrays["x_train"].shape[1]),)
    return to_splits(NAME, arrays, in_shape, tuple(meta["class_names"]), f"file:{path}:sha256={content[:16]}",
                     {**meta, "file": str(path)})
