"""Export bitsmith's own digits split to an .npz for the HGQ2 reference run.

Run with bitsmith's venv (it uses bitsmith's loader, so the rows, split and scaling are exactly
what bitsmith trains on: 1,293 train / 144 val / 360 test, standard-scaled on train):

    BITSMITH_CACHE=/tmp/hgq2/cache /work/main/.venv/bin/python benchmarks/hgq2/export_digits.py /tmp/hgq2/digits_split.npz
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from bitsmith.data import get_dataset


def main(out: str = "/tmp/hgq2/digits_split.npz") -> int:
    d = get_dataset("digits")
    arrays = {}
    for s in ("train", "val", "test"):
        sp = d.split(s)
        arrays[f"x_{s}"] = sp.x.numpy()
        arrays[f"y_{s}"] = sp.y.numpy()
        print(s, tuple(sp.x.shape), sp.x.dtype, tuple(sp.y.shape), sp.y.dtype)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    print("bitsmith digest", d.info.get("digest"))
    print("sha256", hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
