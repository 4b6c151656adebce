"""The strategies of a comparison: a search config and a sampler, each run over the same seeds.

The main config gives one strategy per ``--samplers`` name; every ``--with`` config one more, with its own
sampler. Strategies on other configs must measure the same thing (model, weights, data, objective metrics
and constraints), so that their curves share one reference: the best any run of any strategy found.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitsmith.config import check_file
from bitsmith.errors import BitsmithError
from bitsmith.search.compare.truth import Table, truth_key
from bitsmith.search.learned import LearnedSpace
from bitsmith.search.prepare import prepare_search, record, space_size

NOISY_RUNNERS = ("basic_train",)  # results depend on training: evaluated per trial, never looked up
WITH_FLAG = "--with"


def parse_with(values: list[str] | None) -> list[str]:
    """``--with`` values (repeated, each possibly comma-separated) as config paths, each an existing file."""
    paths = [p.strip() for v in values or [] for p in v.split(",") if p.strip()]
    if values and not paths:
        raise BitsmithError(f"{WITH_FLAG}: give one or more search config files, e.g. {WITH_FLAG} other.toml")
    for p in paths:
        check_file(p, "config file", WITH_FLAG)
    return paths


def space_label(search) -> str:
    """The space's short name: the last part of its ``name`` (``learned_widths``, ``mixed_precision_ptq``)."""
    return str(search.cfg.space.name).rsplit("/", 1)[-1]


def noisy_reason(search) -> str | None:
    """Why this search has no ground truth (each trial is evaluated afresh), or None."""
    if isinstance(search.objective.space, LearnedSpace):
        return f"space {space_label(search)} trains a model in every trial"
    runner = next((r.name for r in search.cfg.runners if r.name in NOISY_RUNNERS), None)
    return f"runner {runner} depends on training" if runner else None


def size_text(search) -> str:
    params = search.objective.params
    if any(not isinstance(c, list) for c in params.values()):
        return "ranges (continuous)"
    return f"{space_size(params):,} points"


@dataclass
class Strategy:
    """One line of the table: a sampler on one config's space."""

    name: str
    sampler: str
    search: Any  # prepare.Search
    table: Table
    config: str  # the config file it comes from
    noisy: str | None  # noisy_reason

    def describe(self) -> dict[str, Any]:
        return {"config": self.config, "space": str(self.search.cfg.space.name), "sampler": self.sampler}


def _objective(search) -> dict[str, Any]:
    """What must be equal for two searches' values to be compared, as readable text."""
    cfg = search.cfg
    summed = cfg.setup.sum_scaled_metrics
    metrics = ", ".join(f"{m.name} ({m.direction}{f', scale {m.scale:g}' if summed else ''})" for m in cfg.metrics)
    rec = record(search)
    return {"models": search.settings.model, "data sets": search.settings.dataset,
            "data contents": rec["data"], "weights": rec["weights"],
            "objective metrics": metrics + (f", summed to {cfg.setup.direction}" if summed else ""),
            "constraints": ", ".join(_bounds(c) for c in cfg.constraints) or "none"}


def _bounds(c) -> str:
    if c.min is not None and c.max is not None:
        return f"{c.metric} in [{c.min:g}, {c.max:g}]"
    return f"{c.metric} >= {c.min:g}" if c.min is not None else f"{c.metric} <= {c.max:g}"


def prepare_others(main, others: list) -> list:
    """Each ``--with`` config's search, prepared with its own sampler; refused unless it measures what the
    main config measures."""
    if not others:
        return []
    want = _objective(main)
    out = []
    for settings in others:
        where = f"{WITH_FLAG} {settings.source}"
        if not settings.search:
            raise BitsmithError(f"{where}: has no [search] table; give a search config (search_space and strategy)")
        try:
            search = prepare_search(settings, None, settings.notes)
        except BitsmithError as e:  # which of the configs it is about
            raise BitsmithError(f"{where}: {e}") from None
        if not search.objective.params:
            raise BitsmithError(f"{where}: this space has nothing to search: no parameter has more than one choice")
        got = _objective(search)
        for what, value in want.items():
            if got[what] != value:
                raise BitsmithError(f"{where}: not comparable with {main.settings.source}: {what} differ: "
                                    f"{settings.source} has {got[what]}; {main.settings.source} has {value}"
                                    + ("; load the same checkpoint for both (--load CKPT)" if what == "weights" else ""))
        out.append(search)
    return out


def exhaustive_refusal(search, samplers: list[str], subject: str, max_truth: int) -> BitsmithError | None:
    """Samplers that visit every point need a space small enough for the ground truth and not noisy;
    ``subject`` names them, with the verb (``--samplers grid visit``)."""
    if not samplers:
        return None
    size, noisy = space_size(search.objective.params), noisy_reason(search)
    if size <= max_truth and not noisy:
        return None
    if noisy:
        why, fewer = f"no ground truth ({noisy})", ""
    else:
        why, fewer = f"{size:,} points (ground truth is kept for at most {max_truth:,})", ", or give fewer choices"
    return BitsmithError(f"{subject} every point, but this space has {why}; compare tpe, random, nsgaii, qmc or gp "
                         f"instead{fewer}")


def names(entries: list[tuple[str, str, str]], prefix: bool) -> list[str]:
    """Strategy names for (space label, sampler, config file): the sampler alone for the main config's runs
    without ``--with``; else ``<space>:<sampler>``, or ``<config file's stem>:<sampler>`` where two would share
    a name (two configs on the same space with the same sampler)."""
    if not prefix:
        return [sampler for _, sampler, _ in entries]
    first = [f"{space}:{sampler}" for space, sampler, _ in entries]
    out = [n if first.count(n) == 1 else f"{Path(config).stem}:{sampler}"
           for n, (_, sampler, config) in zip(first, entries)]
    for i, n in enumerate(out):
        if n in out[:i]:
            j = out.index(n)
            raise BitsmithError(f"{WITH_FLAG} {entries[i][2]}: strategy {first[i]} is already compared (from "
                                f"{entries[j][2]}); drop one, or give the configs different file names")
    return out


def make_strategies(main, samplers: list[str], others: list, out: Path, rebuild: bool) -> list[Strategy]:
    """The main config's runs first, then each ``--with`` config's; one table per search (noisy: no file)."""
    tables: dict[Any, Table] = {}

    def table(search) -> Table:
        key = truth_key(search)
        # A noisy search evaluates with its own seed (training), so its table is never shared; others share
        # the table of their record digest.
        at = id(search) if noisy_reason(search) else key
        if at not in tables:
            tables[at] = Table(search, None if noisy_reason(search) else out / f"truth_{key}.json", key, rebuild)
        return tables[at]

    runs = [(main, s) for s in samplers] + [(o, o.cfg.setup.sampler) for o in others]
    label = names([(space_label(s), sampler, str(s.settings.source)) for s, sampler in runs], bool(others))
    return [Strategy(n, sampler, s, table(s), str(s.settings.source), noisy_reason(s))
            for n, (s, sampler) in zip(label, runs)]


def reuse_inputs(others: list) -> list[dict[str, Any]]:
    """What each ``--with`` config adds to the run's reuse key: its record digest, seed and sampler, and its
    file's contents (so an edited config is never reused)."""
    return [{"key": truth_key(o), "seed": o.cfg.seed, "sampler": o.cfg.setup.sampler,
             "contents": hashlib.sha256(Path(o.settings.source).read_bytes()).hexdigest()[:16]} for o in others]
