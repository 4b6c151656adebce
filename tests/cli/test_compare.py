"""`bitsmith compare` end to end on a small real space: ground truth, reuse, determinism, progress, damaged
tables, bad input."""

import csv
import io
import json
import re

import pytest

from tests.cli.test_cli import cli

SPACE = """
model = "digits-mlp"
dataset = "digits"
seed = 0

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "type"
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
weight_width = {weights}
bias_width = [8]
[search.search_space.seed.relu.config]
name = ["integer"]
data_in_width = [4, 8]

[search.strategy.sw_runner.basic_evaluation]
num_samples = 144
{train}
[search.strategy.hw_runner.average_bitwidth]

[search.strategy.setup]
n_trials = 12
sum_scaled_metrics = {summed}

[search.strategy.metrics]
accuracy.direction = "maximize"
average_bitwidth.scale = {scale}
average_bitwidth.direction = "minimize"
"""


def config(tmp_path, name="c.toml", weights="[2, 4, 8]", summed="true", train=""):
    path = tmp_path / name
    path.write_text(SPACE.format(weights=weights, summed=summed, scale="0.01" if summed == "true" else "1.0",
                                 train=train))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("ckpt")
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(out)])
    return out / "digits-mlp_digits" / "checkpoints" / "best.ckpt"


def compare(capsys, tmp_path, cfg, ckpt, *extra, project="p"):
    return cli(capsys, "compare", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path),
               "--project", project, *extra)


def table_lines(out: str) -> list[str]:
    """What the command prints, less the lines that may differ between runs (timing, table reuse)."""
    return [line for line in out.splitlines() if not line.startswith(("time:", "ground truth:"))]


def the_table(out: str) -> list[str]:
    """The results table alone, from its title to its last border."""
    lines = [line.rstrip() for line in out.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("Samplers over"))
    end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[start:end + 1]


