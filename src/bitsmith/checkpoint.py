"""Checkpoints: Lightning-style ``{"state_dict": {"model.<param>": tensor}}`` plus our metadata.

Always loaded with ``weights_only=True``: a checkpoint is data and never runs code.
Writes are atomic, so an interrupted save never corrupts an existing file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitsmith.errors import BitsmithError

FORMAT = 1
PREFIX = "model."


def save_checkpoint(path: str | Path, model: nn.Module | dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write a model (or its state dict) with ``meta``; replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {PREFIX + k: v.detach().cpu() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"state_dict": state, "bitsmith": {"format": FORMAT, **meta}}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, load_type: str = "pl") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's state dict (prefix removed) and our metadata ({} for foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise BitsmithError(f"checkpoint {str(path)!r} does not exist; check --load / load_name")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise BitsmithError(f"cannot read checkpoint {path}: damaged, or not written by torch.save "
                            f"({type(e).__name__}); use a checkpoint written by `bitsmith train`") from None
    if load_type == "pl":
        if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
            raise BitsmithError(f"checkpoint {path} has no 'state_dict' table; if it is a bare state dict, "
                                "use --load-type pt (load_type = \"pt\")")
        state = {k.removeprefix(PREFIX): v for k, v in blob["state_dict"].items()}
        meta = blob.get("bitsmith", {}) if isinstance(blob.get("bitsmith"), dict) else {}
    else:
        if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise BitsmithError(f"checkpoint {path} is not a bare state dict; checkpoints that "
                                "`bitsmith train` writes load with --load-type pl")
        state, meta = blob, {}
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
