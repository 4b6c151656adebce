"""Who runs a trial: this process's identity (host, pid, start time), and whether a recorded one still runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

WORKER_ATTR = "bitsmith:worker"  # trial system attr: which process runs it (host, pid, process start)


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: clock ticks since boot), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


WORKER = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def alive(owner: dict[str, Any]) -> bool | None:
    """Whether the process that ran a trial still runs; None when it ran on another machine."""
    if owner.get("host") != WORKER["host"]:
        return None
    pid = owner.get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, OverflowError):
        return True
    return owner.get("start") is None or _start_time(pid) == owner.get("start")