def test_single_objective_ground_truth_reuse_and_determinism(tmp_path, capsys, ckpt):
    cfg = config(tmp_path)
    args = ("--samplers", "tpe,random,brute-force", "--seeds", "3", "--trials", "12")
    code, out, err = compare(capsys, tmp_path, cfg, ckpt, *args)
    assert code == 0, err
    d = tmp_path / "p" / "compare"
    assert "ground truth: evaluated 12 new point(s)" in out and "space=12 points" in out
    # Not a terminal: progress is a line at each tenth of a stage, the runs counted sampler x seed.
    assert "ground truth: 12 of 12 points\n" in out and "ground truth: 6 of 12 points\n" in out
    runs = re.findall(r"^sampler runs: (\d+) of 9 \((\S+), seed (\d+) done\)$", out, re.MULTILINE)
    assert runs == [(str(i + 1), n, str(s)) for i, (n, s) in
                    enumerate((n, s) for n in ("tpe", "random", "brute-force") for s in range(3))]
    assert "to optimum" in out and "brute-force" in out and "100%" in out
    truth = next(d.glob("truth_*.json"))  # the ground truth is shared by every comparison of this search
    run = d / "version_0"  # the results: a run folder of their own
    assert (d / "latest").resolve() == run.resolve()
    for name in ("curves.csv", "summary.json", "compare_best.png"):
        assert (run / name).is_file(), name
    points = json.loads(truth.read_text())["points"]
    assert len(points) == 12
    summary = json.loads((run / "summary.json").read_text())
    optimum = max(r["values"][0] for r in points.values() if r["values"] is not None)
    assert summary["optimum"] == optimum and summary["ground_truth"] is True
    # Brute force with a budget of the whole space sees every point once, so it always reaches the optimum.
    bf = summary["samplers"]["brute-force"]
    assert bf["reached"] == 1.0 and bf["distinct"]["min"] == 12 and bf["to_optimum"]["max"] <= 12
    rows = list(csv.DictReader((run / "curves.csv").open()))
    assert len(rows) == 3 * 3 * 12
    final = {(r["sampler"], r["seed"]): float(r["value"]) for r in rows if r["trial"] == "12"}
    assert all(v <= optimum for v in final.values())
    assert max(final.values()) == optimum

    # The table holds what `search` itself records for each point.
    code, _, err = cli(capsys, "search", "--config", str(cfg), "--load", str(ckpt), "--project-dir", str(tmp_path),
                       "--project", "s", "--sampler", "brute-force")
    assert code == 0, err
    trials = json.loads(next((tmp_path / "s" / "search").rglob("trials.json")).read_text())
    from bitsmith.search.compare.truth import point_key

    assert len(trials) == 12
    for t in trials:
        assert points[point_key(t["params"])]["values"] == t["values"]

    # A rerun reuses the finished comparison: the same table, nothing evaluated or written again.
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    code, out2, err = compare(capsys, tmp_path, cfg, ckpt, *args)
    assert code == 0, err
    assert f"reusing {run}" in out2 and "--overwrite" in out2
    assert not re.search(r"ground truth: \d+ of", out2)  # nothing evaluated, no progress to show
    assert the_table(out2) == the_table(out)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
    # --overwrite runs it again, into the same folder: every run is deterministic, so the same results.
    code, out2, err = compare(capsys, tmp_path, cfg, ckpt, *args, "--overwrite")
    assert code == 0 and "ground truth: reused" in out2 and "(0 evaluations)" in out2
    assert table_lines(out2) == table_lines(out) and not (d / "version_1").exists()
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file() and p.suffix != ".png"} == {
        p: b for p, b in before.items() if p.suffix != ".png" and p.name != "run.json"} | {
        run / "run.json": (run / "run.json").read_bytes()}
    curves = (run / "curves.csv").read_text()

    # Another seed gives other runs over the same table, in a run folder of their own.
    code, out3, _ = compare(capsys, tmp_path, cfg, ckpt, *args, "--seed", "7")
    assert code == 0 and "ground truth: reused" in out3
    assert (d / "version_1" / "curves.csv").read_text() != curves

    # A changed config never reuses the table.
    code, out4, _ = compare(capsys, tmp_path, config(tmp_path, "w.toml", weights="[2, 3, 8]"), ckpt, *args)
    assert code == 0 and "ground truth: evaluated 12 new point(s)" in out4
    assert len(list(d.glob("truth_*.json"))) == 2


def test_several_objectives_hypervolume(tmp_path, capsys, ckpt):
    cfg = config(tmp_path, summed="false")
    code, out, err = compare(capsys, tmp_path, cfg, ckpt, "--samplers", "nsgaii,random,brute-force",
                             "--seeds", "3", "--trials", "12")
    assert code == 0, err
    d = tmp_path / "p" / "compare" / "latest"
    assert (d / "compare_hypervolume.png").is_file() and not (d / "compare_best.png").exists()
    assert "HV ratio" in out and "front found" in out
    summary = json.loads((d / "summary.json").read_text())
    assert summary["reference"]["point"] == [1.1, 1.1] and summary["reference"]["true_front"] >= 2
    bf = summary["samplers"]["brute-force"]
    assert bf["reached"] == 1.0 and bf["front_share"]["min"] == 1.0 and bf["final"]["min"] == pytest.approx(1.0)
    for s in summary["samplers"].values():
        assert 0 <= s["final"]["min"] <= s["final"]["max"] <= 1 + 1e-12


def test_too_large_space_compares_against_the_best_found(tmp_path, capsys, ckpt, monkeypatch):
    import bitsmith.search.compare as compare_mod

    monkeypatch.setattr(compare_mod, "MAX_TRUTH", 5)
    code, out, err = compare(capsys, tmp_path, config(tmp_path), ckpt, "--samplers", "random,tpe", "--seeds", "2",
                             "--trials", "4")
    assert code == 0, err
    assert "ground truth: none; the space has 12 points" in out and "best any run found" in out
    summary = json.loads((tmp_path / "p" / "compare" / "latest" / "summary.json").read_text())
    assert summary["ground_truth"] is False
    assert max(s["reached"] for s in summary["samplers"].values()) > 0  # some run found the best found


