"""The learned-widths space: Optuna outside, gradients inside.

``name = "graph/quantize/learned_widths"``. Each trial trains the base model with learned widths
(``bitsmith.learn``) under hyper-parameters Optuna chooses (``[search.search_space.hyper]``: the penalty
strength ``beta``, ``max_epochs``, ``learning_rate``, ``granularity``), and the runners then score the frozen
fixed-point design like any other candidate. Each epoch's validation accuracy goes to an Optuna pruner; a
trial that falls to chance is pruned with its reason. With ``repeats`` a trial also trains its point with the
seeds after the search's own, and is scored by the means (``study.Objective.repeated``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
from pydantic import Discriminator, Field, Tag, model_validator

from bitsmith.checkpoint import load_checkpoint, save_checkpoint
from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph
from bitsmith.learn import LearnSettings, learn
from bitsmith.passes import apply_passes, parse_pass
from bitsmith.schema import MAX_SEED, Table, parse
from bitsmith.search import _optuna

LEARNED_SPACE = "graph/quantize/learned_widths"
HISTORY = "val_accuracy_by_epoch"  # user attribute: the trial's validation accuracy after each epoch


class Range(Table):
    """A number drawn by Optuna between ``low`` and ``high`` (``log``: on a log scale)."""

    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} is above high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Granularity = Literal["layer", "channel", "weight"]


def Choice(kind: type, **bounds):
    """A list of values or a range; which one is decided by the value's shape, so an error names the right one."""
    extra = {"allow_inf_nan": False} if kind is float else {}
    item = Annotated[kind, Field(**bounds, **extra)]
    return Annotated[Annotated[Range, Tag("range")] | Annotated[list[item], Tag("list")],
                     Discriminator(lambda v: "range" if isinstance(v, (dict, Range)) else "list")]


class Hyper(Table):
    """``[search.search_space.hyper]``: a list is a choice, a {low, high, log} table a range, a number fixed."""

    beta: Choice(float, ge=0) = Range(low=1e-6, high=1e-3, log=True)
    max_epochs: Choice(int, ge=1, le=100_000) = Range(low=10, high=80)
    learning_rate: Choice(float, gt=0) = Range(low=1e-3, high=2e-2, log=True)
    granularity: list[Granularity] = Field(default_factory=lambda: ["weight"], min_length=1)
    # activation ranges: this quantile of the training split's magnitudes (1: the largest; lower values clip
    # rare outliers, such as the large z-scores of pixels that are almost always 0)
    range_quantile: Choice(float, ge=0.5, le=1) = Field(default_factory=lambda: [1.0])
    # weight of the loaded model's soft labels in the loss (distillation): 0, labels only, to 1
    distill: Choice(float, ge=0, le=1) = Field(default_factory=lambda: [0.0])

    @model_validator(mode="before")
    @classmethod
    def _scalars(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: [v] if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v
                    for k, v in data.items()}
        return data


class LearnedSetup(Table):
    """``[search.search_space.setup]``: what stays fixed across trials."""

    batch_size: int = Field(64, ge=1)
    init_weight_frac: float = Field(6.0, ge=-32, le=32)
    init_act_frac: float = Field(4.0, ge=-32, le=32)
    # Optuna's pruner on each epoch's validation accuracy; it compares a trial only with trials whose beta
    # is at least as large (they are penalised as hard, so cost no more), so the cheap end is not cut.
    pruner: Literal["median", "percentile", "none"] = "median"
    percentile: float = Field(25.0, gt=0, lt=100)
    pruner_startup_trials: int = Field(5, ge=0)
    pruner_warmup_epochs: int = Field(5, ge=0)
    temperature: float = Field(2.0, gt=0, allow_inf_nan=False)  # of the soft labels, when distill > 0
    # seeds each trial trains its point with, scored by the means of their metrics: one run's accuracy is
    # partly its seed, so several rank points by what they give, not by one draw (the first seed's design is kept)
    repeats: int = Field(1, ge=1, le=100)


class LearnedSpaceTable(Table):
    name: str
    setup: LearnedSetup = Field(default_factory=LearnedSetup)
    hyper: Hyper = Field(default_factory=Hyper)


@dataclass(frozen=True)
class LearnedSpec:
    name: str
    setup: LearnedSetup
    hyper: Hyper

    def digest_data(self) -> list[Any]:
        return [self.name, _dump(self.setup), _dump(self.hyper)]


def parse_learned(table: dict[str, Any], source: str = "the config") -> LearnedSpec:
    t = parse(LearnedSpaceTable, table, ("search", "search_space"), source)
    return LearnedSpec(t.name, t.setup, t.hyper)


INTEGER = {"max_epochs"}
ADDED_LATER = {"temperature", "distill", "repeats"}  # settings a study made before them does not know


def at_default(table: Table, name: str) -> bool:
    return getattr(table, name) == type(table).model_fields[name].get_default(call_default_factory=True)


def _dump(table: Table) -> dict[str, Any]:
    """The table for a study's digest; a setting added later is left out at its default, so that a study made
    before it keeps its digest and resumes."""
    return table.model_dump(mode="json", exclude={n for n in ADDED_LATER if hasattr(table, n) and at_default(table, n)})


def _plain(point: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(point, sort_keys=True))


