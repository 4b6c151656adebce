"""Nothing a user made is overwritten: run folders, reuse of finished runs, one folder per study, a study's
total kept by every worker, checkpoints that remember their data, read-only commands that create nothing."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bitsmith.search.storage import StudyFull, open_storage
from tests.cli.test_cli import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` and its checksum (links followed only as names)."""
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from bitsmith.cli import main

    out = tmp_path_factory.mktemp("runs")
    with pytest.raises(SystemExit):
        main(["train", "digits-mlp", "digits", "--max-epochs", "3", "--project-dir", str(out)])
    return out


def test_train_again_reuses_the_finished_run_and_overwrite_trains_again(tmp_path, capsys):
    args = ("train", "digits-mlp", "digits", "--max-epochs", "1", "--project-dir", str(tmp_path))
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    runs = tmp_path / "digits-mlp_digits" / "train"
    best = runs / "version_0" / "best.ckpt"
    first = sha(best)
    assert (tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt").resolve() == best.resolve()
    code, out, _ = cli(capsys, *args)
    assert code == 0 and f"reusing {runs / 'version_0'}" in out and "--overwrite" in out
    assert sha(best) == first and not (runs / "version_1").exists()
    code, out, _ = cli(capsys, *args, "--max-epochs", "2")  # other settings: a run of its own
    assert code == 0 and (runs / "version_1" / "best.ckpt").is_file() and sha(best) == first
    assert (runs / "latest").resolve() == (runs / "version_1").resolve()
    code, out, _ = cli(capsys, *args, "--overwrite")  # the same inputs as version_0: trained again there
    assert code == 0 and "reusing" not in out and not (runs / "version_2").exists()
    assert (runs / "latest").resolve() == (runs / "version_0").resolve()
    assert json.loads((runs / "version_0" / "run.json").read_text())["status"] == "finished"


def test_fine_tuning_a_transformed_checkpoint_keeps_the_float_one(trained, tmp_path, capsys):
    project = tmp_path / "p"
    code, _, err = cli(capsys, "transform", "--config", str(CONFIGS / "digits_quantize_8bit.toml"), "--load",
                       str(trained / "digits-mlp_digits" / "checkpoints" / "best.ckpt"), "--project-dir", str(project))
    assert code == 0, err
    transformed = project / "digits-mlp_digits" / "transform" / "transformed.ckpt"
    assert transformed.resolve() == (project / "digits-mlp_digits" / "transform" / "version_0" /
                                     "transformed.ckpt").resolve()
    before = snapshot(trained)
    code, out, err = cli(capsys, "train", "--load", str(transformed), "--max-epochs", "1", "--project-dir",
                         str(trained))
    assert code == 0, err
    after = snapshot(trained)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing earlier changed
    assert any(k.startswith("digits-mlp_digits/train/version_1/") for k in after)
    # The same transform again is reused, not redone.
    code, out, _ = cli(capsys, "transform", "--config", str(CONFIGS / "digits_quantize_8bit.toml"), "--load",
                       str(trained / "digits-mlp_digits" / "train" / "version_0" / "best.ckpt"), "--project-dir",
                       str(project))
    assert code == 0 and "reusing" in out and not (project / "digits-mlp_digits" / "transform" / "version_1").exists()


def test_example_configs_run_one_after_another_each_in_its_own_folder(trained, tmp_path, capsys):
    ckpt = trained / "digits-mlp_digits" / "train" / "version_0" / "best.ckpt"
    for config in ("search_digits_quantize.toml", "search_digits_joint.toml", "search_digits_channels.toml"):
        before = snapshot(tmp_path)
        code, out, err = cli(capsys, "search", "--config", str(CONFIGS / config), "--load", str(ckpt),
                             "--n-trials", "3", "--project-dir", str(tmp_path))
        assert code == 0, err
        folder = tmp_path / "digits-mlp_digits" / "search" / f"digits-mlp_digits-{Path(config).stem}"
        assert (folder / "trials.json").is_file()
        after = snapshot(tmp_path)
        changed = [k for k, v in before.items() if after.get(k) != v]
        assert set(changed) <= {"digits-mlp_digits/search/study.journal"}  # only the storage grows
    search = tmp_path / "digits-mlp_digits" / "search"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(search / "study.journal")))
    names = sorted(optuna.get_all_study_names(storage))
    assert names == sorted(f"digits-mlp_digits-{c}" for c in ("search_digits_quantize", "search_digits_joint",
                                                             "search_digits_channels"))
    study = optuna.load_study(study_name=names[-1], storage=storage)
    assert study.metric_names == ["accuracy", "average_bitwidth"]  # what the dashboard shows


