"""`bitsmith search` end to end on real data: outputs, determinism, storage, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, jsc_files):
    """Trained checkpoints: digits-mlp on digits, and the JSC models on a generated JSC file."""
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for model, dataset, extra in (("digits-mlp", "digits", []),
                                  ("jsc-tiny", "jsc", ["--data-path", str(jsc_files["csv"])]),
                                  ("jsc-toy", "jsc", ["--data-path", str(jsc_files["csv"])]),
                                  ("jsc-three-linear-layers", "jsc", ["--data-path", str(jsc_files["csv"])])):
        with pytest.raises(SystemExit):
            main(["train", model, dataset, "--max-epochs", "3", "--project-dir", str(out), *extra])
        paths[model] = out / f"{model}_{dataset}" / "checkpoints" / "best.ckpt"
    return paths


def search(capsys, tmp_path, config, ckpt, *extra):
    return cli(capsys, "search", "--config", str(config), "--load", str(ckpt), "--project-dir", str(tmp_path),
               *extra)


def trials_of(path: Path) -> list[tuple]:
    rows = json.loads(path.read_text())
    return [(r["number"], r["state"], json.dumps(r["params"], sort_keys=True), r["values"]) for r in rows]


def test_quick_start_search_writes_everything(tmp_path, capsys, ckpts):
    code, out, err = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"],
                            "--n-trials", "12")
    assert code == 0, err
    assert "Best trial(s):" in out
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.split()[:1] == ["trial"] and line.rstrip().endswith("design"))
    assert lines[i - 1].split() == ["avg", "width"]
    assert lines[i].split() == ["trial", "accuracy", "(bits)", "design"]
    root = tmp_path / "digits-mlp_digits" / "search"
    d = root / "digits-mlp_digits-search_digits_quantize"  # a study's outputs: a folder named after it
    assert (root / "study.journal").is_file() and (root / "latest").resolve() == d.resolve()
    for name in ("best.json", "trials.csv", "trials.json", "history.png", "pareto.png"):
        assert (d / name).is_file(), name
    best = json.loads((d / "best.json").read_text())["best"]
    assert best and all(b["software_metrics"]["accuracy"] >= 0 for b in best)
    # The front is a front: no best trial dominates another.
    pts = [(b["software_metrics"]["accuracy"], -b["hardware_metrics"]["average_bitwidth"]) for b in best]
    assert not any(a[0] >= b[0] and a[1] >= b[1] and a != b for a in pts for b in pts)
    # Each chosen design reloads with `bitsmith test` and gives the reported test accuracy.
    first = best[0]
    code, out, _ = cli(capsys, "test", "--load", first["checkpoint"])
    assert code == 0
    assert float(out.split("test accuracy ")[1].split()[0]) == pytest.approx(first["test_metrics"]["accuracy"], abs=1e-4)
    assert 'name = "integer"' in Path(first["config_file"]).read_text()
    rows = (d / "trials.csv").read_text().splitlines()
    assert len(rows) == 13 and "sw.accuracy" in rows[0] and "hw.average_bitwidth" in rows[0]
    attrs = optuna.load_study(study_name=d.name,
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(str(root / "study.journal")))).trials[0].user_attrs
    assert {"config", "software_metrics", "hardware_metrics", "scaled_metrics"} <= set(attrs)


def test_same_config_and_seed_give_the_same_trials(tmp_path, capsys, ckpts):
    runs = []
    for name in ("a", "b"):
        code, _, _ = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"],
                            "--n-trials", "8", "--sampler", "tpe", "--project", name)
        assert code == 0
        runs.append(trials_of(tmp_path / name / "search" / "latest" / "trials.json"))
    assert runs[0] == runs[1]
    code, _, _ = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"],
                        "--n-trials", "8", "--sampler", "tpe", "--project", "c", "--seed", "1")
    assert trials_of(tmp_path / "c" / "search" / "latest" / "trials.json") != runs[0]


def test_brute_force_visits_every_point_once_and_stops(tmp_path, capsys, ckpts, jsc_files):
    code, out, err = search(capsys, tmp_path, CONFIGS / "jsc_three_linear_layers_brute_force.toml",
                            ckpts["jsc-three-linear-layers"], "--data-path", str(jsc_files["csv"]))
    assert code == 0, err
    rows = json.loads((tmp_path / "jsc-three-linear-layers_jsc" / "search" / "latest" / "trials.json").read_text())
    points = [json.dumps(r["params"], sort_keys=True) for r in rows]
    assert len(rows) == 16 < 100  # 2 x 2 x 2 x 2 points; n_trials = 100 not reached
    assert len(set(points)) == 16
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert len(pruned) == 12 and all("expects" in r["pruned_reason"] or "output" in r["pruned_reason"]
                                     for r in pruned)
    complete = {(r["params"]["seq_blocks_2/channel_multiplier"], r["params"]["seq_blocks_4/channel_multiplier_output"])
                for r in rows if r["state"] == "COMPLETE"}
    assert (2, 4) in complete  # the 16 -> 32 -> 64 -> 5 design


@pytest.mark.parametrize("config,model", [("jsc_tiny_by_type.toml", "jsc-tiny"), ("jsc_toy_by_type.toml", "jsc-toy"),
                                          ("jsc_toy_by_name.toml", "jsc-toy")])
def test_jsc_example_configs_run(tmp_path, capsys, ckpts, jsc_files, config, model):
    code, out, err = search(capsys, tmp_path, CONFIGS / config, ckpts[model], "--data-path", str(jsc_files["csv"]),
                            "--n-trials", "6")
    assert code == 0, err
    assert "Best trial(s):" in out and "6 trials (6 complete" in out


def test_mase_by_name_file_with_a_type_keyed_seed(tmp_path, capsys, ckpts, jsc_files):
    """MASE's lab file as published: by = "name" plus a `linear` table, which MASE ignores."""
    args = ("--data-path", str(jsc_files["csv"]))
    code, out, err = search(capsys, tmp_path, CONFIGS / "jsc_tiny_by_type.toml", ckpts["jsc-tiny"], *args)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0, err
    assert len(warnings) == 1 and "[search.search_space.seed.linear] matches no node" in warnings[0]
    assert 'by = "type"' in warnings[0]
    assert "Best trial(s):" in out and "5 trials (5 complete" in out
    rows = json.loads((tmp_path / "jsc-tiny" / "search" / "latest" / "trials.json").read_text())
    assert all(set(r["params"]) <= {"seq_blocks_2/data_in_width", "seq_blocks_2/weight_width",
                                     "seq_blocks_2/bias_width"} for r in rows)
    # The node that was searched really is quantized at the sampled widths.
    assert {r["hardware_metrics"]["average_bitwidth"] for r in rows} != {32.0}
    code, _, err = search(capsys, tmp_path / "strict", CONFIGS / "jsc_tiny_by_type.toml", ckpts["jsc-tiny"],
                          *args, "--strict")
    assert code == 2 and "(--strict makes this an error)" in err and "Traceback" not in err
    assert not (tmp_path / "strict" / "jsc-tiny" / "search").exists()


