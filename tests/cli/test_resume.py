"""Lose nothing: a search stopped by SIGINT, SIGTERM or SIGKILL mid-trial resumes, and every point of a
brute-force space ends complete exactly once; resuming with anything that changes a measurement is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from tests.cli.test_cli import cli

# 8 points, each fine-tuned for a moment, so a signal lands inside a trial.
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
weight_width = [2, 3, 4, 8]
bias_width = [8]

[search.strategy.sw_runner.basic_train]
max_epochs = 1000
max_steps = {steps}
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"

[search.strategy.setup]
n_trials = 100
sampler = "brute-force"

[search.strategy.metrics]
accuracy.scale = 1.0
"""
POINTS = 8


def journal(project_dir: Path) -> Path:
    return project_dir / "digits-mlp_digits" / "search" / "study.journal"


def load(path: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials as stock Optuna reads them."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    (name,) = optuna.get_all_study_names(storage)  # the one study of the project's journal
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def command(cfg: Path, project_dir: Path) -> list[str]:
    return [sys.executable, "-m", "bitsmith", "search", "--config", str(cfg), "--project-dir", str(project_dir)]


def wait_for_complete(path: Path, n: int, proc: subprocess.Popen, limit: float = 120) -> None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            pytest.fail(f"the search ended before it could be stopped: {proc.communicate()}")
        if path.is_file():
            try:
                if sum(t.state == optuna.trial.TrialState.COMPLETE for t in load(path)) >= n:
                    return
            except (KeyError, ValueError, optuna.exceptions.StorageInternalError):
                pass  # the study is still being created
        time.sleep(0.05)
    pytest.fail("the search made no progress")


def assert_every_point_once(path: Path) -> list[optuna.trial.FrozenTrial]:
    trials = load(path)
    complete = Counter(json.dumps(t.params, sort_keys=True) for t in trials
                       if t.state == optuna.trial.TrialState.COMPLETE)
    assert len(complete) == POINTS and set(complete.values()) == {1}, complete
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    return trials


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_brute_force_stopped_mid_trial_then_resumed_evaluates_every_point_once(tmp_path, sig):
    cfg = tmp_path / "bf.toml"
    cfg.write_text(SPACE.format(steps=150))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command(cfg, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        wait_for_complete(journal(tmp_path), 2, proc)
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), err
    assert "Traceback" not in err
    if sig != signal.SIGKILL:
        assert "interrupted:" in out and stopped_in < 30
        assert (tmp_path / "digits-mlp_digits" / "search" / "latest" / "trials.csv").is_file()
    before = load(journal(tmp_path))
    left_running = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
    assert sig == signal.SIGKILL or not left_running  # a clean stop marks its trial failed
    done = subprocess.run(command(cfg, tmp_path), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    if left_running:
        assert f"recovered: {len(left_running)} trial(s) of stopped processes marked failed" in done.stdout
    trials = assert_every_point_once(journal(tmp_path))
    # The point that was stopped is failed once and then completed by its retry.
    retried = [t for t in trials if t.system_attrs.get("retry_history")]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert {t.system_attrs["retry_history"][0] for t in retried} == {t.number for t in failed}


def test_max_retry_stops_a_point_that_fails_every_time(tmp_path, capsys):
    """Failed trials are queued again on each start, but a point is retried max_retry times at most."""
    from bitsmith.search.recovery import recover

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j")))
    study = optuna.create_study(storage=storage)
    dist = {"x": optuna.distributions.CategoricalDistribution([1, 2])}
    study.add_trial(optuna.trial.create_trial(params={"x": 1}, distributions=dist,
                                              state=optuna.trial.TrialState.FAIL))
    for attempt in range(4):
        recover(study, storage, max_retry=2)
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if attempt < 2:
            assert len(waiting) == 1 and waiting[0].params == {"x": 1}
            trial = study.ask()  # the queued retry runs, and fails again
            assert trial.params == {"x": 1}
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            assert waiting == []  # retried twice: left failed
    history = [t.system_attrs.get("retry_history") for t in study.trials]
    assert history == [None, [0], [0, 1]]


def test_a_queued_point_stopped_before_its_first_parameter_is_queued_again(tmp_path):
    """A stop can land after a queued trial is taken and before it chooses its parameters: the failed trial
    then holds its point only as Optuna's fixed_params, and that point must still be run again."""
    from bitsmith.search.recovery import recover

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j")))
    study = optuna.create_study(storage=storage)
    for x in (1, 2):
        study.enqueue_trial({"x": x})
    taken = study.ask()  # takes the point x = 1 ...
    study.tell(taken, state=optuna.trial.TrialState.FAIL)  # ... and is stopped before suggest_categorical
    assert study.trials[0].params == {} and study.trials[0].system_attrs["fixed_params"] == {"x": 1}
    failed_now, enqueued = recover(study, storage, max_retry=3)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert (failed_now, enqueued) == (0, 1)
    assert sorted(t.system_attrs["fixed_params"]["x"] for t in waiting) == [1, 2]  # x = 1 again, once
    assert recover(study, storage, max_retry=3) == (0, 0)  # a second start queues nothing more


def test_resume_refuses_changed_runner_settings_and_data_naming_the_difference(tmp_path, capsys, jsc_files):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SPACE.format(steps=5).replace("n_trials = 100", "n_trials = 2"))
    code, _, err = cli(capsys, "search", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 0, err
    cfg.write_text(cfg.read_text().replace('data_loader = "val_dataloader"',
                                           'data_loader = "val_dataloader"\nnum_samples = 100'))  # same file, edited
    code, _, err = cli(capsys, "search", "--config", str(cfg), "--project-dir", str(tmp_path))
    assert code == 2 and "was made with another config" in err
    assert "runners[1][1].num_samples: None -> 100" in err and "--fresh" in err


def test_resume_refuses_a_data_file_whose_contents_changed(tmp_path, capsys):
    import pandas as pd

    from tests.conftest import make_jsc_frame

    data = tmp_path / "jsc.csv"
    make_jsc_frame(800, seed=1).to_csv(data, index=False)
    cfg = tmp_path / "s.toml"
    cfg.write_text(SPACE.format(steps=5).replace('model = "digits-mlp"\ndataset = "digits"',
                                                'model = "jsc-tiny"\ndataset = "jsc"').replace("n_trials = 100",
                                                                                                "n_trials = 2"))
    args = ("search", "--config", str(cfg), "--project-dir", str(tmp_path), "--data-path", str(data))
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    frame = pd.read_csv(data)
    frame.loc[0, "zlogz"] += 1.0  # one value, same file name
    frame.to_csv(data, index=False)
    code, _, err = cli(capsys, *args)
    assert code == 2 and "was made with another config (data: " in err


@pytest.mark.slow
def test_local_workers_share_the_study(tmp_path):
    """--n-workers 2: two processes, one study, every point of the brute-force space once."""
    cfg = tmp_path / "bf.toml"
    cfg.write_text(SPACE.format(steps=600))  # long enough that the second process, still starting, gets work
    done = subprocess.run([*command(cfg, tmp_path), "--n-workers", "2"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "workers=2" in done.stdout and "Best trial(s):" in done.stdout
    trials = assert_every_point_once(journal(tmp_path))
    pids = {t.system_attrs["bitsmith:worker"]["pid"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(pids) == 2
