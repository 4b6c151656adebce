"""`bitsmith compare`: how sample-efficient each sampler is on one search's space.

Every point of a small enough space is evaluated once (the ground truth) and
kept in a table beside the project, keyed by the search's record digest; the
sampler runs (in-memory Optuna studies, one per sampler and seed) only look
points up. See docs/compare.md for what is computed.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError, CandidateError, unknown_name

MAX_TRUTH = 4096  # at most this many points are evaluated for the ground truth
MAX_SEEDS = 1000
MAX_COMPARE_TRIALS = 100_000
NOISY_RUNNERS = ("basic_train",)  # results depend on training: evaluated per trial, never looked up
REF_MARGIN = 0.1  # hypervolume reference point: 10% of the true front's range beyond its worst value


def parse_samplers(text: str) -> list[str]:
    from bitsmith.search.samplers import ALIASES, SAMPLERS, public_names

    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise BitsmithError("--samplers: give one or more sampler names separated by commas, e.g. tpe,random")
    out = []
    for n in names:
        if n not in SAMPLERS:
            raise unknown_name("sampler", n, public_names(), "in --samplers")
        n = ALIASES.get(n, n)
        if n not in out:
            out.append(n)
    return out


def check_numbers(seeds: int, trials: int | None, tolerance: float) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise BitsmithError(f"--seeds {seeds}: use 1 to {MAX_SEEDS} seeds per sampler")
    if trials is not None and not 1 <= trials <= MAX_COMPARE_TRIALS:
        raise BitsmithError(f"--trials {trials}: use 1 to {MAX_COMPARE_TRIALS:,} trials per run")
    if not (math.isfinite(tolerance) and 0 <= tolerance < 1):
        raise BitsmithError(f"--tolerance {tolerance}: a fraction of the objective's range, 0 <= t < 1 "
                            "(e.g. 0.01)")


def truth_key(search) -> str:
    """The record digest without what only the sampler run uses (sampler, seed)."""
    from bitsmith.search.job import record

    rec = record(search)
    rec.pop("sampler", None)
    rec.pop("seed", None)
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def point_key(chosen: dict[str, Any]) -> str:
    return json.dumps(chosen, sort_keys=True, default=str)


class Table:
    """point -> what the search's objective would record for it (values, constraint violations)."""

    def __init__(self, search, path: Path | None):
        self.search, self.path = search, path
        self.rows: dict[str, dict[str, Any]] = {}
        self.evaluations, self.eval_seconds = 0, 0.0
        self.reused = False
        if path is not None and path.is_file():
            self.rows = json.loads(path.read_text())["points"]
            self.reused = True
        self.dirty = False

    def evaluate(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The search's own measurement of one point (a CandidateError: recorded as pruned)."""
        from bitsmith.search.study import build_candidate

        obj = self.search.objective
        t0 = time.perf_counter()
        try:
            graph, _ = build_candidate(obj.base, obj.space, chosen)
            _, sw, hw = obj.measure(graph)
        except CandidateError as e:
            row = {"values": None, "violations": [], "metrics": {}, "pruned": str(e)}
        else:
            metrics = {**sw, **hw}
            row = {"values": obj.objective_values(obj.scale(metrics)),
                   "violations": [c.violation(metrics[c.metric]) for c in obj.cfg.constraints],
                   "metrics": metrics, "pruned": None}
        self.evaluations += 1
        self.eval_seconds += time.perf_counter() - t0
        return row

    def get(self, chosen: dict[str, Any], noisy: bool) -> dict[str, Any]:
        if noisy:
            return self.evaluate(chosen)
        key = point_key(chosen)
        if key not in self.rows:
            self.rows[key] = self.evaluate(chosen)
            self.dirty = True
        return self.rows[key]

    def fill(self, params: dict[str, list[Any]]) -> None:
        names = list(params)
        for combo in itertools.product(*(params[n] for n in names)):
            self.get(dict(zip(names, combo)), noisy=False)

    def save(self, complete: bool) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"complete": complete, "points": self.rows}, default=str))
        tmp.replace(self.path)  # a stop mid-write never leaves a torn table


def feasible(row: dict[str, Any]) -> bool:
    return row["values"] is not None and all(v <= 0 for v in row["violations"])


