"""Damaged or malformed checkpoints are refused with one clear line, never loaded as wrong data."""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from bitsmith.checkpoint import load_checkpoint, save_checkpoint
from bitsmith.errors import BitsmithError
from tests.cli.test_cli import cli
from tests.test_storage import mounted

META = {"model": "jsc-tiny", "dataset": "jsc", "in_shape": [16], "n_classes": 5,
        "passes": [["quantize", {"width": 8}]], "settings": {"seed": 1}, "epoch": 3}


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(5, 16, generator=g), "fc.bias": torch.randn(5, generator=g)}


def _good(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "good.ckpt", _state(), META)


def _saved(tmp_path: Path, obj) -> Path:
    path = tmp_path / "x.ckpt"
    torch.save(obj, path)
    return path


def _written(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "x.ckpt"
    path.write_bytes(data)
    return path


def _flipped(tmp_path: Path) -> Path:
    """A real checkpoint with one byte flipped inside the payload of its first tensor record."""
    path = _good(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    # The local header's name and extra lengths (torch pads with extra bytes) say where the payload starts.
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    assert info.file_size > 8
    data[start + 5] ^= 0x10
    return _written(tmp_path, bytes(data))


def _with_meta(**fields):
    return lambda tmp_path: _saved(tmp_path, {"state_dict": {"model.w": torch.ones(2)},
                                              "bitsmith": {"format": 1, **fields}})


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def _no_crc(tmp_path: Path) -> Path:
    from torch.utils.serialization import config

    config.save.compute_crc32 = False
    try:
        return _saved(tmp_path, {"state_dict": {"model.w": torch.ones(2)}})
    finally:
        config.save.compute_crc32 = True


CASES = [
    ("flipped-tensor-byte", _flipped,
     r"^checkpoint \S+ is damaged \(CRC mismatch in '[^']*/data/0'\); restore it from a backup or re-run training$"),
    ("text-file", lambda p: _written(p, b"model = 'jsc-tiny'\n"),
     r"is not a checkpoint written by torch\.save \(zip format\)"),
    ("empty-file", lambda p: _written(p, b""), r"is empty \(0 bytes\)"),
    ("truncated", lambda p: _written(p, _good(p).read_bytes()[: _good(p).stat().st_size // 2]),
     r"is damaged \(truncated, or its zip directory is unreadable\)"),
    ("legacy-torch-format", lambda p: _written(p, _legacy_bytes()), r"torch's legacy \(non-zip\) format"),
    ("zip-not-torch", lambda p: _zip_without_pickle(p), r"zip archive but not a checkpoint written by torch\.save"),
    ("no-crc32s", _no_crc, r"has no CRC-32s"),
    ("value-list", lambda p: _saved(p, {"state_dict": {"model.w": [1, 2]}}),
     r"state_dict entry 'model\.w' is \[1, 2\] \(list\), expected a tensor"),
    ("value-str", lambda p: _saved(p, {"state_dict": {"model.w": "weights"}}),
     r"state_dict entry 'model\.w' is 'weights' \(str\), expected a tensor"),
    ("value-nested-dict", lambda p: _saved(p, {"state_dict": {"model.w": torch.ones(1), "fc": {"w": torch.ones(1)}}}),
     r"state_dict entry 'fc' is .* \(dict\), expected a tensor"),
    ("int-keys", lambda p: _saved(p, {"state_dict": {0: torch.ones(2)}}),
     r"state_dict key 0 \(int\) is not a parameter name \(string\)"),
    ("state-dict-list", lambda p: _saved(p, {"state_dict": [torch.ones(2)]}),
     r"'?state_dict'? is .* \(list\), expected a table of tensors"),
    ("passes-string", _with_meta(passes="quantize"),
     r"metadata field 'bitsmith\.passes' is 'quantize' \(str\), expected a list of \[name, table\] pairs"),
    ("passes-list-of-strings", _with_meta(passes=["quantize", "channel_multiply"]),
     r"metadata field 'bitsmith\.passes' item 0 is 'quantize' \(str\), expected a \[name, table\] pair"),
    ("passes-table-not-dict", _with_meta(passes=[["quantize", {"width": 8}], ["channel_multiply", 2]]),
     r"metadata field 'bitsmith\.passes' item 1 is \['channel_multiply', 2\] \(list\), expected a \[name, table\]"),
    ("passes-name-not-str", _with_meta(passes=[[3, {}]]), r"metadata field 'bitsmith\.passes' item 0"),
    ("model-int", _with_meta(model=5),
     r"^checkpoint \S+: metadata field 'bitsmith\.model' is 5 \(int\), expected a model name \(string\)"),
    ("model-none", _with_meta(model=None), r"metadata field 'bitsmith\.model' is None \(NoneType\)"),
    ("in-shape-bool", _with_meta(in_shape=[16, True]),
     r"metadata field 'bitsmith\.in_shape' item 1 is True \(bool\), expected a positive integer"),
    ("n-classes-zero", _with_meta(n_classes=0), r"metadata field 'bitsmith\.n_classes' is 0 \(int\)"),
    ("settings-list", _with_meta(settings=[1]), r"metadata field 'bitsmith\.settings' is \[1\] \(list\)"),
    ("format-str", _with_meta(format="1"), r"metadata field 'bitsmith\.format' is '1' \(str\)"),
    ("metadata-not-dict", lambda p: _saved(p, {"state_dict": {}, "bitsmith": ["jsc-tiny"]}),
     r"metadata 'bitsmith' is \['jsc-tiny'\] \(list\), expected a table \(dict\)"),
    ("metadata-int-key", lambda p: _saved(p, {"state_dict": {}, "bitsmith": {1: "x"}}),
     r"metadata 'bitsmith' has key 1 \(int\)"),
    ("top-level-list", lambda p: _saved(p, [torch.ones(2)]), r"holds \[.*\] \(list\), not a table with a 'state_dict'"),
    ("no-state-dict", lambda p: _saved(p, {"w": torch.ones(2)}), r"has no 'state_dict' table; .*--load-type pt"),
    ("python-object", lambda p: _saved(p, {"state_dict": {}, "bitsmith": {"x": zipfile.ZipInfo("a")}}),
     r"holds Python objects other than tensors and plain data"),
    ("directory", _directory, r"is a directory; pass a checkpoint file"),
    ("nonexistent", lambda p: p / "missing.ckpt", r"does not exist; check --load / load_name"),
    # Non-finite weights load fine and test as chance accuracy: refused, naming the tensors.
    ("nan-weights", lambda p: _saved(p, {"state_dict": {"model.w": torch.tensor([1.0, math.nan]),
                                                        "model.b": torch.ones(2)}}),
     (r"^checkpoint \S+ holds non-finite weights \(1 of 2 tensors: 'model\.w' \(NaN\)\); it was most likely saved "
      r"from a diverged run: train again with a lower --learning-rate / learning_rate, or load another checkpoint$")),
    ("inf-bfloat16", lambda p: _saved(p, {"state_dict": {"model.w": torch.tensor([-math.inf], dtype=torch.bfloat16)}}),
     r"\(1 of 1 tensors: 'model\.w' \(inf\)\)"),
    ("nan-and-inf", lambda p: _saved(p, {"state_dict": {"model.w": torch.tensor([math.inf, math.nan])}}),
     r"'model\.w' \(NaN and inf\)"),
    ("nan-float8", lambda p: _saved(p, {"state_dict": {"model.w": torch.full((2,), math.nan).to(torch.float8_e4m3fn)}}),
     r"'model\.w' \(NaN\)"),
    ("nan-complex", lambda p: _saved(p, {"state_dict": {"model.w": torch.tensor([complex(1, math.nan)])}}),
     r"'model\.w' \(NaN\)"),
    ("nan-in-five", lambda p: _saved(p, {"state_dict": {f"model.{c}": torch.tensor([math.nan]) for c in "abcde"}}),
     r"\(5 of 5 tensors: 'model\.a' \(NaN\), 'model\.b' \(NaN\), 'model\.c' \(NaN\) and 2 more\)"),
]


def _legacy_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": {"model.w": torch.ones(2)}}, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def _zip_without_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "x.ckpt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    return path


@pytest.mark.parametrize(("make", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_checkpoint_is_refused(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(BitsmithError) as err:
        load_checkpoint(path)  # never returns: no wrong weights or metadata reach the caller
    message = str(err.value)
    assert re.search(pattern, message), message
    assert "\n" not in message and str(path) in message


PT_CASES = [
    ("pt-int-keys", {0: torch.ones(2)}, r"state dict key 0 \(int\) is not a parameter name"),
    ("pt-list-value", {"w": [1.0]}, r"state dict entry 'w' is \[1\.0\] \(list\), expected a tensor"),
    ("pt-top-level-list", [torch.ones(2)], r"not a bare state dict; .*--load-type pl"),
    ("pt-given-pl-file", {"state_dict": {"model.w": torch.ones(2)}}, r"has a 'state_dict' table.*--load-type pl"),
    ("pt-nan", {"w": torch.ones(2), "b": torch.tensor([math.nan])}, r"holds non-finite weights \(1 of 2 tensors: 'b'"),
]


@pytest.mark.parametrize(("obj", "pattern"), [c[1:] for c in PT_CASES], ids=[c[0] for c in PT_CASES])
def test_malformed_bare_state_dict_is_refused(tmp_path, obj, pattern):
    path = _saved(tmp_path, obj)
    with pytest.raises(BitsmithError, match=pattern):
        load_checkpoint(path, "pt")


def test_directory_says_directory_and_names_a_checkpoint_inside(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "best.ckpt", _state(), META)
    with pytest.raises(BitsmithError) as err:
        load_checkpoint(run)
    assert "is a directory" in str(err.value) and "does not exist" not in str(err.value)
    assert "best.ckpt" in str(err.value)


def test_good_checkpoint_round_trips(tmp_path):
    state, meta = load_checkpoint(_good(tmp_path))
    ref = _state()
    assert state.keys() == ref.keys()
    for k in ref:
        assert torch.equal(state[k], ref[k]) and state[k].dtype == ref[k].dtype
    assert meta == {"format": 1, **META}  # known fields as written, extra fields ("epoch") kept
    assert isinstance(meta["passes"][0], list)


def test_foreign_checkpoint_without_metadata_loads_with_empty_meta(tmp_path):
    path = _saved(tmp_path, {"state_dict": {"model.w": torch.ones(2), "b": torch.zeros(1)}, "epoch": 1})
    state, meta = load_checkpoint(path)
    assert meta == {} and state.keys() == {"w", "b"}


def test_bare_state_dict_round_trips(tmp_path):
    path = _saved(tmp_path, _state())
    state, meta = load_checkpoint(path, "pt")
    assert meta == {} and all(torch.equal(state[k], v) for k, v in _state().items())


def test_unknown_load_type_is_refused(tmp_path):
    with pytest.raises(BitsmithError, match="unknown load type 'ckpt'"):
        load_checkpoint(_good(tmp_path), "ckpt")


def test_finite_weights_of_every_dtype_load(tmp_path):
    state = {"f16": torch.ones(2, dtype=torch.float16), "bf16": torch.ones(2, dtype=torch.bfloat16),
             "f8": torch.ones(2).to(torch.float8_e4m3fn), "c64": torch.ones(2, dtype=torch.complex64),
             "count": torch.tensor(7), "mask": torch.tensor([True, False]), "empty": torch.zeros(0)}
    loaded, _ = load_checkpoint(_saved(tmp_path, state), "pt")
    assert loaded.keys() == state.keys()


# --- writing: a failed write is one line and leaves the file already there as it was --------------------------

BIG = {"w": torch.ones(64, 1024)}  # 256 KiB: never fits the 16 KiB disk below
FIX = "choose another --project-dir / project_dir, then run the same command again"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fd_under(fd: int, d: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(d))
    except OSError:
        return False


def _fail_writes_under(monkeypatch, d: Path, err: int) -> None:
    """The fallback where mounting is not possible: writes to files under ``d`` fail with ``err``."""
    real = os.write

    def write(fd, data):
        if _fd_under(fd, d):
            raise OSError(err, os.strerror(err))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def _fail_creates_under(monkeypatch, d: Path, err: int) -> None:
    real = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(str(d)):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A real 16 KiB tmpfs where this runs as root and may mount; an injected ENOSPC elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], target=disk) as real:
        how = "a real full tmpfs" if real else "an injected ENOSPC (mount not possible here)"
        path = save_checkpoint(disk / "best.ckpt", _state(), META)  # a small one fits
        before = _sha(path)
        if not real:
            _fail_writes_under(monkeypatch, disk, errno.ENOSPC)
        with pytest.raises(BitsmithError) as err:
            save_checkpoint(path, BIG, META)
        assert str(err.value) == (f"cannot write checkpoint {path}: No space left on device; free some space or "
                                  f"{FIX}; the checkpoint already there is unchanged"), how
        assert err.value.__suppress_context__, how  # no torch "unexpected pos" chained in
        assert _sha(path) == before and os.listdir(disk) == ["best.ckpt"], how  # no temporary file left
        with pytest.raises(BitsmithError) as err:
            save_checkpoint(disk / "new.ckpt", BIG, META)
        assert str(err.value) == (f"cannot write checkpoint {disk / 'new.ckpt'}: No space left on device; free "
                                  f"some space or {FIX}"), how
        assert os.listdir(disk) == ["best.ckpt"], how
        assert load_checkpoint(path)[1]["epoch"] == 3, how


def _unprivileged_save(path: Path) -> tuple[int, str]:
    """save_checkpoint in a child without the capability that lets root ignore file permissions."""
    script = ("import sys, torch\nfrom bitsmith.checkpoint import save_checkpoint\nfrom bitsmith.errors import "
              "BitsmithError\ntry:\n    save_checkpoint(sys.argv[1], {'w': torch.ones(3)}, {})\nexcept BitsmithError "
              "as e:\n    print(e)\n    sys.exit(2)\n")
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    done = subprocess.run([*drop, sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          check=False)
    return done.returncode, done.stdout.strip() or done.stderr


@pytest.mark.parametrize("kind", ["permissions", "read-only-mount"])
def test_unwritable_directory_keeps_the_previous_checkpoint(tmp_path, monkeypatch, kind):
    d = tmp_path / "d"
    path = save_checkpoint(d / "best.ckpt", _state(), META)
    before = _sha(path)
    kept = "; the checkpoint already there is unchanged"
    if kind == "permissions":
        d.chmod(0o555)
        try:
            if os.geteuid() != 0 or shutil.which("setpriv"):
                how = "a real 0555 directory"
                code, message = _unprivileged_save(path)
                assert code == 2, message
            else:
                how = "an injected EACCES (root ignores file permissions)"
                _fail_creates_under(monkeypatch, d, errno.EACCES)
                with pytest.raises(BitsmithError) as err:
                    save_checkpoint(path, _state(), META)
                message = str(err.value)
        finally:
            d.chmod(0o755)
        assert message == (f"cannot write checkpoint {path}: Permission denied; make its directory writable or "
                           f"{FIX}{kept}"), how
    else:
        commands = [["mount", "--bind", str(d), str(d)], ["mount", "-o", "remount,ro,bind", str(d)]]
        with mounted(*commands, target=d) as real:
            how = "a read-only bind mount" if real else "an injected EROFS (mount not possible here)"
            if not real:
                _fail_creates_under(monkeypatch, d, errno.EROFS)
            with pytest.raises(BitsmithError) as err:
                save_checkpoint(path, _state(), META)
        assert str(err.value) == (f"cannot write checkpoint {path}: Read-only file system; make its file system "
                                  f"writable or {FIX}{kept}"), how
    assert _sha(path) == before and os.listdir(d) == ["best.ckpt"], how


def test_a_directory_at_the_path_fails_at_the_rename_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "best.ckpt").mkdir()
    with pytest.raises(BitsmithError) as err:
        save_checkpoint(tmp_path / "best.ckpt", _state(), META)
    assert re.fullmatch(r"cannot write checkpoint \S+best\.ckpt: Is a directory; remove that directory or "
                        + re.escape(FIX), str(err.value)), str(err.value)
    assert os.listdir(tmp_path) == ["best.ckpt"]


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = _good(tmp_path)
    before = _sha(path)
    real = os.write
    calls = []

    def write(fd, data):
        if _fd_under(fd, tmp_path):
            calls.append(len(data))
            if len(calls) == 3:  # Ctrl-C in the middle of the archive
                raise KeyboardInterrupt
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(KeyboardInterrupt):  # not torch's "unexpected pos" RuntimeError
        save_checkpoint(path, BIG, META)
    assert len(calls) == 3 and _sha(path) == before and os.listdir(tmp_path) == ["good.ckpt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_a_new_checkpoint_gets_the_mode_a_plain_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = _good(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_train_on_a_full_disk_ends_in_one_line(tmp_path, capsys, monkeypatch):
    """`bitsmith train` end to end onto a 16 KiB tmpfs (a digits-mlp checkpoint is about 29 KiB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], target=disk) as real:
        how = "a real full tmpfs" if real else "an injected ENOSPC (mount not possible here)"
        if not real:
            _fail_writes_under(monkeypatch, disk, errno.ENOSPC)
        code, _, err = cli(capsys, "train", "digits-mlp", "digits", "--max-epochs", "1", "--project-dir", str(disk))
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and "Traceback" not in err and len(lines) == 1, (how, err)
        assert re.fullmatch(rf"bitsmith: error: cannot write checkpoint {re.escape(str(disk))}/\S+\.ckpt: No space "
                            rf"left on device; free some space or {re.escape(FIX)}", lines[0]), (how, lines[0])
        assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp") or p.suffix == ".ckpt"], how
