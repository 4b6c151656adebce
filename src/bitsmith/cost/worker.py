"""A solver process (``python -m bitsmith.cost.worker``): reads jobs from stdin, answers on stdout.

Each message is an 8-byte length and a pickle, exchanged only with the bitsmith process that started it
(``solver.py``). A job names one of the adapter's functions in ``ALLOWED`` and its arguments; the answer is
``(True, result)`` or ``(False, one-line error)``. It exits when its stdin closes.
"""

from __future__ import annotations

import pickle
import sys

from bitsmith.cost import _da4ml
from bitsmith.cost.solver import HEADER

ALLOWED = {"solve_cmvm": _da4ml.solve_cmvm, "solve_requant": _da4ml.solve_requant}


def _read(stream, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data and len(data) == n else None


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = _read(inp, HEADER.size)
        if head is None:
            return
        body = _read(inp, HEADER.unpack(head)[0])
        if body is None:
            return
        fn, args = pickle.loads(body)  # from the process that started this one
        try:
            answer = (True, ALLOWED[fn](*args))
        except Exception as e:  # noqa: BLE001 - every failure goes back as one line
            answer = (False, f"the solver failed: {type(e).__name__}: {e}".splitlines()[0])
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(HEADER.pack(len(data)) + data)
        out.flush()


if __name__ == "__main__":
    main()
