"""Result files are written whole or not at all, and a failure is one line naming the file and the fix."""

import errno
import os

import pytest

from bitsmith.errors import BitsmithError
from bitsmith.files import write_atomic
from tests.test_storage import mounted


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], target=disk) as real:
        path = disk / "summary.json"
        write_atomic(path, "old\n")
        if not real:  # not root, or no mount here: the same error, injected
            def no_space(*a, **k):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr("bitsmith.files.os.fsync", no_space)
        with pytest.raises(BitsmithError) as e:
            write_atomic(path, "x" * 200_000, "summary")
        assert str(e.value) == (f"cannot write summary {path}: {os.strerror(errno.ENOSPC)}; free some space or "
                                "choose another --project-dir / project_dir, then run the same command again; the "
                                "summary already there is unchanged")
        assert path.read_text() == "old\n" and [p.name for p in disk.iterdir()] == ["summary.json"]


def test_a_stop_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    write_atomic(path, b"a,b\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("bitsmith.files.os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"c,d\n")
    assert path.read_bytes() == b"a,b\n" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]
