"""A persistent cache of solved layers: one small JSON file per problem, named by its digest.

A problem's digest covers everything the result depends on: the integer weight matrix and its scale, the
bias, the input intervals, the solver options, and the solver's name and version. Search trials, compare
and every worker process on a machine share one directory (``da`` in ``$BITSMITH_CACHE``, else in the user cache
directory, as the data cache). Entries are written through a temporary file and a rename, so concurrent writers and kills
leave whole files; an unreadable entry is a miss and is solved (and written) again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bitsmith.errors import BitsmithError
from bitsmith.files import write_atomic

ENV = "BITSMITH_CACHE"  # the data sets' cache too


def default_dir() -> Path:
    """``$BITSMITH_CACHE/da``, else ``da`` in the platform's user cache directory for bitsmith."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]) / "da"
    import platformdirs

    return Path(platformdirs.user_cache_dir("bitsmith")) / "da"


def digest(*parts: Any) -> str:
    """A digest of numpy arrays (values, dtype and shape), numbers, strings and dicts, in order."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"array {a.dtype.str} {a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


class Cache:
    """Solved problems in memory and, when ``directory`` is set, on disk."""

    def __init__(self, directory: Path | None):
        self.directory = None if directory is None else Path(directory)
        self.memory: dict[str, dict[str, Any]] = {}

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        hit = self.memory.get(key)
        if hit is not None or self.directory is None:
            return hit
        try:
            hit = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None  # missing, torn by an older writer, or damaged: solve again
        if not isinstance(hit, dict) or hit.get("key") != key:
            return None
        self.memory[key] = hit
        return hit

    def put(self, key: str, value: dict[str, Any]) -> None:
        value = {**value, "key": key}
        self.memory[key] = value
        if self.directory is None:
            return
        try:
            write_atomic(self._path(key), json.dumps(value), "cache entry")
        except BitsmithError:
            pass  # a cache that cannot be written only costs time: the result is in hand
