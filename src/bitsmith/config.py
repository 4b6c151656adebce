"""TOML files and command-line flags -> validated, typed settings.

Precedence: built-in defaults < the TOML file < flags. The string "NA" anywhere
in a file means "no value" (None). Every error names the key and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bitsmith.errors import BitsmithError, closest

# Keys that files written for MASE's `chop` carry but that mean nothing here
# (multi-GPU, Lightning plumbing). Accepted so those files run unchanged.
_COMPAT_KEYS = (
    "is_pretrained", "num_workers", "num_devices", "num_nodes", "strategy",
    "disable_dataset_cache", "github_ci", "auto_requeue", "is_to_auto_requeue",
    "max_token_len", "pretrained", "model_parallel",
)


class Settings(BaseModel):
    """Everything a run needs, after defaults, file and flags are merged."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = "digits-mlp"
    dataset: str = "digits"
    task: Literal["cls", "classification"] = "cls"
    max_epochs: int = Field(30, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    scheduler: Literal["cosine", "none"] = "cosine"
    seed: int = 0
    log_every_n_steps: int = Field(50, ge=1)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    project: str | None = None
    project_dir: str = "bitsmith_output"
    load_name: str | None = None
    load_type: Literal["pl", "pt"] = "pl"
    data_path: str | None = None
    # Tables read by the transform and search commands; checked by their own modules.
    passes: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)
    transform: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_compat_keys(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if k not in _COMPAT_KEYS} if isinstance(data, dict) else data

    @property
    def project_name(self) -> str:
        return self.project or f"{self.model}_{self.dataset}"

    @property
    def output_dir(self) -> Path:
        return Path(self.project_dir) / self.project_name

    def summary(self) -> str:
        """The effective training settings, on one line."""
        keys = ("model", "dataset", "max_epochs", "max_steps", "batch_size", "learning_rate",
                "weight_decay", "optimizer", "scheduler", "seed", "accelerator")
        parts = [f"{k}={getattr(self, k)}" for k in keys if getattr(self, k) is not None]
        parts.append(f"output={self.output_dir}")
        return "settings: " + " ".join(parts)


TRAIN_KEYS = sorted(Settings.model_fields)


def na_to_none(value: Any) -> Any:
    """Replace every "NA" string (at any depth) by None."""
    if isinstance(value, str) and value == "NA":
        return None
    if isinstance(value, dict):
        return {k: na_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [na_to_none(v) for v in value]
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file as data (never executed); "NA" becomes None."""
    path = Path(path)
    if not path.is_file():
        raise BitsmithError(f"config file {str(path)!r} does not exist; check the path given to --config")
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BitsmithError(f"cannot parse {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise BitsmithError(f"cannot parse {path}: not UTF-8 text ({e.reason})") from None
    return na_to_none(raw)


def load_settings(path: str | Path | None = None, **flags: Any) -> Settings:
    """Defaults < TOML file < flags (flags that are None are not given)."""
    raw = read_toml(path) if path else {}
    given = {k: v for k, v in flags.items() if v is not None}
    where = {k: str(path) for k in raw} | {k: "the command line" for k in given}
    try:
        return Settings(**(raw | given))
    except ValidationError as e:
        raise BitsmithError(_explain(e, where)) from None


def _explain(error: ValidationError, where: dict[str, str]) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    src = where.get(str(first["loc"][0]), "the settings")
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return unknown_key_message(key, TRAIN_KEYS, f"the top level of {src}") + more
    return f"{key} = {first['input']!r} in {src}: {first['msg']}{more}"


def unknown_key_message(key: str, allowed: list[str] | set[str], where: str) -> str:
    near = closest(key, allowed)
    hint = f"did you mean {near!r}?" if near else f"allowed keys: {', '.join(sorted(allowed))}"
    return f"unknown key {key!r} in {where}; {hint}"


def check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    """Raise a clear error for the first key of ``table`` not in ``allowed``."""
    for key in table:
        if key not in allowed:
            raise BitsmithError(unknown_key_message(key, allowed, where))
