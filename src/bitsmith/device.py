"""Choosing where tensors live; GPU requests fall back to the CPU with one warning."""

from __future__ import annotations

import sys

import torch

_warned = False


def resolve_device(accelerator: str) -> torch.device:
    """``cpu``, ``gpu``/``cuda`` or ``auto`` -> a torch device that exists here."""
    global _warned
    if accelerator in ("gpu", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if not _warned:
            print(f"warning: accelerator = {accelerator!r} but no CUDA device is available; running on the CPU",
                  file=sys.stderr)
            _warned = True
        return torch.device("cpu")
    if accelerator == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
