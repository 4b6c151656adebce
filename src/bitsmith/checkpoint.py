"""Checkpoints: Lightning-style ``{"state_dict": {"model.<param>": tensor}}`` plus our metadata.

Always loaded with ``weights_only=True``: a checkpoint is data and never runs code.
Before loading, every zip record's CRC-32 is checked (torch's reader does not), so a
damaged file is refused instead of yielding wrong weights. What was loaded is then
validated: finite tensors under string keys, and the known fields of the ``bitsmith`` table.
Names in the metadata (``model``, ``dataset``, pass names) are only strings here; the
caller resolves them among the registered names and never imports what a file names.
Writes are atomic (a synced temporary file renamed over the target), so a failed or interrupted
save never corrupts an existing file; a failed write is one BitsmithError naming the cause.
"""

from __future__ import annotations

import os
import pickle
import secrets
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Annotated, Any

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PositiveInt, ValidationError
from torch import nn

from bitsmith.errors import BitsmithError
from bitsmith.files import write_error

FORMAT = 1
PREFIX = "model."
RERUN = "restore it from a backup or re-run training"
USE_OURS = "use a checkpoint written by `bitsmith train`"
# torch.save's legacy (pre-1.6) format: a pickled magic number, no zip, no CRC-32s.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# Errors zipfile raises on malformed archives besides BadZipFile (bad offsets, sizes, methods).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError,
              EOFError, OSError, OverflowError, struct.error, zlib.error)


class _Sink:
    """A raw file for torch.save that keeps what stopped a write (an OSError, a Ctrl-C): torch
    replaces it with an "unexpected pos" RuntimeError when it closes the archive."""

    def __init__(self, fd: int):
        self.fd, self.error = fd, None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except BaseException as e:
            self.error = e
            raise
        return done

    def flush(self) -> None:
        pass


def _write_error(path: Path, e: OSError, existed: bool) -> BitsmithError:
    return write_error(path, e, "checkpoint", existed)