def test_by_type_file_with_a_name_keyed_seed(tmp_path, capsys, ckpts, jsc_files):
    """The reverse: a by-type file that also carries a table keyed by node name."""
    text = (CONFIGS / "jsc_toy_by_type.toml").read_text().replace(
        "[search.search_space.seed.relu.config]",
        "[search.search_space.seed.seq_blocks_5.config]\nname = [\"integer\"]\ndata_in_width = [2]\n"
        "weight_width = [2]\nbias_width = [2]\n\n[search.search_space.seed.relu.config]")
    cfg = tmp_path / "by_type_plus_name.toml"
    cfg.write_text(text)
    code, out, err = search(capsys, tmp_path, cfg, ckpts["jsc-toy"], "--data-path", str(jsc_files["csv"]),
                            "--n-trials", "4")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0, err
    assert len(warnings) == 1 and "[search.search_space.seed.seq_blocks_5] matches no layer type" in warnings[0]
    assert 'by = "name"' in warnings[0]
    assert "Best trial(s):" in out and "4 trials (4 complete" in out


@pytest.mark.parametrize("config", ["search_digits_channels.toml", "search_digits_joint.toml"])
def test_digits_example_configs_run(tmp_path, capsys, ckpts, config):
    code, out, err = search(capsys, tmp_path, CONFIGS / config, ckpts["digits-mlp"], "--n-trials", "4")
    assert code == 0, err
    assert "Best trial(s):" in out


