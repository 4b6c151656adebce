"""Damaged or malformed checkpoints are refused with one clear line, never loaded as wrong data."""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from bitsmith.checkpoint import load_checkpoint, save_checkpoint
from bitsmith.errors import BitsmithError

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
