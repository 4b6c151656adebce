"""The base of every config table, and how one is checked: the lowest layer that knows about settings.

Each table's schema lives with the code that reads it (passes, spaces, runners,
the ``[search]`` table); they all derive from :class:`Table` and are checked
with :func:`parse`, so every error names its TOML path and the fix the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bitsmith.errors import BitsmithError, explain

T = TypeVar("T", bound=BaseModel)
MAX_SEED = 2**32 - 1  # numpy's RandomState, behind Optuna's samplers, takes no more


class Table(BaseModel):
    """Base of every config table: strict types, unknown keys refused, read-only once validated."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def parse(model: type[T], data: Any, where: Sequence[str] = (), source: str = "the config") -> T:
    """Validate ``data`` (found at TOML path ``where``) as ``model``; errors name the path and the fix."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BitsmithError(explain(e, model, where, source)) from None


@dataclass
class Notes:
    """Where lenient reading warns: one stderr line each, or, in strict mode, an error."""

    strict: bool = False
    quiet: bool = False  # a worker process: its parent already said it

    def warn(self, message: str) -> None:
        if self.strict:
            raise BitsmithError(f"{message} (--strict makes this an error)")
        if not self.quiet:
            print(f"warning: {message}", file=sys.stderr)