def test_training_runner_is_evaluated_per_trial(tmp_path, capsys, ckpt):
    train = "[search.strategy.sw_runner.basic_train]\nmax_steps = 1\nnum_samples = 64\n"
    code, out, err = compare(capsys, tmp_path, config(tmp_path, train=train), ckpt, "--samplers", "random",
                             "--seeds", "2", "--trials", "2")
    assert code == 0, err
    assert "evaluated afresh" in out and "(4 evaluations)" in out
    assert not list((tmp_path / "p" / "compare").glob("truth_*.json"))


BAD = [
    (("--samplers", "tpe,nope"), "unknown sampler 'nope'"),
    (("--seeds", "0"), "--seeds 0"),
    (("--trials", "0"), "--trials 0"),
    (("--samplers", ""), "--samplers"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_flags(tmp_path, capsys, ckpt, extra, message):
    code, out, err = compare(capsys, tmp_path, config(tmp_path), ckpt, *extra)
    assert code == 2 and message in err
    assert 1 <= len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "p").exists()


def test_bad_spaces(tmp_path, capsys, ckpt, monkeypatch):
    import bitsmith.search.compare as compare_mod

    cfg = tmp_path / "flat.toml"
    cfg.write_text(config(tmp_path).read_text().replace("[2, 4, 8]", "[8]").replace("data_in_width = [4, 8]",
                                                                                    "data_in_width = [8]"))
    code, _, err = compare(capsys, tmp_path, cfg, ckpt)
    assert code == 2 and "nothing to search" in err and len(err.strip().splitlines()) <= 2
    train = "[search.strategy.sw_runner.basic_train]\nmax_steps = 1\n"
    code, _, err = compare(capsys, tmp_path, config(tmp_path, "t.toml", train=train), ckpt, "--samplers",
                           "brute-force")
    assert code == 2 and "basic_train" in err
    monkeypatch.setattr(compare_mod, "MAX_TRUTH", 5)
    for sampler in ("brute-force", "grid"):
        code, _, err = compare(capsys, tmp_path, config(tmp_path), ckpt, "--samplers", f"tpe,{sampler}")
        assert code == 2 and "visit every point" in err and "12 points" in err
        assert len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "p").exists()