def test_constraints_mark_trials_infeasible_without_hiding_them(tmp_path, capsys, ckpts):
    code, out, err = search(capsys, tmp_path, CONFIGS / "search_digits_joint.toml", ckpts["digits-mlp"],
                            "--n-trials", "12", "--sampler", "random")
    assert code == 0, err
    d = tmp_path / "digits-mlp_digits" / "search" / "latest"
    rows = json.loads((d / "trials.json").read_text())
    infeasible = [r for r in rows if r["feasible"] is False]
    assert infeasible and all(r["software_metrics"]["accuracy"] < 0.9 for r in infeasible)
    assert all(r["software_metrics"]["accuracy"] >= 0.9 for r in rows if r["feasible"])
    best = json.loads((d / "best.json").read_text())["best"]
    assert all(b["feasible"] for b in best)
    assert all("latency" in r["software_metrics"] for r in rows if r["state"] == "COMPLETE")


def test_resume_fresh_and_config_change(tmp_path, capsys, ckpts):
    cfg = CONFIGS / "search_digits_quantize.toml"
    journal = tmp_path / "digits-mlp_digits" / "search" / "study.journal"
    assert search(capsys, tmp_path, cfg, ckpts["digits-mlp"], "--n-trials", "4")[0] == 0
    code, out, _ = search(capsys, tmp_path, cfg, ckpts["digits-mlp"], "--n-trials", "6")
    name = "digits-mlp_digits-search_digits_quantize"  # the project and the config's name
    assert code == 0 and f"resuming study '{name}': 4 trials done, 2 to go" in out
    code, out, _ = search(capsys, tmp_path, cfg, ckpts["digits-mlp"], "--n-trials", "3", "--fresh")
    assert code == 0 and f"'{name}-2'" in out
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 6  # kept
    assert len(optuna.load_study(study_name=f"{name}-2", storage=storage).trials) == 3
    first = json.loads((journal.parent / name / "trials.json").read_text())
    assert len(first) == 6 and len(json.loads((journal.parent / f"{name}-2" / "trials.json").read_text())) == 3
    size = journal.stat().st_size
    code, _, err = search(capsys, tmp_path, cfg, ckpts["digits-mlp"], "--n-trials", "9", "--sampler", "random")
    assert code == 2 and "made with another config" in err and "--fresh" in err
    assert journal.stat().st_size == size  # nothing written to the stored study


def test_sqlite_storage_url(tmp_path, capsys, ckpts):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    code, out, err = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"],
                            "--n-trials", "3", "--storage", url)
    assert code == 0, err
    assert len(optuna.load_study(study_name="digits-mlp_digits-search_digits_quantize", storage=url).trials) == 3


def test_damaged_journal_is_a_clear_error_and_kept(tmp_path, capsys, ckpts):
    journal = tmp_path / "damaged.journal"
    journal.write_text("this is not a journal\n")
    code, _, err = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"],
                          "--storage", str(journal))
    assert code == 2 and "not an Optuna journal file" in err and "Traceback" not in err
    assert journal.read_text() == "this is not a journal\n"


