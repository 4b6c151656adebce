"""Database storages (SQLite, PostgreSQL, MySQL through SQLAlchemy): opened with time-outs, passwords hidden."""

from __future__ import annotations

import contextlib
import math
import re
import time
from pathlib import Path
from typing import Any

from bitsmith.errors import BitsmithError
from bitsmith.search._optuna import HookedRDBStorage
from bitsmith.search.storage.limit import TrialLimit, advisory_lock, file_lock

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def hide_password(url: str | None) -> str | None:
    """``url`` with its password shown as ``***`` (postgresql://user:***@host/db), for messages."""
    if not url:
        return url
    m = re.match(r"^([A-Za-z][\w+.-]*://)([^/?#]*)(.*)$", url, re.S)
    if m:
        scheme, netloc, rest = m.groups()
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        url = scheme + netloc + rest
    return re.sub(r"([?&](?:password|pass|pwd)=)[^&#]*", r"\1***", url, flags=re.I)


class RDB(TrialLimit, HookedRDBStorage):
    """Optuna's database storage, keeping a study's total across processes (``TrialLimit``)."""

    def study_lock(self, study_id: int):
        url = sqlalchemy_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return file_lock(Path(f"{url.database}.trials-lock"))
        if url.get_backend_name() == "postgresql":
            return advisory_lock(self.engine, f"{url.render_as_string(hide_password=True)}:{study_id}")
        return contextlib.nullcontext()  # other databases: MaxTrialsCallback alone

    def creating(self, template_trial):
        return self.room(starting=template_trial is None, new=True)

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        from optuna.trial import TrialState

        with self.room(starting=state == TrialState.RUNNING):
            return super().set_trial_state_values(trial_id, state, values)


def sqlalchemy_url(url: str):
    import sqlalchemy.engine

    return sqlalchemy.engine.make_url(url)


def open_rdb(url: str, timeout: float, rdb_kwargs: dict[str, Any], create: bool = True):
    shown = hide_password(url)
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "postgres":  # SQLAlchemy dropped this alias; hosting services still hand it out
        url = "postgresql" + url[len("postgres"):]
        scheme = "postgresql"
    if scheme == "sqlite":
        _check_sqlite_file(url, shown, create)
        connect = {"timeout": timeout}  # seconds to wait for another process's write lock
    elif scheme == "postgresql":
        connect = {"connect_timeout": max(2, math.ceil(timeout))}  # libpq: whole seconds, at least 2
    else:
        connect = {"connect_timeout": max(1, math.ceil(timeout))}
    engine_kwargs = dict(rdb_kwargs.pop("engine_kwargs", None) or {})
    engine_kwargs["connect_args"] = {**connect, **engine_kwargs.get("connect_args", {})}
    deadline = time.monotonic() + timeout
    for attempt in range(3):
        started = time.monotonic()
        try:
            return RDB(url, engine_kwargs=engine_kwargs, **rdb_kwargs)
        except ImportError as e:
            raise BitsmithError(f"storage {shown} needs a database driver that is not installed ({e}); for "
                                "PostgreSQL: pip install 'bitsmith[postgres]'") from None
        except Exception as e:  # sqlalchemy raises many types for unreachable or foreign databases
            text = _first_line(e, url)
            if _timed_out(text, time.monotonic() - started, timeout):
                if scheme == "sqlite":
                    raise BitsmithError(f"storage {shown}: the database stayed locked for {timeout:g} s; check for a "
                                        "stuck process using it, or raise --storage-timeout") from None
                raise BitsmithError(f"storage {shown}: no answer within {timeout:g} s; check the server, or raise "
                                    "--storage-timeout") from None
            # Workers starting together on an empty database race to create Optuna's tables; the loser retries.
            delay = 0.3 * (attempt + 1)
            if not _creation_race(e, text) or attempt == 2 or time.monotonic() + delay > deadline:
                import sqlalchemy.exc

                hint = "; check the URL and that the server runs" \
                    if isinstance(e, sqlalchemy.exc.OperationalError) and scheme != "sqlite" else ""
                raise BitsmithError(f"cannot open storage {shown}: {text}{hint}") from None
            time.sleep(delay)


def _first_line(error: Exception, url: str) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    text = (text.splitlines() or [type(error).__name__])[0][:200]
    m = re.match(r"^[^:/]+://[^:@/]*:([^@/]+)@", url)
    return text.replace(m.group(1), "***") if m else text


def _timed_out(text: str, elapsed: float, timeout: float) -> bool:
    text = text.lower()
    return "timeout expired" in text or "timed out" in text or "database is locked" in text \
        or elapsed >= 0.9 * timeout


def _creation_race(error: Exception, text: str) -> bool:
    import sqlalchemy.exc

    text = text.lower()
    return isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in text or "duplicate key" in text


def _check_sqlite_file(url: str, shown: str, create: bool) -> None:
    import sqlalchemy.engine

    try:
        database = sqlalchemy.engine.make_url(url).database
    except Exception:  # sqlalchemy's own error comes when it connects
        return
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if not create and not Path(database).expanduser().is_file():
        raise BitsmithError(f"storage {shown}: the database file {database} does not exist; give the --storage "
                            "of a search that ran")
    folder = Path(database).expanduser().parent
    if not folder.is_dir():
        raise BitsmithError(f"storage {shown}: the directory {folder} does not exist; create it "
                            f"(mkdir -p {folder}) or give another path")
