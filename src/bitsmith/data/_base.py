"""The shared recipe: deduplicate, split, scale; and the processed-array cache."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bitsmith.errors import BitsmithError

# The usual JSC recipe (hls4ml tutorial): 80/20 split with random_state 42; the
# validation split is carved from the training part with the same seed, and
# the scaler is fitted on what remains for training, so no split leaks.
MIN_ROWS = 50
RECIPE = {"version": 1, "dedupe": True, "test_size": 0.2, "val_size": 0.1, "random_state": 42}
VAL_SIZE = RECIPE["val_size"]  # the default of the val_size setting (config.Settings states it too)


def recipe(val_size: float = VAL_SIZE) -> dict:
    """The recipe with ``val_size`` of the training part as the validation split. The default gives RECIPE
    itself, so cache entries and data digests made before the setting existed stay valid; the test split
    never depends on it (the first split does not see it)."""
    return RECIPE if val_size == VAL_SIZE else {**RECIPE, "val_size": val_size}


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DataSplits:
    """A data set in memory: three disjoint splits and what models need to know."""

    name: str
    train: Split
    val: Split
    test: Split
    in_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        aliases = {"train": "train", "val": "val", "validation": "val", "test": "test",
                   "train_dataloader": "train", "val_dataloader": "val", "test_dataloader": "test"}
        return getattr(self, aliases[name])


def cache_dir() -> Path:
    """``$BITSMITH_CACHE`` or the user cache directory (never the source tree)."""
    env = os.environ.get("BITSMITH_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("bitsmith"))


def cache_key(source: str, recipe: dict) -> str:
    blob = json.dumps({"source": source, "recipe": recipe}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_sizes(n: int, recipe: dict = RECIPE) -> dict[str, int]:
    """Rows per split for ``n`` rows, rounded as scikit-learn's train_test_split does."""
    n_test = math.ceil(recipe["test_size"] * n)
    n_val = math.ceil(recipe["val_size"] * (n - n_test))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def split_and_scale(x: np.ndarray, y: np.ndarray, recipe: dict = RECIPE,
                    class_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Deduplicate rows, split train/val/test, fit the scaler on train only."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if recipe["dedupe"]:
        rows = np.concatenate([x, y[:, None].astype(x.dtype)], axis=1)
        _, keep = np.unique(rows, axis=0, return_index=True)
        keep.sort()  # keep the file's order so the split matches other tools'
        x, y = x[keep], y[keep]
    classes = np.unique(y)
    if len(classes) == 1:
        label = class_names[classes[0]] if classes[0] < len(class_names) else classes[0]
        raise BitsmithError(f"every row is of class {str(label)!r}: training a classifier needs rows of "
                            f"at least two classes; give the full data set, not one class of it")
    if len(y) < MIN_ROWS:
        raise BitsmithError(f"only {len(y)} distinct rows: too few to split into train/val/test "
                            f"(at least {MIN_ROWS}); give the full data set")
    empty = [name for name, size in split_sizes(len(y), recipe).items() if size <= 0]
    if empty:
        raise BitsmithError(f"{len(y)} distinct rows leave the {' and '.join(empty)} split empty "
                            f"(test_size {recipe['test_size']}, val_size {recipe['val_size']}); give more rows")
    seed = recipe["random_state"]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=recipe["test_size"], random_state=seed)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=recipe["val_size"], random_state=seed)
    scaler = StandardScaler().fit(x_tr)
    out = {}
    for name, xs, ys in (("train", x_tr, y_tr), ("val", x_va, y_va), ("test", x_te, y_te)):
        out[f"x_{name}"] = scaler.transform(xs).astype(np.float32)
        out[f"y_{name}"] = ys.astype(np.int64)
    return out


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """One .npy file per array and meta.json in the directory ``path``; written beside it and renamed into
    place, so an interrupted run never leaves a broken cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", value, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps({**meta, "arrays": sorted(arrays)}))
        os.replace(tmp, path)
    except OSError:
        if not path.is_dir():
            raise
        # another process wrote the same entry first; its copy is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The cached arrays, memory-mapped (pages are read when used: a search that scores 512 rows reads
    little more than those), or None when absent or unreadable (then rebuilt)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        # copy-on-write: tensors made from them are writable, and the file is never changed
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="c", allow_pickle=False) for k in meta.pop("arrays")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arrays, meta


def to_splits(name: str, arrays: dict[str, np.ndarray], in_shape: tuple[int, ...],
              class_names: tuple[str, ...], source: str, info: dict | None = None) -> DataSplits:
    def make(part: str) -> Split:
        x = torch.from_numpy(arrays[f"x_{part}"]).reshape(-1, *in_shape)
        return Split(x.contiguous(), torch.from_numpy(arrays[f"y_{part}"]))

    return DataSplits(name, make("train"), make("val"), make("test"), in_shape, class_names, source,
                      dict(info or {}))


def digest(arrays: dict[str, np.ndarray]) -> str:
    """What the processed splits hold, byte for byte (a study resumes only on the same data)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(str(arrays[key].dtype).encode() + str(arrays[key].shape).encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()[:16]


def cached(name: str, source: str, build, recipe: dict = RECIPE) -> tuple[dict[str, np.ndarray], dict]:
    """Processed arrays for ``source`` and their metadata (with ``digest``): from the cache, else
    ``build()`` and store."""
    path = cache_dir() / "processed" / f"{name}-{cache_key(source, recipe)}"
    hit = load_arrays(path)
    if hit is not None:
        arrays, meta = hit
        if "digest" not in meta:  # a cache written before digests were recorded
            meta["digest"] = digest(arrays)
        return arrays, meta
    shutil.rmtree(path, ignore_errors=True)  # a damaged entry (hit is None) is replaced
    arrays, meta = build()
    meta = {**meta, "digest": digest(arrays)}
    try:
        save_arrays(path, arrays, meta)
    except OSError:
        pass  # a read-only cache only costs speed
    return arrays, meta
