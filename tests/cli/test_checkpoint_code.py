"""A checkpoint never runs code: the model it names is looked up among registered models, never imported.

Each case runs ``python -m bitsmith test --load CKPT`` in its own process, with the
checkpoint's folder as the working directory and on PYTHONPATH, beside a planted
``evilmod.py`` that leaves a marker file when imported. The processes start together
(each spends most of its time importing torch). A control shows that evilmod *is*
importable under those conditions, so its marker's absence means something; and the
positive counterpart, a model the user names by import path, is built.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

B = [sys.executable, "-m", "bitsmith"]
ZEN = "Beautiful is better than ugly"
EVILMOD = '''\
import pathlib

pathlib.Path(__file__).with_name("MARKER").write_text("evilmod was imported")
print("EVILMOD IMPORTED")


def build(in_shape, n_classes):
    print("EVILMOD BUILD CALLED")
    from bitsmith.models.digits import digits_mlp

    return digits_mlp(in_shape, n_classes)
'''
REFUSED = {"print": "builtins:print", "this": "this:x", "evilmod": "evilmod:build"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, float]:
    """`bitsmith train digits-mlp digits --max-epochs 1`: its best checkpoint and test accuracy."""
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("train")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_:
        main(["train", "digits-mlp", "digits", "--max-epochs", "1", "--project-dir", str(out)])
    assert exit_.value.code == 0, buf.getvalue()
    best = out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    return best, float(buf.getvalue().split("test accuracy ")[1].split()[0])


def _with_model(src: Path, dest: Path, model: str) -> Path:
    blob = torch.load(src, map_location="cpu", weights_only=True)
    assert blob["bitsmith"]["model"] == "digits-mlp"
    blob["bitsmith"]["model"] = model
    torch.save(blob, dest)
    return dest


def _flipped(src: Path, dest: Path) -> Path:
    """A copy with one byte flipped inside the payload of its first tensor record (CRC-32 now wrong)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    assert info.file_size > 8
    data[start + 5] ^= 0x10
    dest.write_bytes(bytes(data))
    return dest


def _env(d: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(d), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """Every case's (exit status, stdout, stderr, folder); the processes run side by side."""
    best, _ = trained
    cases: dict[str, tuple[Path, list[str]]] = {}
    for case in REFUSED:
        d = tmp_path_factory.mktemp(case)
        (d / "evilmod.py").write_text(EVILMOD)
        ckpt = _with_model(best, d / "model.ckpt", REFUSED[case])
        cases[case] = (d, ["test", "--load", str(ckpt)])
    procs = {}
    for case, (d, argv) in cases.items():
        procs[case] = subprocess.Popen(B + argv, cwd=d, env=_env(d), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    results = {}
    try:
        for case, p in procs.items():
            out, err = p.communicate(timeout=180)
            results[case] = (p.returncode, out, err, cases[case][0])
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


@pytest.mark.parametrize("case", list(REFUSED))
def test_checkpoint_naming_an_unregistered_model_is_refused_without_running_it(runs, case):
    code, out, err, d = runs[case]
    name = REFUSED[case]
    assert code == 2, (out, err)
    assert f"names model {name!r}, which is not a registered model" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    for stream in (out, err):
        assert ZEN not in stream  # `import this` prints the Zen of Python
        assert "(64,) 10" not in stream  # print(in_shape, n_classes), had builtins:print been called
        assert "EVILMOD" not in stream
    assert not (d / "MARKER").exists()  # evilmod was never imported
    # The control: in that folder, with that PYTHONPATH, importing evilmod leaves the marker.
    control = subprocess.run([sys.executable, "-c", "import evilmod"], cwd=d, env=_env(d), capture_output=True,
                             text=True, timeout=60)
    assert control.returncode == 0 and (d / "MARKER").is_file(), control.stderr


def test_damaged_checkpoint_is_refused(trained, tmp_path, capsys):
    from bitsmith.cli import main

    ckpt = _flipped(trained[0], tmp_path / "model.ckpt")
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--load", str(ckpt)])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, (out, err)
    assert f"checkpoint {ckpt} is damaged (CRC mismatch in " in err and "Traceback" not in err
    assert "test accuracy" not in out


def test_a_model_the_user_names_by_import_path_is_built(trained, tmp_path, monkeypatch, capsys):
    from bitsmith.cli import main

    best, accuracy = trained
    d = tmp_path
    (d / "evilmod.py").write_text(EVILMOD)
    ckpt = _with_model(best, d / "model.ckpt", "evilmod:build")  # the file the "evilmod" case refuses
    monkeypatch.chdir(d)
    monkeypatch.syspath_prepend(str(d))
    assert "evilmod" not in sys.modules
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["test", "evilmod:build", "digits", "--load", str(ckpt)])
    finally:
        sys.modules.pop("evilmod", None)
    code = exit_.value.code
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "EVILMOD IMPORTED" in out and "EVILMOD BUILD CALLED" in out
    assert (d / "MARKER").read_text() == "evilmod was imported"
    assert "model=evilmod:build dataset=digits" in out
    # The same weights in the same architecture: the accuracy training reported.
    assert float(out.split("test accuracy ")[1].split()[0]) == accuracy
