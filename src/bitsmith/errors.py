"""The one exception type for user mistakes.

The command line prints its message (one or two lines, naming what is wrong
and how to fix it) and exits with status 2, without a traceback.
"""

import difflib
from collections.abc import Iterable


class BitsmithError(Exception):
    """A mistake in the user's input: config, flags, files, names."""


class CandidateError(BitsmithError):
    """Settings each valid alone that cannot be combined (inconsistent widths, a
    fraction wider than its width). A search prunes such a candidate and goes on."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``word``, or None when nothing is close."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return match[0] if match else None


def unknown_name(kind: str, name: str, known: Iterable[str], where: str = "", extra: str = "") -> BitsmithError:
    """An error for an unknown name that lists the known ones and the closest."""
    known = sorted(known)
    near = closest(name, known)
    hint = f"did you mean {near!r}? " if near else ""
    place = f" {where}" if where else ""
    tail = f"; {extra}" if extra else ""
    return BitsmithError(f"unknown {kind} {name!r}{place}; {hint}known: {', '.join(known)}{tail}")
