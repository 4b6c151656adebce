"""TOML files and command-line flags -> validated, typed settings.

Precedence: built-in defaults < the TOML file < flags. The string "NA" anywhere
in a file means "no value" (None). Every error names the key and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from bitsmith.errors import BitsmithError, explain
from bitsmith.schema import MAX_SEED, Notes, Table, parse  # noqa: F401  (parse: re-exported for older imports)

# Top-level keys that MASE's `chop` reads (its command-line settings) but that
# mean nothing here: multi-GPU and Lightning plumbing, language-model options,
# logging. Accepted and dropped so those files run unchanged (MASE itself
# ignores any top-level key that is not one of its settings).
MASE_TOP_LEVEL = frozenset({
    "is_pretrained", "pretrained", "num_workers", "num_devices", "num_nodes", "strategy",
    "disable_dataset_cache", "github_ci", "auto_requeue", "is_to_auto_requeue", "max_token_len",
    "model_parallel", "log_level", "cf_args", "trainer_precision", "accumulate_grad_batches", "t_max",
    "eta_min", "quant_config", "report_to", "to_debug",
})
# MASE's spelling of a setting bitsmith has under another name.
MASE_ALIASES = {"training_optimizer": "optimizer"}


class TransformTable(Table):
    """``[transform]``: MASE's graph or module style; both run bitsmith's graph passes."""

    style: Literal["graph", "module"] = "graph"


class Settings(BaseModel):
    """Everything a run needs, after defaults, file and flags are merged (read-only)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = "digits-mlp"
    dataset: str = "digits"
    task: Literal["cls", "classification"] = "cls"
    max_epochs: int = Field(30, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    scheduler: Literal["cosine", "none"] = "cosine"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    log_every_n_steps: int = Field(50, ge=1)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    project: str | None = None
    project_dir: str = "bitsmith_output"
    load_name: str | None = None
    load_type: Literal["pl", "pt"] = "pl"
    data_path: str | None = None
    label_column: str | None = Field(None, min_length=1)  # the class column of your own table (dataset "table")
    # The share of the training part kept as the validation split, on which a search chooses designs;
    # data._base.VAL_SIZE (0.1) is the recipe's own, so configs without the key split as they always did.
    val_size: float = Field(0.1, gt=0, lt=0.9, allow_inf_nan=False)
    strict: bool = False  # extension: entries MASE would ignore are errors, not warnings
    # Tables read by the transform and search commands; their schemas live with
    # the passes and runners that read them (check_tables validates them all).
    passes: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)
    transform: TransformTable = Field(default_factory=lambda: TransformTable())
    _source: str = PrivateAttr("the settings")

    @model_validator(mode="before")
    @classmethod
    def _mase_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if k not in MASE_TOP_LEVEL}
        for mase, ours in MASE_ALIASES.items():
            if mase in data:
                if ours in data and data[ours] != data[mase]:
                    raise ValueError(f"{mase} (MASE's name) and {ours} disagree; keep one of them")
                data[ours] = data.pop(mase)
        if data.get("load_type") in ("mz", "hf"):
            raise ValueError(f"load_type = {data['load_type']!r} (MASE's pickled graph or a Hugging Face model) "
                             "cannot be read safely; load a state dict: load_type = \"pl\" or \"pt\"")
        return data

    @property
    def source(self) -> str:
        """The file the tables came from, for error messages."""
        return self._source

    @property
    def notes(self) -> Notes:
        return Notes(self.strict)

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


def na_to_none(value: Any) -> Any:
    """Replace every "NA" string (at any depth) by None."""
    if isinstance(value, str) and value == "NA":
        return None
    if isinstance(value, dict):
        return {k: na_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [na_to_none(v) for v in value]
    return value


def check_file(path: str | Path, what: str, flag: str) -> Path:
    """``path`` as a Path, or a clear error when it is missing or not a regular file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BitsmithError(f"{what} {str(path)!r} is a directory, not a file; check {flag}")
    if not path.is_file():
        raise BitsmithError(f"{what} {str(path)!r} does not exist; check {flag}")
    return path


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file as data (never executed); "NA" becomes None."""
    path = check_file(path, "config file", "the path given to --config")
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BitsmithError(f"cannot parse {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise BitsmithError(f"cannot parse {path}: not UTF-8 text ({e.reason})") from None
    return na_to_none(raw)


def load_settings(path: str | Path | None = None, **flags: Any) -> Settings:
    """Defaults < TOML file < flags (flags that are None are not given).

    The ``[passes.*]`` and ``[search]`` tables are checked by their owners: when the
    command that reads them starts (``jobs.transform``, ``search.run_search``), and by
    the command line for every command, before any work.
    """
    raw = read_toml(path) if path else {}
    given = {k: v for k, v in flags.items() if v is not None}
    source = str(path) if path else "the settings"
    try:
        settings = Settings(**(raw | given))
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        src = "the command line" if loc and loc[0] in given else source
        raise BitsmithError(explain(e, Settings, (), src)) from None
    settings._source = source
    return settings
