"""Preparing a search: the config checked, data and model loaded, the space built and pre-checked; and the
record of everything a trial's measurements depend on, which a resumed or joined study must match."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.schema import Notes
from bitsmith.search.samplers import SAMPLERS

MAX_POINTS = 100_000  # an exhaustive sampler's space holds at most this many points


@dataclass
class Search:
    """What one process needs to run trials of a search."""

    settings: Settings
    cfg: Any  # SearchConfig
    base: Any  # Graph
    objective: Any  # Objective
    root: Path  # <project>/search: the project's study journal
    out: Path | None = None  # <project>/search/<study>: the study's own outputs, once it is open

    @property
    def journal(self) -> Path:
        return self.root / "study.journal"


def prepare_search(settings: Settings, overrides: dict[str, Any] | None, notes: Notes) -> Search:
    """Check the config, load data and model, trace, build and pre-check the space."""
    from bitsmith.graph import trace
    from bitsmith.jobs import check_output_dir, prepare
    from bitsmith.search.config import parse_search
    from bitsmith.search.learned import LearnedSpace, LearnedSpec, check_learned
    from bitsmith.search.runners import Context
    from bitsmith.search.spaces import build_space, check_space
    from bitsmith.search.study import Objective

    cfg = parse_search(settings.search, settings.seed, overrides, settings.source)
    for warning in cfg.warnings:
        notes.warn(warning)
    p = prepare(settings)
    root = p.settings.output_dir / "search"  # the checkpoint may name the model and data set, and so the project
    check_output_dir(root)
    base = trace(p.model.eval(), p.data.in_shape)
    if isinstance(cfg.space, LearnedSpec):
        check_learned(cfg.space, cfg.setup.sampler, SAMPLERS[cfg.setup.sampler].exhaustive)
        space = LearnedSpace(cfg.space)
    else:
        space = build_space(base, cfg.space, notes)
        check_space(base, space)
    if SAMPLERS[cfg.setup.sampler].exhaustive and space_size(space.params) > MAX_POINTS:
        raise BitsmithError(f"sampler {cfg.setup.sampler!r} visits every point, and this space has "
                            f"{space_size(space.params):,} (at most {MAX_POINTS:,}); use tpe, random or qmc, or "
                            "give fewer choices")
    return Search(p.settings, cfg, base, Objective(cfg, base, space, Context(p.data, p.device, cfg.seed)), root)


def default_study_name(settings: Settings) -> str:
    """``<project>-<config file's name>``: the example configs of one project are studies of their own."""
    source = Path(settings.source)
    return f"{settings.project_name}-{source.stem}" if source.suffix == ".toml" else settings.project_name


def space_size(params: dict[str, list[Any]]) -> int:
    import math

    # a range (learned widths) holds more points than any exhaustive sampler could visit
    return math.prod(len(c) if isinstance(c, list) else MAX_POINTS + 1 for c in params.values())


def record(search: Search) -> dict[str, Any]:
    """Everything a trial's measurements depend on: config, runners, data contents and weights."""
    import hashlib

    weights = hashlib.sha256()
    for name, tensor in search.base.gm.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    s, data = search.settings, search.objective.ctx.data
    return json.loads(json.dumps({"model": s.model, "dataset": s.dataset, "data": data.info.get("digest", data.source),
                                  "weights": weights.hexdigest()[:16], **search.cfg.digest_data()}, default=str))


def record_digest(rec: dict[str, Any]) -> str:
    """A short digest of a record (``record``, or a part of it)."""
    import hashlib

    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where two records differ, as ``path: old -> new`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in differences(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    short = lambda v: (repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "...")  # noqa: E731
    return [f"{path}: {short(old)} -> {short(new)}"]