def test_parallel_jobs_fill_the_study(tmp_path, capsys, ckpts):
    cfg = tmp_path / "jobs.toml"
    cfg.write_text((CONFIGS / "search_digits_quantize.toml").read_text().replace("n_jobs = 1", "n_jobs = 2"))
    code, out, err = search(capsys, tmp_path, cfg, ckpts["digits-mlp"], "--n-trials", "10", "--sampler", "random")
    assert code == 0, err
    rows = json.loads((tmp_path / "digits-mlp_digits" / "search" / "latest" / "trials.json").read_text())
    assert len(rows) == 10 and all(r["state"] == "COMPLETE" for r in rows)  # threads share the study's total


@pytest.mark.parametrize("extra,message", [
    (["--storage", "redis://localhost/0"], "not a storage bitsmith can open"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
    (["--n-trials", "0"], "n_trials = 0"),
    (["--sampler", "annealing"], "sampler = 'annealing'"),
])
def test_search_mistakes_exit_2_before_any_trial(tmp_path, capsys, ckpts, extra, message):
    code, out, err = search(capsys, tmp_path, CONFIGS / "search_digits_quantize.toml", ckpts["digits-mlp"], *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "digits-mlp_digits" / "search" / "latest").exists()


def test_checkpoint_of_another_model(tmp_path, capsys, ckpts, jsc_files):
    code, _, err = search(capsys, tmp_path, CONFIGS / "jsc_tiny_by_type.toml", ckpts["jsc-toy"],
                          "--data-path", str(jsc_files["csv"]))
    assert code == 2 and "holds model 'jsc-toy', not 'jsc-tiny'" in err


def test_config_without_search_section(tmp_path, capsys, ckpts):
    code, _, err = search(capsys, tmp_path, CONFIGS / "digits_quantize_8bit.toml", ckpts["digits-mlp"])
    assert code == 2 and "needs a [search] section" in err


@pytest.mark.slow
def test_ctrl_c_writes_outputs_and_exits_cleanly(tmp_path, ckpts):
    cfg = tmp_path / "slow.toml"
    text = (CONFIGS / "search_digits_channels.toml").read_text()
    cfg.write_text(text.replace("max_steps = 20", "max_steps = 400").replace('sampler = "brute-force"',
                                                                             'sampler = "random"')
                   .replace("n_trials = 9", "n_trials = 500"))
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "bitsmith", "search", "--config", str(cfg), "--load",
                             str(ckpts["digits-mlp"]), "--project-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    journal = tmp_path / "digits-mlp_digits" / "search" / "study.journal"
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or journal.read_text().count('"op_code":6') < 2):
        time.sleep(0.2)  # wait until a few trials have finished (op 6: a trial's state set)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted:" in out and "Best trial(s):" in out
    rows = json.loads((tmp_path / "digits-mlp_digits" / "search" / "latest" / "trials.json").read_text())
    assert sum(r["state"] == "COMPLETE" for r in rows) >= 1 and len(rows) < 500
    assert all(r["state"] in ("COMPLETE", "FAIL") for r in rows)
    # The stop wrote the tables only; fine-tuning the best designs again is `bitsmith report`'s job.
    search_dir = tmp_path / "digits-mlp_digits" / "search" / "digits-mlp_digits-slow"
    best = json.loads((search_dir / "best.json").read_text())["best"][0]["number"]
    assert not (search_dir / "best").exists()
    report = subprocess.run([sys.executable, "-m", "bitsmith", "report", "--project-dir", str(tmp_path),
                             "--load", str(ckpts["digits-mlp"])], capture_output=True, text=True, env=env)
    assert report.returncode == 0, report.stderr
    assert "Best trial(s):" in report.stdout
    assert torch.load(search_dir / "best" / f"trial_{best}" / "model.ckpt", weights_only=True)["bitsmith"]["passes"]
