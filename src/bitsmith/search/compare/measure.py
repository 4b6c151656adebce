"""Turning sampler runs into figures: best-so-far or hypervolume curves, trials to the optimum, summaries."""

from __future__ import annotations

import math

import numpy as np

from bitsmith.search import _optuna
from bitsmith.search.compare.truth import feasible

REF_MARGIN = 0.1  # hypervolume reference point: 10% of the true front's range beyond its worst value


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

    def __init__(self, reference: np.ndarray, signs: list[int], tolerance: float, box: np.ndarray | None = None):
        """``box``: points whose ideal and nadir normalise the objectives instead of the reference front's
        (strategies of different spaces: the union of their own fronts)."""
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
            bounds = self.front if box is None else np.concatenate([self.front, box])
            self.ideal, nadir = bounds.min(axis=0), bounds.max(axis=0)
            self.range = np.where(nadir > self.ideal, nadir - self.ideal, 1.0)
            self.ref = np.full(len(signs), 1.0 + REF_MARGIN)
            self.front_set = {tuple(p) for p in self.front}
            self.best_hv = self.hv(self.front)

    def hv(self, pts: np.ndarray) -> float:
        if len(pts) == 0:
            return 0.0
        norm = np.minimum((pts - self.ideal) / self.range, self.ref)  # beyond the reference adds nothing
        return float(_optuna.compute_hypervolume(norm, self.ref))

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


def summarise(names, histories, measure, n_trials, at_opt, at_tol):
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