def run_one(table: Table, params, directions, constraints, name: str, seed: int, n_trials: int,
            noisy: bool) -> list[tuple[str, dict[str, Any]]]:
    """One in-memory study; the (point, row) of every trial in order."""
    import optuna

    from bitsmith.search.samplers import make_sampler

    study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed, params))
    history: list[tuple[str, dict[str, Any]]] = []

    def objective(trial):
        chosen = {n: trial.suggest_categorical(n, c) for n, c in params.items()}
        row = table.get(chosen, noisy)
        history.append((point_key(chosen), row))
        if row["values"] is None:
            raise optuna.TrialPruned(row["pruned"])
        for c, v in zip(constraints, row["violations"]):
            trial.set_constraint(c.metric, v)  # as the search does: constraint-aware samplers read it
        return row["values"]

    study.optimize(objective, n_trials=n_trials, gc_after_trial=False)  # brute force / grid may stop early
    return history


# -- measures -------------------------------------------------------------------------------------

def at_least(value, level: float, sign: int):
    """Whether curve values are at least as good as ``level`` (a hair of float slack)."""
    with np.errstate(invalid="ignore"):
        return sign * np.asarray(value) >= sign * level - 1e-9 * max(1.0, abs(level))


def losses(rows, signs) -> np.ndarray:
    """Feasible rows' objective values as losses (minimised), one row per design."""
    pts = [[-s * v for s, v in zip(signs, r["values"])] for r in rows if feasible(r)]
    return np.array(pts, dtype=float).reshape(-1, len(signs))


def pareto(pts: np.ndarray) -> np.ndarray:
    pts = np.unique(pts, axis=0)
    keep = [i for i, p in enumerate(pts) if not any(np.all(q <= p) and np.any(q < p) for q in pts)]
    return pts[keep]


class Measure:
    """Turns a run's history into a curve (one value per trial, higher is better) and 'reached' flags."""

    def __init__(self, reference: np.ndarray, signs: list[int], tolerance: float):
        self.signs, self.tol = signs, tolerance
        self.single = len(signs) == 1
        self.sign = signs[0] if self.single else 1  # curves are in the objective's own units
        if self.single:
            self.opt = float(reference.min())
            self.worst = float(reference.max())
            self.span = self.worst - self.opt
        else:
            # Normalised by the true front's own ideal and nadir: the reference point sits just beyond the
            # front, so far-off designs (2-bit, chance accuracy) do not swamp the differences near it.
            self.front = pareto(reference)
            self.ideal, nadir = self.front.min(axis=0), self.front.max(axis=0)
            self.range = np.where(nadir > self.ideal, nadir - self.ideal, 1.0)
            self.ref = np.full(len(signs), 1.0 + REF_MARGIN)
            self.front_set = {tuple(p) for p in self.front}
            self.best_hv = self.hv(self.front)

    def hv(self, pts: np.ndarray) -> float:
        from optuna._hypervolume import compute_hypervolume

        if len(pts) == 0:
            return 0.0
        norm = np.minimum((pts - self.ideal) / self.range, self.ref)  # beyond the reference adds nothing
        return float(compute_hypervolume(norm, self.ref))

    def curve(self, history) -> tuple[np.ndarray, np.ndarray, float]:
        """Per trial: value, distinct designs so far; and the share of the true front found at the end."""
        n = len(history)
        value, distinct = np.full(n, np.nan), np.zeros(n, dtype=int)
        seen: set[str] = set()
        found: set[tuple] = set()
        front: list[np.ndarray] = []  # the found front, kept incrementally (hypervolume only when it changes)
        current = np.nan
        for i, (key, row) in enumerate(history):
            seen.add(key)
            distinct[i] = len(seen)
            if feasible(row):
                loss = np.array([-s * v for s, v in zip(self.signs, row["values"])])
                if self.single:
                    current = -loss[0] if math.isnan(current) else max(current, -loss[0])
                else:
                    found.add(tuple(loss))
                    if not any(np.all(q <= loss) for q in front):
                        front = [q for q in front if not np.all(loss <= q)] + [loss]
                        current = self.hv(np.array(front)) / self.best_hv if self.best_hv > 0 else 1.0
            value[i] = self.sign * current
        share = 1.0
        if not self.single:
            got = found
            share = len(got & self.front_set) / len(self.front_set) if self.front_set else 1.0
        return value, distinct, share

    def target(self) -> tuple[float, float]:
        """Curve values meaning 'at the optimum' and 'within the tolerance of it'."""
        if self.single:
            return -self.sign * self.opt, -self.sign * (self.opt + self.tol * self.span)
        return 1.0, 1.0 - self.tol

    def reached_at(self, value: np.ndarray, level: float) -> float:
        hit = np.nonzero(at_least(value, level, self.sign))[0]
        return float(hit[0] + 1) if len(hit) else math.inf


