"""The search's and compare's plots: what they draw (read back from the figure) and that the files are written."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from matplotlib.figure import Figure

from bitsmith.search.compare import output
from bitsmith.search.plots import hypervolume_history, plot_history, plot_pareto
from bitsmith.search.study import best_trials

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """Every figure saved while the test runs, kept to be read back (the file is still written)."""
    saved = []
    real = Figure.savefig

    def keep(self, path, **kw):
        saved.append(self)
        return real(self, path, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def make_study(directions, rows):
    """rows: (values, infeasible); accuracy and average bit width as the search stores them."""
    study = optuna.create_study(directions=directions)
    for values, infeasible in rows:
        attrs = {"software_metrics": {"accuracy": values[0]}, "hardware_metrics": {"average_bitwidth": values[-1]},
                 "scaled_metrics": {"accuracy": values[0], "average_bitwidth": values[-1]}}
        if infeasible:
            attrs["constraints"] = [0.5]
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


def area_2d(points, ref):
    """The area two minimised objectives dominate up to ``ref``, by a sweep (independent of Optuna's)."""
    area, lowest = 0.0, ref[1]
    for x, y in sorted(points):
        if y < lowest:
            area += (ref[0] - x) * (lowest - y)
            lowest = y
    return area


# accuracy (max), bits (min). Normalised by the final front (0.9..0.5, 2..8): A (0, 1), B (1, 0), C (0.5, 1/3).
ROWS = [([0.9, 8.0], False),   # A
        ([0.5, 2.0], False),   # B
        ([0.95, 1.0], True),   # infeasible: better than everything, never counted
        ([0.6, 6.0], False),   # dominated by C (found later): adds what it covers until then
        ([0.7, 4.0], False),   # C
        ([0.4, 9.0], False)]   # dominated: nothing


def test_hypervolume_history_by_hand():
    xs, hv = hypervolume_history(make_study(["maximize", "minimize"], ROWS).trials, ["maximize", "minimize"])
    assert xs == [0, 1, 3, 4, 5]
    d = ((0.9 - 0.6) / 0.4, (6 - 2) / 6)  # the design C later dominates, at (0.75, 2/3)
    expected = [1.1 * 0.1, 0.11 + 0.11 - 0.01, area_2d([(0, 1), (1, 0), d], (1.1, 1.1)),
                0.5 * 0.1 + 0.5 * (1.1 - 1 / 3) + 0.1 * 1.1, 0.5 * 0.1 + 0.5 * (1.1 - 1 / 3) + 0.1 * 1.1]
    assert hv == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_history_rises_to_the_final_fronts(seed):
    rng = np.random.default_rng(seed)
    directions = ["maximize", "minimize", "minimize"][: 2 + seed % 2]
    rows = [(list(rng.uniform(0, 10, len(directions))), bool(rng.random() < 0.2)) for _ in range(40)]
    study = make_study(directions, rows)
    xs, hv = hypervolume_history(study.trials, directions)
    assert len(xs) == sum(not bad for _, bad in rows)
    assert all(b >= a for a, b in zip(hv, hv[1:]))
    # The last value is the final front's own hypervolume, in the same normalisation.
    signs = np.array([1 if d == "maximize" else -1 for d in directions])
    front = np.array([t.values for t in best_trials(study, directions)]) * -signs
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    norm = (front - ideal) / (nadir - ideal)
    if len(directions) == 2:
        assert hv[-1] == pytest.approx(area_2d([tuple(p) for p in norm], (1.1, 1.1)))
    else:
        from bitsmith.search._optuna import compute_hypervolume
        assert hv[-1] == pytest.approx(compute_hypervolume(norm, np.full(3, 1.1)))
    assert 0 < hv[-1] <= 1.1 ** len(directions)


def test_history_draws_the_hypervolume_for_several_objectives(tmp_path, figures):
    study = make_study(["maximize", "minimize"], ROWS)
    plot_history(study.trials, ["maximize", "minimize"], ["accuracy", "average_bitwidth"], tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG
    hv_ax, acc_ax, bits_ax = figures[-1].axes
    xs, hv = hypervolume_history(study.trials, ["maximize", "minimize"])
    line = hv_ax.lines[0]
    assert list(line.get_xdata()) == xs and list(line.get_ydata()) == pytest.approx(hv)
    assert "reference point 1.1" in hv_ax.get_title() and "hypervolume" in hv_ax.get_ylabel()
    assert "(bits)" in bits_ax.get_ylabel() and "validation" in acc_ax.get_ylabel()
    # No "best so far" line per objective (a front has no single best bit width): points only.
    assert not bits_ax.lines and not acc_ax.lines
    # The final front's designs are ringed: A, B, C.
    ringed = acc_ax.collections[-1].get_offsets()
    assert sorted(map(tuple, ringed)) == [(0, 0.9), (1, 0.5), (4, 0.7)]


def test_history_of_one_objective_is_the_best_feasible_so_far(tmp_path, figures):
    study = make_study(["maximize"], [([0.5], False), ([0.9], True), ([0.7], False), ([0.6], False)])
    plot_history(study.trials, ["maximize"], ["accuracy"], tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    (ax,) = figures[-1].axes
    assert list(ax.lines[0].get_ydata()) == [0.5, 0.7, 0.7]  # the infeasible 0.9 is never best


def test_pareto_labels_each_front_design_with_its_trial(tmp_path, figures):
    study = make_study(["maximize", "minimize"], ROWS)
    best = best_trials(study, ["maximize", "minimize"])
    plot_pareto(study.trials, best, "average_bitwidth", "accuracy", tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG
    (ax,) = figures[-1].axes
    labels = {t.get_text() for t in ax.texts}
    assert labels == {f"#{t.number}" for t in best} == {"#0", "#1", "#4"}
    assert ax.get_xlabel() == "average bit width (bits)" and ax.get_ylabel() == "accuracy (validation)"
    # Labels sit on the front's better side (fewer bits: left; more accuracy: up), away from the other trials.
    assert all(t.get_position()[0] < 0 and t.get_position()[1] > 0 for t in ax.texts)


def test_compare_shows_the_gap_to_the_front_on_a_log_axis(tmp_path, figures):
    n = 5
    # Hypervolume ratios per seed and trial: "a" reaches the whole front, "b" stays 1e-3 short.
    a = np.array([[0.5, 0.9, 0.99, 1.0, 1.0], [0.4, 0.9, 0.999, 1.0, 1.0], [0.5, 0.95, 1.0, 1.0, 1.0]])
    b = np.array([[0.5, 0.9, 0.99, 0.999, 0.999]] * 3)
    curves = {"a": (a, np.ones_like(a)), "b": (b, np.ones_like(b))}
    summary = {k: {"reached": r, "to_optimum": {"median": m}} for k, r, m in (("a", 1.0, 4), ("b", 0.0, math.inf))}
    output.plot(curves, summary, n, 1.0, 0.99, "hypervolume / true front's", "hypervolume", True, 0.01, 1,
                tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    left = figures[-1].axes[0]
    assert left.get_yscale() == "log" and "1 - hypervolume ratio" in left.get_ylabel()
    floor = output.gap_floor([1 - np.median(a, axis=0), 1 - np.median(b, axis=0)], 0.01)
    assert floor < 1e-3
    med_a, med_b = (np.asarray(line.get_ydata()) for line in left.lines[:2])
    assert med_b[-1] == pytest.approx(1e-3) and med_a[-1] == floor  # a gap of 0 drawn at the floor
    assert med_a[0] == pytest.approx(0.5) and med_a[2] == pytest.approx(1e-3)
    assert any(line.get_ydata()[0] == floor for line in left.lines[2:])  # the "gap 0" line


def test_compare_one_objective_keeps_best_so_far(tmp_path, figures):
    v = np.array([[0.5, 0.7, 0.9], [0.6, 0.6, 0.8]])
    summary = {"tpe": {"reached": 0.5, "to_optimum": {"median": 3.0}}}
    output.plot({"tpe": (v, np.ones_like(v))}, summary, 3, 0.9, 0.89, "accuracy", "best", True, 0.01, 1,
                tmp_path / "c.png")
    left = figures[-1].axes[0]
    assert left.get_yscale() == "linear" and left.get_ylabel() == "best so far: accuracy"
    assert list(left.lines[0].get_ydata()) == pytest.approx([0.55, 0.65, 0.85])