def test_report_works_on_a_study_run_with_flags(trained, tmp_path, capsys):
    ckpt = trained / "digits-mlp_digits" / "train" / "version_0" / "best.ckpt"
    code, _, err = cli(capsys, "search", "--config", str(CONFIGS / "search_digits_quantize.toml"), "--load",
                       str(ckpt), "--sampler", "random", "--n-trials", "7", "--project-dir", str(tmp_path))
    assert code == 0, err
    code, out, err = cli(capsys, "report", "--project-dir", str(tmp_path))
    assert code == 0, err
    assert "7 trials (7 complete" in out and "Best trial(s):" in out


def test_n_workers_run_exactly_n_trials(trained, tmp_path):
    ckpt = trained / "digits-mlp_digits" / "train" / "version_0" / "best.ckpt"
    cmd = [sys.executable, "-m", "bitsmith", "search", "--config", str(CONFIGS / "search_digits_quantize.toml"),
           "--load", str(ckpt), "--sampler", "random", "--n-trials", "40", "--n-workers", "3"]
    for storage in ([], ["--storage", f"sqlite:///{tmp_path / 'studies.db'}"]):
        run = subprocess.run([*cmd, *storage, "--project-dir", str(tmp_path)], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr
        assert "40 trials (40 complete, 0 pruned, 0 failed)" in run.stdout, run.stdout[-2000:]


def test_a_full_study_refuses_to_start_a_trial_in_any_process(tmp_path):
    """Two processes' storages on one journal: once the study holds its total, neither starts another."""
    path = tmp_path / "study.journal"
    a, _ = open_storage(None, path)
    b, _ = open_storage(None, path)
    study_a = optuna.create_study(study_name="s", storage=a)
    study_b = optuna.load_study(study_name="s", storage=b)
    sid = a.get_study_id_from_name("s")
    a.limit_trials(sid, 3)
    b.limit_trials(sid, 3)
    running = study_a.ask()  # a trial in flight counts
    study_b.tell(study_b.ask(), 1.0)
    study_a.tell(study_a.ask(), 1.0)
    with pytest.raises(StudyFull):
        study_b.ask()
    study_a.enqueue_trial({})  # a queued trial is not taken past the total either
    with pytest.raises(StudyFull):
        study_b.ask()
    study_a.tell(running, state=optuna.trial.TrialState.FAIL)  # a failed trial is retried, not counted
    study_b.tell(study_b.ask(), 1.0)
    assert len([t for t in study_a.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]) == 3


def test_checkpoint_remembers_its_data_file(tmp_path, capsys, jsc_files):
    data = tmp_path / "jsc.csv"
    data.write_bytes(jsc_files["csv"].read_bytes())
    code, _, err = cli(capsys, "train", "jsc-tiny", "jsc", "--data-path", str(data), "--max-epochs", "1",
                       "--project-dir", str(tmp_path))
    assert code == 0, err
    ckpt = tmp_path / "jsc-tiny_jsc" / "train" / "version_0" / "best.ckpt"
    before = sorted(tmp_path.rglob("*"))
    code, out, err = cli(capsys, "test", "--load", str(ckpt), "--project-dir", str(tmp_path / "elsewhere"))
    assert code == 0, err  # no --data-path: the checkpoint says where
    assert sorted(tmp_path.rglob("*")) == before  # `test` reads; it creates nothing
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0], *lines[2:]]) + "\n")  # one row fewer: other contents, same name
    code, out, err = cli(capsys, "test", "--load", str(ckpt))
    assert code == 0 and "is not what checkpoint" in err and "contents" in err
    data.rename(tmp_path / "moved.csv")
    code, out, err = cli(capsys, "test", "--load", str(ckpt))
    assert code == 2 and "not there any more" in err and "--data-path" in err and len(err.splitlines()) == 1
    code, out, err = cli(capsys, "test", "--load", str(ckpt), "--data-path", str(tmp_path / "moved.csv"))
    assert code == 0, err


@pytest.mark.parametrize("argv", [
    ["report", "--storage", "{tmp}/nope/study.journal"],
    ["report", "--storage", "sqlite:///{tmp}/nope.db"],
    ["report", "--project-dir", "{tmp}/nowhere"],
    ["dashboard", "--storage", "sqlite:///{tmp}/nope.db", "--port", "1"],
])
def test_read_only_commands_create_nothing(tmp_path, capsys, argv):
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = cli(capsys, *[a.replace("{tmp}", str(work)) for a in argv])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert list(work.iterdir()) == []