def save_checkpoint(path: str | Path, model: nn.Module | dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write a model (or its state dict) with ``meta``; replaces ``path`` atomically.

    The bytes go to a temporary file in the same directory, are synced, then renamed over ``path``:
    a failed or interrupted write leaves the previous file intact and no temporary file behind.
    """
    path = Path(path)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {PREFIX + k: v.detach().cpu() for k, v in state.items()}
    blob = {"state_dict": state, "bitsmith": {"format": FORMAT, **meta}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd, existed = None, False
    try:
        existed = path.is_file()  # inside: a directory that cannot be searched raises here
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask, as a plain open() would give: the rename keeps this mode.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        sink = _Sink(fd)
        try:
            torch.save(blob, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            raise sink.error from None
        os.fsync(fd)
        fd, closing = None, fd
        os.close(closing)
        os.replace(tmp, path)
    except BaseException as e:
        _discard(fd, tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e, existed) from None
        raise
    _sync_dir(path.parent)
    return path


def _discard(fd: int | None, tmp: Path) -> None:
    """Close and remove a temporary file after a failed write; the first error is the one to report."""
    try:
        if fd is not None:
            os.close(fd)
    except OSError:
        pass
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _sync_dir(d: Path) -> None:
    """Make the rename durable; best effort: the file is already in place, and some file systems
    cannot sync a directory."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pair(v: Any) -> Any:
    # A [name, table] pair is written as a list; strict tuple validation then checks its items.
    return tuple(v) if isinstance(v, list) and len(v) == 2 else v


PassPair = Annotated[tuple[str, dict[str, Any]], BeforeValidator(_pair), PlainSerializer(list)]


class Meta(BaseModel):
    """The known fields of a checkpoint's ``bitsmith`` table; newer fields pass through."""

    # Field(default=None): a field may be absent, but None is not a valid value (defaults are
    # not validated), and model_dump(exclude_unset=True) leaves absent fields out.
    model_config = ConfigDict(strict=True, extra="allow")
    format: int = Field(default=None)
    model: str = Field(default=None)
    dataset: str = Field(default=None)
    in_shape: list[PositiveInt] = Field(default=None, min_length=1)
    n_classes: PositiveInt = Field(default=None)
    passes: list[PassPair] = Field(default=None)
    settings: dict[str, Any] = Field(default=None)


EXPECTED = {
    "format": "a format number (integer)",
    "model": "a model name (string)",
    "dataset": "a data set name (string)",
    "in_shape": "a non-empty list of positive integers",
    "n_classes": "a positive integer",
    "passes": "a list of [name, table] pairs",
    "settings": "a table (dict) with string keys",
}
EXPECTED_ITEM = {
    "in_shape": "a positive integer",
    "passes": "a [name, table] pair (name a string, table a dict)",
}


def _show(value: Any) -> str:
    """``value (type)``, its repr cut short: files can hold anything."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _meta_error(path: Path, raw: dict[str, Any], err: ValidationError) -> BitsmithError:
    loc = err.errors()[0]["loc"]
    field = str(loc[0])
    value = raw.get(field)
    if len(loc) > 1 and field in EXPECTED_ITEM and isinstance(value, list) and isinstance(loc[1], int):
        what = f"item {loc[1]} is {_show(value[loc[1]])}, expected {EXPECTED_ITEM[field]}"
    else:
        what = f"is {_show(value)}, expected {EXPECTED.get(field, 'another value')}"
    return BitsmithError(f"checkpoint {path}: metadata field 'bitsmith.{field}' {what}; {RERUN}")


def _check_zip(path: Path, f: IO[bytes]) -> None:
    """Refuse anything but an intact torch.save zip archive; every record's CRC-32 is checked."""
    head = f.read(len(LEGACY_MAGIC))
    f.seek(0)
    if not head:
        raise BitsmithError(f"checkpoint {path} is empty (0 bytes); {RERUN}")
    try:
        with zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            if not any(i.filename.endswith("data.pkl") for i in infos):
                raise BitsmithError(f"checkpoint {path} is a zip archive but not a checkpoint written by "
                                    f"torch.save (no data.pkl record); {USE_OURS}")
            if all(i.CRC == 0 for i in infos) and any(i.file_size for i in infos):
                raise BitsmithError(f"checkpoint {path} has no CRC-32s (saved with torch's compute_crc32 off), "
                                    "so damage cannot be detected; re-save it with compute_crc32 on (the default)")
            for info in infos:
                try:
                    with zf.open(info) as member:
                        while member.read(1 << 20):  # reading to the end checks the CRC-32
                            pass
                except ZIP_ERRORS as e:
                    why = "CRC mismatch" if "CRC" in str(e) else "unreadable record"
                    raise BitsmithError(f"checkpoint {path} is damaged ({why} in {info.filename!r}); "
                                        f"{RERUN}") from None
    except BitsmithError:
        raise
    except ZIP_ERRORS:
        if head.startswith(b"PK\x03\x04"):  # a zip start without a readable directory: cut short
            raise BitsmithError(f"checkpoint {path} is damaged (truncated, or its zip directory is "
                                f"unreadable); {RERUN}") from None
        if head == LEGACY_MAGIC:
            raise BitsmithError(f"checkpoint {path} is in torch's legacy (non-zip) format, which bitsmith "
                                "cannot verify; re-save it with torch.save (zip format, the default)") from None
        raise BitsmithError(f"checkpoint {path} is not a checkpoint written by torch.save (zip format); "
                            f"{USE_OURS}") from None


def _read(path: Path) -> Any:
    """The object in ``path``, loaded as data from a verified archive."""
    if path.is_dir():
        found = sorted(path.glob("*.ckpt")) + sorted(path.glob("checkpoints/*.ckpt"))
        hint = f"e.g. {found[0]}" if found else "the .ckpt file, not its folder"
        raise BitsmithError(f"checkpoint {path} is a directory; pass a checkpoint file ({hint})")
    if not path.exists():
        raise BitsmithError(f"checkpoint {str(path)!r} does not exist; check --load / load_name")
    if not path.is_file():
        raise BitsmithError(f"checkpoint {path} is not a regular file; pass a .ckpt file")
    try:
        # One open file for the check and the load: a concurrent os.replace cannot swap in unchecked bytes.
        with path.open("rb") as f:
            _check_zip(path, f)
            f.seek(0)
            try:
                return torch.load(f, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                raise BitsmithError(f"checkpoint {path} holds Python objects other than tensors and plain data, "
                                    f"which bitsmith never loads; {USE_OURS}") from None
            except (RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise BitsmithError(f"cannot read checkpoint {path}: damaged, or not written by torch.save "
                                    f"({type(e).__name__}); {USE_OURS}") from None
    except OSError as e:
        raise BitsmithError(f"cannot read checkpoint {path}: {e.strerror or e}; check the path and its "
                            "permissions") from None


def _check_state(path: Path, state: Any, where: str, fix: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise BitsmithError(f"checkpoint {path}: {where} is {_show(state)}, expected a table of tensors; {fix}")
    for k, v in state.items():
        if not isinstance(k, str):
            raise BitsmithError(f"checkpoint {path}: {where} key {_show(k)} is not a parameter name (string); {fix}")
        if not isinstance(v, torch.Tensor):
            raise BitsmithError(f"checkpoint {path}: {where} entry {k!r} is {_show(v)}, expected a tensor; {fix}")
    return state


def _finite(v: torch.Tensor) -> tuple[bool, bool]:
    """(has NaN, has inf) of a dense float or complex tensor; (False, False) for any other."""
    if v.layout != torch.strided or not (v.is_floating_point() or v.is_complex()):
        return False, False
    if v.dtype.itemsize == 1 and not v.is_complex():  # float8 has no isnan/isinf kernels
        try:
            v = v.float()
        except (RuntimeError, NotImplementedError):  # packed float4 cannot hold NaN or inf
            return False, False
    if bool(torch.isfinite(v).all()):
        return False, False
    return bool(torch.isnan(v).any()), bool(torch.isinf(v).any())


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse NaN or inf weights: they load fine but give loss nan and chance accuracy."""
    bad = []
    for k, v in state.items():
        nan, inf = _finite(v)
        if nan or inf:
            bad.append(f"{k!r} ({' and '.join(w for w, b in (('NaN', nan), ('inf', inf)) if b)})")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise BitsmithError(f"checkpoint {path} holds non-finite weights ({len(bad)} of {len(state)} tensors: "
                            f"{', '.join(bad[:3])}{more}); it was most likely saved from a diverged run: train "
                            "again with a lower --learning-rate / learning_rate, or load another checkpoint")


def _check_meta(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BitsmithError(f"checkpoint {path}: metadata 'bitsmith' is {_show(raw)}, expected a table (dict); "
                            f"{RERUN}")
    bad = next((k for k in raw if not isinstance(k, str)), None)
    if bad is not None:
        raise BitsmithError(f"checkpoint {path}: metadata 'bitsmith' has key {_show(bad)}, expected field names "
                            f"(strings); {RERUN}")
    try:
        return Meta.model_validate(raw).model_dump(exclude_unset=True)
    except ValidationError as e:
        raise _meta_error(path, raw, e) from None


def load_checkpoint(path: str | Path, load_type: str = "pl") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's state dict (prefix removed) and our metadata ({} for foreign files)."""
    path = Path(path)
    if load_type not in ("pl", "pt"):
        raise BitsmithError(f"unknown load type {load_type!r}; use \"pl\" (checkpoints of `bitsmith train`) "
                            "or \"pt\" (a bare state dict)")
    blob = _read(path)
    if load_type == "pl":
        if not isinstance(blob, dict):
            raise BitsmithError(f"checkpoint {path} holds {_show(blob)}, not a table with a 'state_dict'; "
                                f"{USE_OURS}")
        if "state_dict" not in blob:
            raise BitsmithError(f"checkpoint {path} has no 'state_dict' table; if it is a bare state dict, "
                                "use --load-type pt (load_type = \"pt\")")
        state = _check_state(path, blob["state_dict"], "state_dict", USE_OURS)
        _check_finite(path, state)
        state = {k.removeprefix(PREFIX): v for k, v in state.items()}
        meta = _check_meta(path, blob["bitsmith"]) if "bitsmith" in blob else {}
    else:
        if isinstance(blob, dict) and "state_dict" in blob:
            raise BitsmithError(f"checkpoint {path} is not a bare state dict (it has a 'state_dict' table); "
                                "load it with --load-type pl (load_type = \"pl\")")
        if not isinstance(blob, dict):
            raise BitsmithError(f"checkpoint {path} holds {_show(blob)}, not a bare state dict; checkpoints "
                                "that `bitsmith train` writes load with --load-type pl")
        state, meta = _check_state(path, blob, "state dict", "save a model's state_dict() with torch.save"), {}
        _check_finite(path, state)
    return state, meta


def restore(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, model_name: str) -> nn.Module:
    """Load ``state`` into ``model``, or say exactly why it does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        detail = "; ".join(filter(None, [
            f"missing {', '.join(missing[:3])}" if missing else "",
            f"unexpected {', '.join(extra[:3])}" if extra else "",
            f"shape {', '.join(shapes[:3])}" if shapes else "",
        ]))
        raise BitsmithError(f"checkpoint {path} does not fit model {model_name!r} ({detail}); "
                            "load a checkpoint of this model or name the model it was trained for")
    model.load_state_dict(state)
    return model


def check_model_name(meta: dict[str, Any], model_name: str, path: str | Path) -> None:
    saved = meta.get("model")
    if saved and saved != model_name:
        raise BitsmithError(f"checkpoint {path} holds model {saved!r}, not {model_name!r}; "
                            f"use model = {saved!r} or a checkpoint of {model_name!r}")
