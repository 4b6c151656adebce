"""Writing result files: whole or not at all, and a failure said in one line.

Every table, summary and record bitsmith writes goes through ``write_atomic``: a
temporary file beside the target, synced, then renamed over it, so a full disk,
a kill or Ctrl-C leaves the previous file (or none) and never a torn one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bitsmith.errors import BitsmithError

# The fix for a failed write, by errno; anything else gets WRITE_FIX.
WRITE_FIXES = {
    errno.ENOSPC: "free some space or choose another --project-dir / project_dir",
    errno.EDQUOT: "free some space or choose another --project-dir / project_dir",
    errno.EROFS: "make its file system writable or choose another --project-dir / project_dir",
    errno.EACCES: "make its directory writable or choose another --project-dir / project_dir",
    errno.EPERM: "make its directory writable or choose another --project-dir / project_dir",
    errno.EISDIR: "remove that directory or choose another --project-dir / project_dir",
    errno.ENOTDIR: "a part of its path is a file, not a directory; choose another --project-dir / project_dir",
    errno.EEXIST: "a part of its path is a file, not a directory; choose another --project-dir / project_dir",
}
WRITE_FIX = "check the directory, its permissions and free space, or choose another --project-dir / project_dir"


def write_error(path: Path, e: OSError, what: str = "file", existed: bool = False) -> BitsmithError:
    """One line: which file, why, and what to do."""
    fix = WRITE_FIXES.get(e.errno, WRITE_FIX)
    kept = f"; the {what} already there is unchanged" if existed else ""
    return BitsmithError(f"cannot write {what} {path}: {e.strerror or e}; {fix}, then run the same command "
                         f"again{kept}")


def write_atomic(path: str | Path, data: str | bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; a BitsmithError when that fails."""
    path = Path(path)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e, what, existed) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
