"""The exception types for user mistakes, and the one formatter for config errors.

The command line prints a ``BitsmithError``'s message (one or two lines, naming
what is wrong and how to fix it) and exits with status 2, without a traceback.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any


class BitsmithError(Exception):
    """A mistake in the user's input: config, flags, files, names."""


class CandidateError(BitsmithError):
    """Settings each valid alone that cannot be combined (inconsistent widths, a
    model too large to build). A search prunes such a candidate and goes on."""


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


def toml_path(loc: Sequence[Any]) -> tuple[str, str]:
    """``("search", "strategy", "setup", "sampler")`` -> ``("[search.strategy.setup]", "sampler")``."""
    parts = [str(p) for p in loc]
    if len(parts) <= 1:
        return "", parts[0] if parts else ""
    return f"[{'.'.join(parts[:-1])}]", parts[-1]


# What a value should have been, by pydantic error type: said as a TOML user would write it.
_EXPECTED = {
    "bool_type": "true or false (a TOML boolean, without quotes)",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number (not nan or inf)",
    "string_type": "a string (in quotes)",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "a list, e.g. [4, 8]",
    "tuple_type": "a list",
}


def _expected(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}",
              "less_than": "< {lt}"}
    if kind in bounds:
        return "a value " + bounds[kind].format(**ctx)
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} values"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} value(s)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def _fields_at(model: Any, loc: Sequence[Any]) -> list[str] | None:
    """The keys allowed in the table at ``loc`` inside ``model`` (None if unknown)."""
    from pydantic import BaseModel

    ann: Any = model
    for part in loc:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part))
            if field is not None:
                ann = field.annotation
                continue
            extra = typing.get_type_hints(ann).get("__pydantic_extra__")
            ann = typing.get_args(extra)[1] if extra is not None else None
        elif typing.get_origin(ann) is dict:
            ann = typing.get_args(ann)[1]
        elif typing.get_origin(ann) in (list, tuple):
            ann = typing.get_args(ann)[0]
        else:
            return None
    ann = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return list(ann.model_fields)
    return None


def _unwrap(ann: Any) -> Any:
    """The table type inside ``X | None`` or ``Annotated[X, ...]``."""
    from pydantic import BaseModel

    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    args = typing.get_args(ann)
    if args and typing.get_origin(ann) in (typing.Union, types.UnionType):
        tables = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return tables[0] if tables else next((a for a in args if a is not type(None)), ann)
    return ann


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]} ... {text[-12:]} ({len(value)} values)" \
        if isinstance(value, (list, tuple)) else text[:limit] + "..."


def explain(error: Any, model: Any, prefix: Sequence[str] = (), source: str = "the config") -> str:
    """One or two lines for a pydantic ``ValidationError``: the TOML path, what was expected, the closest key.

    ``model`` is the model that was validated and ``prefix`` the TOML path of
    the data it was given (e.g. ``("search",)``).
    """
    errors = error.errors()
    # An unknown key explains the errors it causes ("needs 'config'" beside "unknown key 'confg'").
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [*prefix, *first["loc"]]
    if len(loc) >= 2 and isinstance(loc[-1], int):  # an item of a choice list: "weight_width[1]"
        loc = [*loc[:-2], f"{loc[-2]}[{loc[-1]}]"]
    table, key = toml_path(loc)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    allowed = _fields_at(model, first["loc"][:-1])
    is_table = first["type"] in ("model_type", "dict_type", "model_attributes_type")
    if first["type"] == "extra_forbidden" or (is_table and allowed is not None and key not in allowed
                                              and not isinstance(first["input"], dict)):
        # An unknown key; in tables whose other keys are per-layer entries it shows up as "not a table".
        near = closest(key, allowed or [])
        hint = f"did you mean {near!r}?" if near else f"allowed keys: {', '.join(allowed or []) or 'none'}"
        return f"unknown key {key!r} in {table or 'the top level'} of {source}; {hint}{more}"
    if first["type"] == "value_error" and isinstance(first["input"], dict):  # a check across keys
        where = f"[{'.'.join(map(str, loc))}] in {source}" if loc else source
        return f"{where}: {first['ctx']['error']}{more}"
    if first["type"] == "missing":
        return f"{table or 'the top level'} of {source} needs {key!r}{more}"
    value = first.get("input")
    shown = f" = {_short(value)}" if not isinstance(value, dict) else ""
    where = f"{table} {key}" if table else key
    return f"{where}{shown} in {source}: expected {_expected(first)}{more}"
