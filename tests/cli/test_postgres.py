"""Many workers sharing one study in a real PostgreSQL server.

CI starts the server (scripts/start-postgres.sh) and sets BITSMITH_TEST_POSTGRES_URL.
"""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("BITSMITH_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must start PostgreSQL and set BITSMITH_TEST_POSTGRES_URL (see .ci/run)")
        pytest.skip("no PostgreSQL server here: export BITSMITH_TEST_POSTGRES_URL=$(bash scripts/start-postgres.sh)")
    return url


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, postgres_url):
    from bitsmith.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--max-epochs", "3", "--project-dir", str(tmp_path)])
    ckpt = tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    project = f"pg-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "bitsmith", "search", "--config", str(CONFIGS / "search_digits_quantize.toml"),
           "--load", str(ckpt), "--storage", postgres_url, "--project", project, "--sampler", "random",
           "--n-trials", "24"]
    workers = [subprocess.Popen([*cmd, "--project-dir", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err
        assert "Best trial(s):" in out
    study = optuna.load_study(study_name=f"{project}-search_digits_quantize", storage=postgres_url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len(study.trials) == 24  # the study's total, not 24 each, and never one more
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # Running again resumes the shared study: nothing left to do.
    again = subprocess.run([*cmd, "--project-dir", str(tmp_path / "w0")], capture_output=True, text=True)
    assert again.returncode == 0 and "0 to go" in again.stdout


PG_SPACE = """
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
weight_width = [2, 3, 4, 5, 6, 8]
bias_width = [8]
[search.strategy.sw_runner.basic_train]
max_epochs = 1000
max_steps = 300
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.setup]
n_trials = 100
sampler = "brute-force"
heartbeat_interval = 1
grace_period = 3
[search.strategy.metrics]
accuracy.scale = 1.0
"""


@pytest.mark.slow
def test_three_workers_one_killed_mid_trial_lose_nothing(tmp_path, postgres_url):
    """3 workers on one brute-force study; one is SIGKILLed inside a trial. Its trial is failed (heartbeat, or
    the next start) and retried: every point ends complete exactly once."""
    import json
    import signal
    import time
    from collections import Counter

    cfg = tmp_path / "bf.toml"
    cfg.write_text(PG_SPACE)
    name = f"pg-kill-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "bitsmith", "search", "--config", str(cfg), "--storage", postgres_url,
           "--study-name", name]
    workers = [subprocess.Popen([*cmd, "--project-dir", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(3)]
    victim = workers[0]
    try:
        deadline = time.monotonic() + 120
        running = []
        while time.monotonic() < deadline:
            try:
                trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                       and t.system_attrs.get("bitsmith:worker", {}).get("pid") == victim.pid and t.params]
            if done >= 2 and running:
                # Freeze the victim, then check the trial is still in flight: a trial seen running a moment ago
                # may have finished since, and killing the victim then would test nothing.
                victim.send_signal(signal.SIGSTOP)
                study = optuna.load_study(study_name=name, storage=postgres_url)
                if study.get_trials(deepcopy=False)[running[0].number].state == optuna.trial.TrialState.RUNNING:
                    break
                victim.send_signal(signal.SIGCONT)
                running = []
            time.sleep(0.05)
        assert running, "the victim never held a trial"
        victim.send_signal(signal.SIGKILL)
        killed_trial = running[0].number
        for w in workers[1:]:
            out, err = w.communicate(timeout=300)
            assert w.returncode == 0, err
    finally:
        for w in workers:
            w.kill()
    # Whatever the heartbeat did not catch before the others finished, the next start does.
    again = subprocess.run([*cmd, "--project-dir", str(tmp_path / "again")], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials(deepcopy=False)
    complete = Counter(json.dumps(t.params, sort_keys=True) for t in trials
                       if t.state == optuna.trial.TrialState.COMPLETE)
    assert len(complete) == 12 and set(complete.values()) == {1}, complete
    assert trials[killed_trial].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if killed_trial in t.system_attrs.get("retry_history", [])]
    assert retries and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow
def test_n_workers_run_exactly_n_trials(tmp_path, postgres_url):
    """`--n-workers 3` with n_trials = 40: exactly 40 trials in the shared study (an advisory lock)."""
    from bitsmith.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--max-epochs", "3", "--project-dir", str(tmp_path)])
    name = f"pg-n-{uuid.uuid4().hex[:8]}"
    run = subprocess.run([sys.executable, "-m", "bitsmith", "search", "--config",
                          str(CONFIGS / "search_digits_quantize.toml"), "--load",
                          str(tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"), "--storage",
                          postgres_url, "--study-name", name, "--sampler", "random", "--n-workers", "3",
                          "--project-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    assert len(trials) == 40 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
