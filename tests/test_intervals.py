"""Honest selection: every accuracy a search prints has its 95% Wilson interval, and a note says when the
validation split is too small to tell the front's designs apart (docs/search.md, "Choosing on validation")."""

from __future__ import annotations

import math
import re

import optuna
import pytest
from rich.console import Console

from bitsmith.search.table import Rows, crowded_note, print_best
from bitsmith.stats import Z95, accuracy_interval, crowded, wilson


# -- the Wilson score interval -----------------------------------------------------------------------

@pytest.mark.parametrize("k,n,lo,hi", [
    (5, 10, 0.2366, 0.7634),  # symmetric at one half
    (0, 10, 0.0, 0.2775),  # not empty at none right
    (10, 10, 0.7225, 1.0),  # nor at all right
    (140, 144, 0.9308, 0.9891),  # digits' validation split, 0.9722
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Statistics in Medicine 17:857, method 3
])
def test_wilson_known_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)
    assert 0 <= got[0] <= k / n <= got[1] <= 1


def test_wilson_is_scipys_wilson():
    stats = pytest.importorskip("scipy.stats")
    z = stats.norm.ppf(0.975)
    for k, n in [(0, 1), (1, 1), (3, 7), (140, 144), (359, 360), (1000, 66400)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n, z) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_narrows_with_rows_and_refuses_nonsense():
    widths = [hi - lo for lo, hi in (wilson(round(0.9 * n), n) for n in (10, 100, 1000, 10000))]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.013
    for k, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            wilson(k, n)
    assert Z95 == 1.96


def test_accuracy_interval_counts_rows_and_has_none_without_a_count():
    assert accuracy_interval(140 / 144, 144) == wilson(140, 144)
    assert accuracy_interval(0.97222, 144) == wilson(140, 144)  # a rounded figure is still 140 rows
    assert accuracy_interval(0.9, None) is None  # a macro average, or rows unknown
    assert accuracy_interval(None, 144) is None and accuracy_interval(math.nan, 144) is None


# -- the rule: neighbours in order of accuracy, either one within the other's interval ------------------

def test_crowded_counts_designs_not_told_apart_from_a_neighbour():
    n = 144  # one row = 0.69 points: a 95% interval is about +-3 points near 0.95
    assert crowded([], n) == 0 and crowded([0.9], n) == 0
    assert crowded([0.30, 0.60, 0.90], n) == 0  # far apart
    assert crowded([0.9028, 0.9722], n) == 0  # 0.9722 is outside 0.843-0.941, and 0.9028 outside 0.931-0.989
    assert crowded([0.9722, 0.9792], n) == 2  # one row apart
    # Only neighbours count, in order of accuracy whatever the order given: 0.36-0.41 are three, 0.97-0.98 two.
    assert crowded([0.9792, 0.3611, 0.9028, 0.4097, 0.9722, 0.3958], n) == 5
    # The same figures on 10,000 rows stand apart.
    assert crowded([0.9028, 0.9722, 0.9792], 10_000) == 0


def test_crowded_either_direction_counts():
    # Wilson intervals lean towards one half: 143 of 144 is outside 140's interval, 140 inside 143's.
    a, b = 140 / 144, 143 / 144
    assert not wilson(140, 144)[0] <= b <= wilson(140, 144)[1]
    assert wilson(143, 144)[0] <= a <= wilson(143, 144)[1]
    assert crowded([a, b], 144) == 2


# -- the table and its note, from trials as a search stores them --------------------------------------

def trial(number, accuracy, bits, directions=2):
    t = optuna.trial.create_trial(
        values=[accuracy, bits][:directions],
        user_attrs={"software_metrics": {"accuracy": accuracy, "loss": 0.1},
                    "hardware_metrics": {"average_bitwidth": bits},
                    "scaled_metrics": {"accuracy": accuracy, "average_bitwidth": bits},
                    "config": [["quantize", {"by": "type", "linear": {"config": {
                        "name": "integer", "weight_width": int(bits), "data_in_width": 8, "bias_width": 8}}}]]})
    t.number = number
    return t