# -- the command ----------------------------------------------------------------------------------

def run_compare(settings: Settings, samplers: str, seeds: int, trials: int | None, tolerance: float = 0.01,
                console=None) -> dict[str, Any]:
    from bitsmith.jobs import make_console
    from bitsmith.search.job import optuna_quiet

    names = parse_samplers(samplers)
    check_numbers(seeds, trials, tolerance)
    console = console or make_console()
    with optuna_quiet():
        return _compare(settings, names, seeds, trials, tolerance, console)


def _compare(settings, names, seeds, trials, tolerance, console) -> dict[str, Any]:
    from bitsmith.search.job import prepare_search, space_size
    from bitsmith.search.samplers import SAMPLERS

    t_start = time.perf_counter()
    # The config's own sampler plays no part; random takes any number of objectives.
    search = prepare_search(settings, {"sampler": "random"}, settings.notes)
    cfg, params = search.cfg, search.objective.params
    n_trials = trials or cfg.setup.n_trials
    directions = cfg.directions
    if not params:
        raise BitsmithError("this space has nothing to search: no parameter has more than one choice; give some "
                            "key of [search.search_space.seed] a list of two or more values")
    for n in names:
        if len(directions) > 1 and not SAMPLERS[n].multi_objective:
            raise BitsmithError(f"sampler {n!r} optimizes one objective, but this search has {len(directions)}; "
                                "drop it from --samplers or set sum_scaled_metrics = true")
    size = space_size(params)
    noisy = [r.name for r in cfg.runners if r.name in NOISY_RUNNERS]
    exhaustive = [n for n in names if SAMPLERS[n].exhaustive]
    truth = size <= MAX_TRUTH and not noisy
    if not truth and exhaustive:
        why = (f"{size:,} points (ground truth is kept for at most {MAX_TRUTH:,})" if size > MAX_TRUTH
               else f"runner {noisy[0]} (its results depend on training, so there is no ground truth)")
        raise BitsmithError(f"--samplers {','.join(exhaustive)} visit every point, but this space has {why}; "
                            "compare tpe, random, nsgaii, qmc or gp instead, or give fewer choices")
    out = settings.output_dir / "compare"
    key = truth_key(search)
    table = Table(search, None if noisy else out / f"truth_{key}.json")
    signs = [1 if d == "maximize" else -1 for d in directions]
    console.print(f"compare: model={settings.model} dataset={settings.dataset} space={size:,} points "
                  f"samplers={','.join(names)} seeds={seeds} trials={n_trials} tolerance={tolerance:g}",
                  highlight=False)
    if truth:
        before = len(table.rows)
        table.fill(params)
        what = "reused" if table.evaluations == 0 else f"evaluated {table.evaluations} new point(s) ({before} reused)"
        console.print(f"ground truth: {what}, {size:,} points, table {table.path}", highlight=False)
    elif noisy:
        console.print(f"ground truth: none; runner {noisy[0]} depends on training, so every trial is evaluated "
                      "afresh; compared against the best any run found", highlight=False)
    else:
        console.print(f"ground truth: none; the space has {size:,} points (more than {MAX_TRUTH:,}); compared "
                      "against the best any run found (points evaluated are kept for reuse)", highlight=False)

    t_sample = time.perf_counter()
    eval_s_before = table.eval_seconds
    histories = {n: [run_one(table, params, directions, cfg.constraints, n, cfg.seed + s, n_trials, bool(noisy))
                     for s in range(seeds)] for n in names}
    sampling_s = time.perf_counter() - t_sample - (table.eval_seconds - eval_s_before)
    table.save(complete=truth)

    if truth:
        reference = losses(table.rows.values(), signs)
    else:
        reference = losses([r for hs in histories.values() for h in hs for _, r in h], signs)
    if len(reference) == 0:
        raise BitsmithError("no feasible design anywhere: every point evaluated was pruned or breaks a constraint; "
                            "nothing to compare against")
    measure = Measure(reference, signs, tolerance)
    at_opt, at_tol = measure.target()
    summary, curves = _summarise(names, histories, measure, n_trials, at_opt, at_tol)
    kind = "best" if len(signs) == 1 else "hypervolume"
    label = ("weighted sum" if cfg.setup.sum_scaled_metrics else cfg.metrics[0].name) if kind == "best" \
        else "hypervolume / true front's" if truth else "hypervolume / best found"
    out.mkdir(parents=True, exist_ok=True)
    _write_curves(curves, out / "curves.csv")
    png = out / f"compare_{kind}.png"
    optimum_text = f"{at_opt:.6g}" if kind == "best" else "1 (the whole front)"
    _plot(curves, summary, n_trials, at_opt, at_tol, label, kind, truth, tolerance, measure.sign, png)
    result = {"space_points": size, "ground_truth": truth, "key": key, "samplers": summary, "optimum": at_opt,
              "directions": directions, "tolerance": tolerance, "trials": n_trials, "seeds": seeds,
              "reference": (None if kind == "best" else
                            {"ideal": measure.ideal.tolist(), "range": measure.range.tolist(),
                             "point": measure.ref.tolist(), "true_front": len(measure.front)})}
    (out / "summary.json").write_text(json.dumps(_json_safe(result), indent=1, default=str))
    _print_table(console, summary, kind, n_trials, seeds, optimum_text, truth, tolerance)
    total = time.perf_counter() - t_start
    console.print(f"time: total {total:.1f}s, evaluating {table.eval_seconds:.1f}s ({table.evaluations} evaluations), "
                  f"sampling {sampling_s:.1f}s\nwritten to {out}: curves.csv, summary.json, {png.name}"
                  + (f", {table.path.name}" if table.path and truth else ""), highlight=False)
    return {**result, "out": str(out), "png": str(png), "evaluations": table.evaluations,
            "reused": table.evaluations == 0 and truth}