# --- the ground-truth table is checked -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_table(tmp_path_factory, jsc_files):
    """A compare command line whose config names no model or data set, and the good table it writes.

    The checkpoint (jsc-tiny, not the default model) names them, and so the project folder."""
    from bitsmith.cli import main

    d = tmp_path_factory.mktemp("truth")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "jsc-tiny", "jsc", "--data-path", str(jsc_files["csv"]), "--max-epochs", "1", "--project-dir",
              str(d)])
    assert exit_.value.code == 0
    cfg = d / "c.toml"
    cfg.write_text(config(d).read_text().replace('model = "digits-mlp"\ndataset = "digits"\n', ""))
    argv = ["compare", "--config", str(cfg), "--load", str(d / "jsc-tiny_jsc" / "checkpoints" / "best.ckpt"),
            "--data-path", str(jsc_files["csv"]), "--samplers", "random", "--seeds", "1", "--trials", "2"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--project-dir", str(d / "first")])
    assert exit_.value.code == 0
    [table] = (d / "first" / "jsc-tiny_jsc" / "compare").glob("truth_*.json")
    return argv, table


def _json(change):
    """A damage that edits the table's JSON."""
    return lambda b: json.dumps(change(json.loads(b))).encode()


def _edited(data: dict) -> dict:
    row = next(r for r in data["points"].values() if r["values"] is not None)
    row["values"][0] += 0.25  # a better optimum than the truth
    return data


def _resealed(change):
    """``change`` applied, with the digest recomputed as someone covering an edit would."""
    def build(data: dict) -> dict:
        from bitsmith.search.compare.truth import contents_digest

        data = change(data)
        data["digest"] = contents_digest(data["key"], data["complete"], data["points"])
        return data

    return build


def _malformed(data: dict) -> dict:
    next(iter(data["points"].values()))["values"] = ["high"]
    return data


def _foreign_point(data: dict) -> dict:
    data["points"]['{"linear/weight_width": 3}'] = next(iter(data["points"].values()))
    return data


def _unversioned(data: dict) -> dict:  # as tables were written before the digest
    return {"complete": data["complete"], "points": data["points"]}


DAMAGED = [
    ("truncated", lambda b: b[: len(b) // 2], "is not valid JSON"),
    ("random-bytes", lambda b: bytes(range(256)) * 4, "is not text"),
    ("json-list", lambda b: b"[1, 2, 3]\n", r"is not a ground-truth table \(a JSON list"),
    ("empty", lambda b: b"", "is not valid JSON"),
    ("edited-value", _json(_edited), r"does not match its digest \(edited by hand or damaged\)"),
    ("older-table", _json(_unversioned), r"has no digest \(written by an older bitsmith\)"),
    ("other-search", _json(lambda d: {**d, "key": "0" * 16}), "belongs to another search"),
    ("malformed-row", _json(_resealed(_malformed)), "has a malformed row for point"),
    ("point-not-in-space", _json(_resealed(_foreign_point)), "has a point that is not in this search's space"),
]


@pytest.mark.parametrize("name,how,message", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_table_is_one_line_and_kept(tmp_path, capsys, good_table, name, how, message):
    argv, good = good_table
    d = tmp_path / "jsc-tiny_jsc" / "compare"
    d.mkdir(parents=True)
    table = d / good.name
    table.write_bytes(how(good.read_bytes()))
    before = table.read_bytes()
    code, _, err = cli(capsys, *argv, "--project-dir", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith(f"bitsmith: error: ground-truth table {table} ")
    assert re.search(message, line), line
    assert line.endswith(f"; pass --rebuild-truth to evaluate it again (this file is then kept as {table.name}.bak)")
    assert table.read_bytes() == before and [p.name for p in d.iterdir()] == [table.name]  # nothing else written


def test_rebuild_keeps_the_old_table_and_succeeds(tmp_path, capsys, good_table):
    argv, good = good_table
    d = tmp_path / "jsc-tiny_jsc" / "compare"
    d.mkdir(parents=True)
    table, damaged = d / good.name, DAMAGED[0][1](good.read_bytes())
    table.write_bytes(damaged)
    args = (*argv, "--project-dir", str(tmp_path))
    code, out, err = cli(capsys, *args, "--rebuild-truth")
    assert code == 0, err
    assert "ground truth: rebuilt, evaluated 12 new point(s) (0 reused)" in out
    assert f"ground truth: the previous table is kept as {table}.bak\n" in out
    backup = d / f"{good.name}.bak"
    assert backup.read_bytes() == damaged
    assert json.loads(table.read_text())["points"] == json.loads(good.read_text())["points"]
    # A second rebuild never writes over the first backup; a plain run then reuses the table.
    rebuilt = table.read_bytes()
    code, out, err = cli(capsys, *args, "--rebuild-truth")
    assert code == 0, err
    assert backup.read_bytes() == damaged and (d / f"{good.name}.bak2").read_bytes() == rebuilt
    code, out, err = cli(capsys, *args)
    assert code == 0 and "reusing" in out, err  # the comparison itself is done: reused whole


def test_progress_bar_on_a_terminal(tmp_path, ckpt):
    from rich.console import Console

    from bitsmith.config import load_settings
    from bitsmith.search.compare import run_compare

    buf = io.StringIO()
    settings = load_settings(config(tmp_path), load_name=str(ckpt), project_dir=str(tmp_path))
    run_compare(settings, "random", 2, 3, console=Console(file=buf, force_terminal=True, width=120))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert re.search(r"ground truth ━+ +\d+/12", text) and re.search(r"sampler runs: random, seed 1 \(2 of 2\) ━+ 6/6",
                                                                     text)
    assert "ground truth: 12 of 12 points" not in text and "sampler runs: 2 of 2" not in text  # no log lines
    assert "to optimum" in text