class LearnedSpace:
    """The parameters of one learned-widths search, and how a trial builds its design."""

    def __init__(self, spec: LearnedSpec):
        self.spec = spec
        h = spec.hyper
        self.params: dict[str, list[Any] | Range] = {
            "beta": h.beta, "max_epochs": h.max_epochs, "learning_rate": h.learning_rate,
            "granularity": h.granularity, "range_quantile": h.range_quantile}
        if not at_default(h, "distill"):
            self.params["distill"] = h.distill  # (absent otherwise: the points of earlier studies stay as they were)
        self.folder: Path | None = None  # where trained designs are kept (``keep``); None: nowhere
        self.key = ""
        s = spec.setup
        self.pruner = None if s.pruner == "none" else (
            optuna.pruners.MedianPruner(s.pruner_startup_trials, s.pruner_warmup_epochs) if s.pruner == "median"
            else optuna.pruners.PercentilePruner(s.percentile, s.pruner_startup_trials, s.pruner_warmup_epochs))

    def keep(self, folder: Path, key: str) -> None:
        """Keep each trial's trained design in ``folder`` (``trial_N.ckpt``), marked with ``key``, the study's
        record digest: a design is read back only for the same study, point and seed."""
        self.folder, self.key = folder, key

    def _kept(self, base: Graph, chosen: dict[str, Any], number: int, seed: int) -> tuple[Graph, list] | None:
        path = self.folder / f"trial_{number}.ckpt" if self.folder else None
        if path is None or not path.is_file():
            return None
        try:
            state, meta = load_checkpoint(path)
            if (meta.get("study_key"), meta.get("point"), meta.get("seed")) != (self.key, _plain(chosen), seed):
                return None
            # on a copy: the quantize pass shares parameters with its input, and the state below is loaded into them
            graph, _ = apply_passes(base.clone(), [(n, parse_pass(n, c)) for n, c in meta["passes"]])
            graph.gm.load_state_dict(state)
        except (BitsmithError, KeyError, TypeError, ValueError, RuntimeError):
            return None  # damaged or from another layout: train again
        return graph, meta["passes"]

    def _store(self, graph: Graph, passes: list, chosen: dict[str, Any], number: int, seed: int) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.folder / f"trial_{number}.ckpt", graph.gm,
                            {"passes": passes, "point": _plain(chosen), "seed": seed, "study_key": self.key})
        except (BitsmithError, OSError):
            pass  # only a shortcut: the design is trained again when it is needed

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        c = self.params[name]
        if isinstance(c, Range):
            if name in INTEGER:
                return trial.suggest_int(name, int(c.low), int(c.high), log=c.log)
            return trial.suggest_float(name, c.low, c.high, log=c.log)
        return trial.suggest_categorical(name, c)

    def settings(self, chosen: dict[str, Any], seed: int) -> LearnSettings:
        first = {n: (c[0] if isinstance(c, list) else c.low) for n, c in self.params.items()}
        p = {**first, **chosen}
        s = self.spec.setup
        return LearnSettings(beta=float(p["beta"]), max_epochs=int(p["max_epochs"]),
                             learning_rate=float(p["learning_rate"]), granularity=p["granularity"],
                             batch_size=s.batch_size, init_weight_frac=s.init_weight_frac,
                             init_act_frac=s.init_act_frac, range_quantile=float(p["range_quantile"]), seed=seed,
                             distill=float(p.get("distill", 0.0)), temperature=s.temperature)

    def more_seeds(self, seed: int) -> list[int]:
        """The seeds a trial trains with after the search's own (``repeats``), in order."""
        return [(seed + i) % (MAX_SEED + 1) for i in range(1, self.spec.setup.repeats)]

    def build_seed(self, base: Graph, chosen: dict[str, Any], ctx, seed: int) -> Graph:
        """The point's design trained with another seed (a repeat: neither reported to the pruner nor kept)."""
        return learn(base, ctx.data, self.settings(chosen, seed), ctx.device).graph

    def build(self, base: Graph, chosen: dict[str, Any], ctx, trial: optuna.Trial | None = None,
              number: int | None = None) -> tuple[Graph, list]:
        """The trained design of a point: trained now (``trial``: its epochs reported to the pruner), or, for a
        finished trial ``number``, read back from the designs kept when it ran."""
        s = self.settings(chosen, ctx.seed)
        if trial is None and number is not None and (kept := self._kept(base, chosen, number, ctx.seed)):
            return kept
        report, history = None, []
        if trial is not None:
            def report(epoch: int, accuracy: float) -> None:
                history.append(round(accuracy, 6))
                if self.pruner is not None and _optuna.report_and_prune(trial, self.pruner, history, HISTORY, "beta"):
                    reason = (f"pruned by the {self.spec.setup.pruner} pruner: validation accuracy {accuracy:.4f} "
                              f"after epoch {epoch} is below trials penalised at least as hard")
                    trial.set_user_attr("pruned_reason", reason)
                    raise optuna.TrialPruned(reason)
        result = learn(base, ctx.data, s, ctx.device, report)
        if trial is not None:
            if self.pruner is None:  # the pruner has written it after each epoch
                trial.set_user_attr(HISTORY, history)
            trial.set_user_attr("learned", {"train_s": round(result.train_s, 3), "epochs": len(result.history),
                                            "pruned_weights": result.pruned_share})
            self._store(result.graph, result.passes, chosen, trial.number, ctx.seed)
        return result.graph, result.passes


def check_learned(spec: LearnedSpec, sampler: str, exhaustive: bool) -> None:
    if exhaustive and any(isinstance(c, Range) for c in LearnedSpace(spec).params.values()):
        raise BitsmithError(f"sampler {sampler!r} visits every point, and [search.search_space.hyper] has "
                            "ranges; give lists of values or use tpe, random or nsgaii")
