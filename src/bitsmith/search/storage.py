"""Where studies live: Optuna's journal file by default, any Optuna storage URL on request.

The default journal backend writes each record with a flush (other processes
see it at once) and fsyncs once per finished trial instead of once per record:
a killed process loses nothing, a power cut at most the trial in flight, and a
trial's storage cost drops about threefold. The file is Optuna's own journal
format, readable by ``optuna.storages.journal.JournalFileBackend``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bitsmith.errors import BitsmithError

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


@dataclass(frozen=True)
class StorageOptions:
    """Where a study lives, as the command line says it: ``--storage``, ``--study-name``, ``--storage-timeout``."""

    url: str | None = None  # None: the journal file under the project
    study_name: str | None = None
    timeout: float = 10.0  # seconds to wait for a database storage


class _TrialSyncedJournal(JournalFileBackend):
    """Optuna's journal file, fsynced per trial (``sync``) rather than per record."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._lock.acquire()
        try:
            with open(self._file_path, "ab") as f:
                f.write(data)
                f.flush()
        finally:
            self._lock.release()

    def sync(self) -> None:
        fd = os.open(self._file_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_storage(url: str | None, default_path: Path):
    """An Optuna storage for ``url`` (None: the journal file at ``default_path``)."""
    if url is None or url.endswith((".journal", ".log")) or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//") if url else default_path)
        _check_journal(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = _TrialSyncedJournal(str(path))
            return JournalStorage(backend), backend
        except (OSError, ValueError) as e:
            raise BitsmithError(f"cannot open the journal file {path}: {e}") from None
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in RDB_SCHEMES:
        raise BitsmithError(f"storage {url!r} is not a storage bitsmith can open; use a journal file path "
                            "(*.journal), sqlite:///FILE.db or postgresql://USER@HOST/DB")
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(url), None
        except ImportError:
            raise BitsmithError(f"storage {url!r} needs a database driver that is not installed; for PostgreSQL: "
                                "pip install 'bitsmith[postgres]'") from None
        except Exception as e:  # sqlalchemy raises many types for unreachable or foreign databases
            # Workers starting together on an empty database race to create Optuna's tables; the loser retries.
            error = e
            time.sleep(0.3 * (attempt + 1))
    first = str(error).strip().splitlines()[0][:200]
    raise BitsmithError(f"cannot open storage {url!r}: {first}")


def _check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal before anything is appended to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        first = f.readline()
    try:
        ok = "op_code" in json.loads(first)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise BitsmithError(f"{path} is not an Optuna journal file; give another --storage path "
                            "(the file is left as it is)")


def study_names(storage) -> list[str]:
    try:
        return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as e:
        raise BitsmithError(f"cannot read studies from the storage: {str(e).splitlines()[0][:200]}") from None


def resolve_study_name(storage, base: str, fresh: bool) -> tuple[str, bool]:
    """The study to use and whether it exists: the newest ``base[-N]`` (resume), or a new one (``fresh``).

    A fresh start never deletes an earlier study; it takes the next free suffix.
    """
    names = set(study_names(storage))
    taken = [base] if base in names else []
    n = 2
    while f"{base}-{n}" in names:
        taken.append(f"{base}-{n}")
        n += 1
    if not fresh and taken:
        return taken[-1], True
    if not taken:
        return base, False
    return f"{base}-{n}", False
