"""Run folders: every ``train``, ``transform`` and ``compare`` writes under a folder of its own, never over
another run's files.

Layout, as Lightning users know it (``version_N``)::

    <project_dir>/<project>/<kind>/version_0/   one run: its files and run.json
    <project_dir>/<project>/<kind>/version_1/
    <project_dir>/<project>/<kind>/latest       -> the run the last command made or reused

``run.json`` records what the run was made from (``inputs``: settings, data and
checkpoint digests) and whether it finished. A command whose inputs equal those
of a finished run reuses it instead of doing the work again; ``overwrite``
makes it run again, into that same folder. A run stopped half way (Ctrl-C, kill)
is never reused and never deleted: the next one takes the next number.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitsmith.errors import BitsmithError
from bitsmith.files import write_atomic

RUN_FILE = "run.json"
LATEST = "latest"
_VERSION = re.compile(r"^version_(\d+)$")


@dataclass
class Run:
    """One run folder; ``reused`` when a finished run with the same inputs was found."""

    dir: Path
    inputs: dict[str, Any]
    reused: bool = False
    summary: dict[str, Any] = field(default_factory=dict)  # a reused run's, as it finished
    made: tuple[Path, ...] = ()  # folders this run created, the run's own last: removed again if it fails empty

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, error, tb) -> None:
        """A run that fails (or is stopped) before writing anything but its record leaves nothing behind."""
        if kind is None or self.reused or not self.made:
            return
        try:
            if [p.name for p in self.dir.iterdir()] == [RUN_FILE]:
                (self.dir / RUN_FILE).unlink()
            for folder in reversed(self.made):
                folder.rmdir()  # only when empty: anything written is kept
        except OSError:
            pass

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Mark the run finished (its inputs and summary) and point ``latest`` at it."""
        _write_json(self.dir / RUN_FILE, {"status": "finished", "inputs": self.inputs, "summary": summary or {}})
        point_latest(self.dir)

    def reuse(self) -> dict[str, Any]:
        """Point ``latest`` at this finished run; its summary."""
        point_latest(self.dir)
        return self.summary


def versions(parent: Path) -> list[Path]:
    """The run folders under ``parent``, oldest first."""
    if not parent.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in parent.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def finished(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's record, or None (running, stopped half way, or not a run)."""
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "finished" else None


def start(parent: Path, inputs: dict[str, Any], overwrite: bool = False) -> Run:
    """The run for ``inputs`` under ``parent``: a finished one with the same inputs (reused, or, with
    ``overwrite``, to be written again), else a new ``version_N``."""
    inputs = json.loads(json.dumps(inputs, default=str))  # as run.json gives it back
    for run_dir in reversed(versions(parent)):
        record = finished(run_dir)
        if record is not None and record.get("inputs") == inputs:
            if overwrite:
                _write_json(run_dir / RUN_FILE, {"status": "running", "inputs": inputs})
                return Run(run_dir, inputs)
            return Run(run_dir, inputs, reused=True, summary=record.get("summary") or {})
    made = [p for p in (parent, *parent.parents) if not p.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BitsmithError(f"cannot create {parent}: {e.strerror or e}; choose another --project-dir") from None
    n = max((int(_VERSION.match(p.name).group(1)) + 1 for p in versions(parent)), default=0)
    while True:  # another process may take a number at the same moment: mkdir is the claim
        run_dir = parent / f"version_{n}"
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            n += 1
        except OSError as e:
            raise BitsmithError(f"cannot create {run_dir}: {e.strerror or e}; choose another --project-dir") from None
    _write_json(run_dir / RUN_FILE, {"status": "running", "inputs": inputs})
    return Run(run_dir, inputs, made=(*made, run_dir))


def point_latest(run_dir: Path, link: Path | None = None) -> None:
    """Point ``link`` (default: ``latest`` beside the run) at ``run_dir``, replacing the link atomically.

    Only a symbolic link is ever replaced: a file or folder of that name is left as it is.
    """
    link = link or run_dir.parent / LATEST
    if link.exists() and not link.is_symlink():
        return
    target = os.path.relpath(run_dir, link.parent)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # no symbolic links here (some file systems): the run folders are still complete
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=1, default=str), "run record")
