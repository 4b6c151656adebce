"""The plots a search writes: ``history.png`` (best so far, or the hypervolume of the front found so far)
and ``pareto.png`` (every trial's first two metrics, the chosen designs labelled)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna

from bitsmith.search.study import is_feasible
from bitsmith.search.table import metric_label

REF_MARGIN = 0.1  # hypervolume reference point: 10% of the final front's range beyond its worst value


def _feasible_done(trials) -> list[optuna.trial.FrozenTrial]:
    return sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and is_feasible(t)
                   and all(math.isfinite(v) for v in t.values)), key=lambda t: t.number)


def _losses(done, directions: list[str]):
    import numpy as np

    signs = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    return np.array([t.values for t in done], dtype=float).reshape(-1, len(directions)) * -signs


def _on_front(loss) -> list[bool]:
    """Which rows of a loss array no other row dominates."""
    import numpy as np

    return [not np.any(np.all(loss <= p, axis=1) & np.any(loss < p, axis=1)) for p in loss]


def hypervolume_history(trials, directions: list[str]) -> tuple[list[int], list[float]]:
    """Trial numbers of the feasible complete trials, and the hypervolume of the front found up to each.

    Objectives become losses (maximised ones negated) scaled so that the final
    front spans [0, 1] in each (its ideal and nadir; an objective constant over
    it is scaled by 1); the reference point is ``1 + REF_MARGIN`` in each, and
    designs beyond it add nothing. The last value is the final front's.
    """
    import numpy as np

    from bitsmith.search._optuna import compute_hypervolume

    done = _feasible_done(trials)
    if not done:
        return [], []
    loss = _losses(done, directions)
    front = loss[_on_front(loss)]
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    ref = np.full(len(directions), 1.0 + REF_MARGIN)
    norm = np.minimum((loss - ideal) / span, ref)
    hv, current = [], 0.0
    for i in range(len(done)):
        # Only a point that no earlier one weakly dominates can change the front.
        if i == 0 or not np.any(np.all(norm[:i] <= norm[i], axis=1)):
            # A superset's volume is never smaller: max() keeps float rounding from showing as a dip.
            current = max(current, float(compute_hypervolume(norm[: i + 1], ref)))
        hv.append(current)
    return [t.number for t in done], hv


def plot_history(trials, directions: list[str], names: list[str], path: Path) -> None:
    """One objective: each trial's value and the best so far. Several: the hypervolume of the front found
    so far, then each objective per trial with the final front's designs marked."""
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global state touched

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    ok = _feasible_done(done)
    bad = [t for t in done if not is_feasible(t)]
    multi = len(directions) > 1
    front: set[int] = set()  # as best_trials chooses: the first trial of each point on the front
    seen: set[tuple] = set()
    for t, on in zip(ok, _on_front(_losses(ok, directions)) if multi else []):
        if on and tuple(t.values) not in seen:
            seen.add(tuple(t.values))
            front.add(t.number)
    n_panels = len(directions) + multi
    fig = Figure(figsize=(7, max(2.3 * n_panels + 0.5, 3.4)))
    axes = list(fig.subplots(n_panels, 1, squeeze=False, sharex=True)[:, 0])
    if multi:
        ax = axes.pop(0)
        xs, hv = hypervolume_history(done, directions)
        if xs:
            ax.step(xs, hv, where="post", color="C3", label="front found so far")
            up = [i for i in range(len(xs)) if i == 0 or hv[i] > hv[i - 1]]
            ax.plot([xs[i] for i in up], [hv[i] for i in up], "o", color="C3", ms=4,
                    label="trial that improved it")
            ax.legend(loc="lower right", fontsize=8)
            ax.set_ylim(0, max(hv) * 1.12 or 1)
        ax.set_title(f"hypervolume of the feasible front (higher is better): {hv[-1] if hv else 0:.3f} at the end, "
                     f"{len(front)} designs on it\nobjectives scaled to the final front's range [0, 1], reference "
                     f"point {1 + REF_MARGIN:g} in each", fontsize=9)
        ax.set_ylabel("hypervolume\n(normalised)", fontsize=9)
    for i, (ax, direction) in enumerate(zip(axes, directions)):
        ax.scatter([t.number for t in ok], [t.values[i] for t in ok], s=12, alpha=0.6, label="trial")
        if bad:
            ax.scatter([t.number for t in bad], [t.values[i] for t in bad], s=14, c="C7", marker="x",
                       label="infeasible")
        if multi:
            on = [t for t in ok if t.number in front]
            ax.scatter([t.number for t in on], [t.values[i] for t in on], s=44, facecolors="none",
                       edgecolors="C3", label="on the final front")
        elif ok:
            best, line = None, []
            for t in ok:
                y = t.values[0]
                best = y if best is None else (max(best, y) if direction == "maximize" else min(best, y))
                line.append(best)
            ax.step([t.number for t in ok], line, where="post", color="C3",
                    label=f"best so far ({'higher' if direction == 'maximize' else 'lower'} is better)")
        ax.set_ylabel(metric_label(names[i]).replace(" (", "\n(", 1), fontsize=9)
        if i == 0:  # the same markers in every panel: one legend
            ax.legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("trial")
    fig.suptitle("optimisation history")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_pareto(trials, best, x: str, y: str, path: Path) -> None:
    """The first two metrics of every complete trial; the chosen designs joined and labelled by trial."""
    import numpy as np
    from matplotlib.figure import Figure

    def value(t, name):
        m = {**(t.user_attrs.get("software_metrics") or {}), **(t.user_attrs.get("hardware_metrics") or {})}
        return m.get(name)

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    cloud = []
    for feasible, style in ((True, {"c": "C0", "label": "trial"}),
                            (False, {"c": "C7", "marker": "x", "label": "infeasible"})):
        pts = [(value(t, x), value(t, y)) for t in done if is_feasible(t) == feasible]
        pts = [p for p in pts if None not in p]
        if pts:
            ax.scatter(*zip(*pts), s=14, alpha=0.5, **style)
            cloud += pts
    front = sorted((value(t, x), value(t, y), t.number) for t in best if None not in (value(t, x), value(t, y)))
    if front:
        fx, fy = np.array([p[0] for p in front], float), np.array([p[1] for p in front], float)
        label = "best design" if len(front) == 1 else "Pareto front (the chosen designs)"
        ax.plot(fx, fy, "o-", color="C3", ms=6, lw=1.2, label=label)
        # Labels go on the front's better side, where no trial is: the directions under which the
        # front dominates the most trials (the plot is not told them); ties: less x, more y.
        c = np.array(cloud, float).reshape(-1, 2)

        def covered(d):
            return sum(bool(np.any((d[0] * (p[0] - fx) <= 0) & (d[1] * (p[1] - fy) <= 0))) for p in c)

        sx, sy = max([(-1, 1), (1, 1), (-1, -1), (1, -1)], key=covered)
        for px, py, n in front:
            ax.annotate(f"#{n}", (px, py), xytext=(5 * sx, 4 * sy), textcoords="offset points", fontsize=8,
                        color="C3", ha="left" if sx > 0 else "right", va="bottom" if sy > 0 else "top")
    ax.margins(0.08)
    ax.set_xlabel(metric_label(x))
    ax.set_ylabel(metric_label(y))
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{len(done)} trials; {len(front)} chosen design{'s' * (len(front) != 1)}, labelled #trial",
                 fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
