"""Journal files kept loadable, also by stock Optuna: opened, checked, and repaired after a crash.

* a journal whose last record was torn by a crash, power cut or full disk is
  repaired when it is opened (a copy of the original is kept beside it);
* a file that is not a journal, or is damaged before its end, is refused and
  left as it is;
* a lock left by a killed process is removed when the journal is opened, and
  waited for at most ``LOCK_GRACE_S`` seconds while it runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
import warnings
from datetime import datetime
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from bitsmith.errors import BitsmithError
from bitsmith.search.storage.journal import Journal, TrialSyncedJournal

TAIL_BYTES = 64 * 1024  # the end of a journal read at open to find a torn record
LOCK_GRACE_S = 2  # a record takes milliseconds to write; a lock this old was left by a killed process


def open_journal(path: Path):
    _check_journal(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BitsmithError(f"cannot open the journal file {path}: {e.strerror or e}") from None
    _remove_stale_lock(path)
    torn = _torn_end(path)
    with warnings.catch_warnings():  # Optuna warns that a grace period under 3 s "might be too small"
        warnings.simplefilter("ignore")
        lock = JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)
    try:
        backend = TrialSyncedJournal(str(path), lock_obj=lock)
        storage = Journal(backend)  # reads every record: a damaged one raises here
    except OSError as e:
        raise BitsmithError(f"cannot open the journal file {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise _damaged(path, e) from None
    if torn is not None:  # repaired only now, so that a file damaged elsewhere too is left as it is
        _repair(backend, path, *torn)
    return storage, backend


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # also UnicodeDecodeError
        return False
    return isinstance(record, dict) and "op_code" in record


def _check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal before anything is appended to it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        first = f.readline(1 << 20)
    head = b'{"op_code"'
    if _is_record(first) or (not first.endswith(b"\n") and (first.startswith(head) or head.startswith(first))):
        return  # a record, or a first record torn while it was written (repaired later)
    raise BitsmithError(f"{path} is not an Optuna journal file; give another --storage path "
                        "(the file is left as it is)")


def _torn_end(path: Path) -> tuple[int, int, bytes] | None:
    """``(size, keep, tail)`` when the journal's last record is incomplete, else None: the repaired file is
    its first ``keep`` bytes followed by ``tail``.

    Reads only the end of the file. ``keep`` is where the last line starts; ``tail``
    is what of that line is a complete record: the newline of a record that lacks
    only that, or a record another process appended after a torn one.
    """
    if not path.is_file():
        return None
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        window = TAIL_BYTES
        while True:  # widen the window until it holds the whole last line
            start = max(0, size - window)
            f.seek(start)
            data = f.read(size - start)
            nl = data.rfind(b"\n", 0, len(data) - 1)
            if nl >= 0 or start == 0:
                break
            window *= 8
    last, keep = data[nl + 1:], start + nl + 1
    if _is_record(last):
        return None if last.endswith(b"\n") else (size, size, b"\n")
    if last.endswith(b"\n"):  # a complete write after a torn one: keep it, from where it starts
        at = last.rfind(b'{"op_code":')
        while at > 0:
            if _is_record(last[at:]) and b'"worker_id":' in last[at:]:
                return size, keep, last[at:]
            at = last.rfind(b'{"op_code":', 0, at)
    return size, keep, b""


def _repair(backend: TrialSyncedJournal, path: Path, size: int, keep: int, tail: bytes) -> None:
    """Cut the torn last record off (or end a complete one with its newline), keeping a copy of the original."""
    if tail == b"\n":
        what = "a complete last record without its newline"
    elif tail:
        what = "an incomplete record followed by a complete one"
    else:
        what = "an incomplete last record"
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        backend.read_only_torn = True  # readable as it is; a write after it would bury the torn record
        _warn(f"{path} ends in {what} (a crash or full disk while writing) and is read-only, so it is read as "
              "it is and not repaired")
        return
    # The copy is made before taking the lock: a long copy would outlast the lock's grace period.
    copy_path = _keep_copy(path, size, what)
    backend.lock.acquire()
    try:
        if path.stat().st_size != size:
            raise BitsmithError(f"{path} changed while bitsmith was repairing its torn end (another process is "
                                "writing to it); stop the other processes and run the command again")
        with path.open("r+b") as f:
            f.truncate(keep)
            f.seek(keep)
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise BitsmithError(f"cannot repair the torn end of {path}: {e.strerror or e}; the original is kept as "
                            f"{copy_path}") from None
    finally:
        backend.lock.release()
    if tail == b"\n":
        _warn(f"{path} ended in {what}; added the newline, every record is kept; the original is kept as "
              f"{copy_path}")
    else:
        cut = f"the {size - keep - len(tail)} bytes of the incomplete one" if tail else f"its last {size - keep} bytes"
        _warn(f"{path} ended in {what} (a crash, power cut or full disk while writing): cut off {cut}, every "
              f"complete record is kept; the original is kept as {copy_path}")


def _keep_copy(path: Path, size: int, what: str) -> Path:
    """A copy of the first ``size`` bytes of ``path`` beside it, under a name not taken before."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    for n in range(1, 1000):
        target = path.with_name(f"{path.name}.torn-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            out = target.open("xb")  # never overwrites an earlier copy
        except FileExistsError:
            continue
        except OSError as e:
            raise _no_copy(path, what, e) from None
        try:
            with out, path.open("rb") as src:
                left = size
                while left:
                    chunk = src.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as e:
            target.unlink(missing_ok=True)
            raise _no_copy(path, what, e) from None
        return target
    raise BitsmithError(f"{path} ends in {what}, and there are too many earlier copies beside it; remove some "
                        f"{path.name}.torn-* files")


def _no_copy(path: Path, what: str, e: OSError) -> BitsmithError:
    return BitsmithError(f"{path} ends in {what}, which bitsmith cuts off after keeping a copy of the file, and the "
                         f"copy failed: {e.strerror or e}; free some space and run the command again (the file is "
                         "left as it is)")


def _damaged(path: Path, error: Exception) -> BitsmithError:
    """The error for a journal that Optuna cannot read, naming the first damaged line (a full read: errors only)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                break  # the end: torn, repaired after the read
            if not _is_record(line) and f.peek(1):
                return BitsmithError(f"{path} line {number} is not a valid journal record, and it is not the last "
                                     "line, so bitsmith does not repair it; restore the file from a backup or give "
                                     "another --storage path (the file is left as it is)")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return BitsmithError(f"cannot read the journal file {path}: {first} (the file is left as it is)")


def _remove_stale_lock(path: Path) -> None:
    """Remove a lock older than ``LOCK_GRACE_S`` (its process was killed while writing), with a warning."""
    lock = path.with_name(path.name + ".lock")
    try:
        st = os.lstat(lock)  # lstat: the lock is a symlink to the journal, whose own mtime tells nothing
    except OSError:
        return
    if time.time() - st.st_mtime <= LOCK_GRACE_S:
        return  # held now: Optuna waits for it
    aside = lock.with_name(f"{lock.name}{uuid.uuid4()}.rename")  # renamed first, as Optuna releases it
    try:
        os.rename(lock, aside)
    except OSError:
        return  # another process removed it first
    try:
        if os.lstat(aside).st_ino != st.st_ino:  # a new lock was taken between lstat and rename: give it back
            try:
                os.link(aside, lock, follow_symlinks=False)
            except OSError:
                pass
            return
    finally:
        os.unlink(aside)
    age = time.time() - st.st_mtime
    _warn(f"removed the stale lock {lock} ({age:.0f} s old), left by a process killed while writing to the journal")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