def _json_safe(value):
    """Strict JSON: 'not reached' (inf) and 'no value' (nan) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _summarise(names, histories, measure, n_trials, at_opt, at_tol):
    summary, curves = {}, {}
    for n in names:
        vals, dist, to_opt, to_tol, shares, ran = [], [], [], [], [], []
        for h in histories[n]:
            value, distinct, share = measure.curve(h)
            ran.append(len(h))
            # A run that stopped early (brute force: space exhausted) keeps its last value.
            pad = n_trials - len(h)
            value = np.concatenate([value, np.full(pad, value[-1] if len(value) else np.nan)])
            distinct = np.concatenate([distinct, np.full(pad, distinct[-1] if len(distinct) else 0)])
            vals.append(value)
            dist.append(distinct)
            to_opt.append(measure.reached_at(value, at_opt))
            to_tol.append(measure.reached_at(value, at_tol))
            shares.append(share)
        v = np.array(vals)
        final = v[:, -1]
        summary[n] = {
            "trials": _stats(ran), "distinct": _stats([d[-1] for d in dist]),
            "final": _stats(final), "to_optimum": _stats(to_opt), "to_tolerance": _stats(to_tol),
            "reached": sum(math.isfinite(x) for x in to_opt) / len(to_opt),
            "reached_tolerance": sum(math.isfinite(x) for x in to_tol) / len(to_tol),
            "front_share": _stats(shares) if not measure.single else None,
        }
        curves[n] = (v, np.array(dist))
    return summary, curves


def _stats(xs) -> dict[str, float]:
    a = np.array(xs, dtype=float)
    if np.all(np.isnan(a)):
        return {"median": math.nan, "q1": math.nan, "q3": math.nan, "min": math.nan, "max": math.nan}
    a = np.sort(a[~np.isnan(a)])

    def quantile(q: float) -> float:
        # Linear, except that a quantile touching inf (a seed that never got there) is inf: 'not reached'.
        pos = q * (len(a) - 1)
        lo, hi = a[math.floor(pos)], a[math.ceil(pos)]
        return math.inf if math.isinf(hi) else float(lo + (hi - lo) * (pos - math.floor(pos)))

    return {"median": quantile(0.5), "q1": quantile(0.25), "q3": quantile(0.75), "min": float(a[0]),
            "max": float(a[-1])}


def _fmt(x: float, n_trials: int) -> str:
    if math.isinf(x):
        return f">{n_trials}"
    if math.isnan(x):
        return "-"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.4g}"


def _print_table(console, summary, kind, n_trials, seeds, optimum_text, truth, tolerance) -> None:
    from rich.table import Table as Rich

    ref = "ground truth" if truth else "best any run found"
    title = (f"Samplers over {seeds} seed(s), {n_trials} trials each; optimum ({ref}): {optimum_text}; "
             f"tolerance {tolerance:g}.\nMedians over seeds; 'to optimum': trials until the first design at it "
             "(>N: not within the budget); 'designs': distinct points evaluated")
    t = Rich(title=title, title_justify="left")
    cols = ["sampler", "trials", "designs [range]", ("best" if kind == "best" else "HV ratio") + " [IQR]",
            "to optimum [range]", "reached", "to tolerance [range]", "reached tol."]
    if kind != "best":
        cols.append("front found")
    for c in cols:
        t.add_column(c, no_wrap=True)
    for n, s in summary.items():
        f = lambda d: _fmt(d["median"], n_trials)  # noqa: E731
        rng = lambda d: f"{f(d)} [{_fmt(d['min'], n_trials)}, {_fmt(d['max'], n_trials)}]"  # noqa: E731
        row = [n, f"{f(s['trials'])}", rng(s["distinct"]),
               f"{s['final']['median']:.4g} [{s['final']['q1']:.4g}, {s['final']['q3']:.4g}]",
               rng(s["to_optimum"]), f"{s['reached']:.0%}", rng(s["to_tolerance"]), f"{s['reached_tolerance']:.0%}"]
        if kind != "best":
            row.append(f"{s['front_share']['median']:.0%} [{s['front_share']['min']:.0%}, "
                       f"{s['front_share']['max']:.0%}]")
        t.add_row(*row)
    console.print(t)


def _write_curves(curves, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sampler", "seed", "trial", "value", "distinct_designs"])
        for n, (v, d) in curves.items():
            for s in range(v.shape[0]):
                for i in range(v.shape[1]):
                    w.writerow([n, s, i + 1, "" if np.isnan(v[s, i]) else repr(float(v[s, i])), int(d[s, i])])


STYLES = ["-", (0, (6, 2)), (0, (2, 1.5)), (0, (6, 2, 1.5, 2)), (0, (1, 1))]


def _plot(curves, summary, n_trials, at_opt, at_tol, label, kind, truth, tolerance, sign, path: Path) -> None:
    import warnings

    from matplotlib.figure import Figure  # no pyplot: no global state

    fig = Figure(figsize=(11, 4.3))
    left, right = fig.subplots(1, 2)
    x = np.arange(1, n_trials + 1)
    worst = []
    for i, n in enumerate(summary):
        v = curves[n][0]
        with warnings.catch_warnings():  # all-NaN columns: no feasible design yet in any seed
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(v, axis=0)
            lo, hi = np.nanquantile(v, 0.25, axis=0), np.nanquantile(v, 0.75, axis=0)
        # Samplers can coincide (NSGA-II's first generation is random sampling): styles keep each visible.
        style = dict(color=f"C{i}", lw=max(3.2 - 0.6 * i, 1.2), ls=STYLES[i % len(STYLES)])
        left.step(x, med, where="post", label=n, **style)
        left.fill_between(x, lo, hi, step="post", color=f"C{i}", alpha=0.2)
        # The y range starts from where the medians are after the first tenth of the budget,
        # so the early, poor trials do not squash the part where samplers differ.
        tail = med[max(n_trials // 10, 1) - 1:]
        if np.any(~np.isnan(tail)):
            worst.append(np.nanmin(sign * tail))
        s = summary[n]
        right.step(x, 100 * np.mean(at_least(v, at_opt, sign), axis=0), where="post", **style,
                   label=f"{n}: {s['reached']:.0%} of seeds, median {_fmt(s['to_optimum']['median'], n_trials)} trials")
    left.axhline(at_opt, color="k", ls="--", lw=1, label="optimum (ground truth)" if truth else "best any run found")
    if tolerance > 0:
        left.axhline(at_tol, color="k", ls=":", lw=1, label=f"within tolerance {tolerance:g}")
    if worst:
        low = min(min(worst), sign * at_tol)
        span = (sign * at_opt - low) or 1.0
        lims = sorted((sign * (low - 0.1 * span), sign * (sign * at_opt + 0.05 * span)))
        left.set_ylim(*lims)
    left.set_xlabel("trial")
    left.set_ylabel(f"best so far: {label}" if kind == "best" else label)
    left.set_title("median over seeds; band: interquartile range", fontsize=10)
    left.legend(loc="lower right" if sign > 0 else "upper right", fontsize=8)
    right.set_xlabel("trial")
    right.set_ylabel("% of seeds at the optimum" if kind == "best" else "% of seeds with the whole front")
    right.set_ylim(-3, 103)
    right.set_title("share of seeds that reached " + ("the optimum" if kind == "best" else "the whole front"),
                    fontsize=10)
    right.legend(loc="upper left", fontsize=8)
    better = "higher" if kind != "best" or sign > 0 else "lower"
    fig.suptitle(f"sampler comparison: {'best so far' if kind == 'best' else 'hypervolume'} ({better} is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
