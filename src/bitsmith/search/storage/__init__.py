"""Where studies live: Optuna's journal file by default, any Optuna storage URL on request.

* ``journal``: the journal storage, three appends and one fsync per trial, write
  errors that reach the caller;
* ``files``: journal files checked, repaired after a torn write, stale locks removed;
* ``rdb``: SQLite / PostgreSQL with time-outs and hidden passwords.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from bitsmith.errors import BitsmithError
from bitsmith.search.storage.files import LOCK_GRACE_S, open_journal
from bitsmith.search.storage.journal import StorageError
from bitsmith.search.storage.limit import StudyFull
from bitsmith.search.storage.rdb import RDB_SCHEMES, hide_password, open_rdb

__all__ = ["LOCK_GRACE_S", "StorageError", "StorageOptions", "StudyFull", "hide_password", "open_storage",
           "resolve_study_name", "study_names"]


@dataclass(frozen=True)
class StorageOptions:
    """Where a study lives, as the command line says it: ``--storage``, ``--study-name``, ``--storage-timeout``."""

    url: str | None = None  # None: the journal file under the project
    study_name: str | None = None
    timeout: float = 10.0  # seconds to wait for a database storage


def open_storage(url: str | None, default_path: Path, timeout: float = 10.0, create: bool = True, **rdb_kwargs):
    """An Optuna storage for ``url`` (None: the journal file at ``default_path``) and its journal backend.

    A journal gives ``(JournalStorage, backend)``, the backend having ``sync()``; a
    database URL gives ``(RDBStorage(url, ..., **rdb_kwargs), None)``, connecting
    within ``timeout`` seconds. ``create=False`` (commands that only read): a journal
    or SQLite file that does not exist is an error, and nothing is created.
    """
    if url is not None and "://" in url and not url.startswith("journal:"):
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme in RDB_SCHEMES:  # before the suffix: sqlite:///dir/x.journal is a database
            return open_rdb(url, timeout, rdb_kwargs, create), None
    elif url is None or url.endswith((".journal", ".log")) or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//") if url else default_path)
        if not create and not path.is_file():
            raise BitsmithError(f"no study journal at {path}; give the --storage of a search that ran, or its "
                                "--project-dir / --project")
        return open_journal(path)
    raise BitsmithError(f"storage {hide_password(url)!r} is not a storage bitsmith can open; use a journal file path "
                        "(*.journal), sqlite:///FILE.db or postgresql://USER@HOST/DB")


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