# Twelve designs on digits' 144 validation rows: nine of them a row or two from a neighbour.
FRONT = [trial(i, k / 144, 2 + i / 2) for i, k in enumerate([20, 21, 22, 70, 100, 128, 130, 131, 136, 138, 139, 144])]


def lines_of(best, tests, rows, width=80):
    console = Console(width=width, record=True, force_terminal=False)
    print_best(best, tests, console, rows)
    return console.export_text().splitlines()


def test_note_on_a_crowded_front_names_rows_count_and_remedy():
    remedy = "set val_size = 0.25 (360 rows) and train the model with it too"
    note = crowded_note(FRONT, Rows(144, 360, remedy=remedy))
    assert crowded([t.values[0] for t in FRONT], 144) == 9
    assert note == ("note: validation accuracy counts 144 rows (one row = 0.69 points): 9 of 12 front designs are "
                    "within a neighbour's 95% interval; to tell them apart, set val_size = 0.25 (360 rows) and "
                    "train the model with it too; see docs/search.md, \"Choosing on validation\"")


def test_no_note_when_designs_stand_apart_or_nothing_is_counted():
    apart = [trial(0, 0.30, 2), trial(1, 0.60, 4), trial(2, 0.95, 8)]
    assert crowded_note(apart, Rows(144, 360)) is None
    assert crowded_note(FRONT, Rows()) is None  # rows unknown
    assert crowded_note(FRONT, Rows(None, 360, macro=True)) is None  # a macro average is no count
    assert crowded_note(FRONT[:1], Rows(144, 360)) is None  # one design
    single = [trial(0, 0.97, 2, directions=1), trial(1, 0.972, 4, directions=1)]
    assert crowded_note(single, Rows(144, 360)) is None  # one objective: no front


@pytest.mark.parametrize("width", [80, 64])
def test_table_shows_intervals_within_the_width_and_the_note_last(width):
    tests = {t.number: {"accuracy": t.values[0] - 0.01, "loss": 0.2} for t in FRONT}
    lines = lines_of(FRONT, tests, Rows(144, 360, remedy="set val_size = 0.25 (360 rows)"), width)
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), text
    k, n = 139, 144
    lo, hi = wilson(k, n)
    assert re.search(rf"^\s+10\s+{k / n:.4f} \({lo:.3f}–{hi:.3f}\)\s", text, re.M), text
    assert "accuracy, loss: on the validation split (144 rows)" in text
    assert "(a–b): the accuracy's 95% interval (Wilson score)" in text
    # The test split's figures count its own rows.
    lo, hi = wilson(round((k / n - 0.01) * 360), 360)
    assert "Test split, 360 rows" in text
    assert re.search(rf"^\s+10\s+{k / n - 0.01:.4f} \({lo:.3f}–{hi:.3f}\)\s+0\.2000$", text, re.M), text
    assert " ".join(text.split("note: ", 1)[1].split()).startswith(
        "validation accuracy counts 144 rows (one row = 0.69 points): 9 of 12 front designs")
    assert lines[-1].endswith('validation"')  # the note comes last


def test_without_row_counts_the_table_is_as_before():
    lines = lines_of(FRONT[:2], {0: {"accuracy": 0.42, "loss": 1.78}}, Rows())
    text = "\n".join(lines)
    assert "(a–b)" not in text and "note:" not in text and "–" not in text
    assert re.search(r"^\s+0\s+0\.1389\s+2\s", text, re.M), text
    assert re.search(r"^\s+0\s+0\.4200\s+1\.7800$", text, re.M), text


def test_macro_accuracy_gets_no_interval_and_says_why():
    text = "\n".join(lines_of(FRONT, {0: {"accuracy": 0.5, "loss": 1.0}}, Rows(None, 360, macro=True)))
    assert "accuracy: a mean over classes (macro), so no interval: it is not a count of rows" in text
    assert re.search(r"^\s+0\s+0\.1389\s+2\s", text, re.M), text  # the plain figure
    assert re.search(rf"^\s+0\s+0\.5000 \({wilson(180, 360)[0]:.3f}–", text, re.M), text  # the test split's has one
    assert "note:" not in text
