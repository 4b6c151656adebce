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
    study = optuna.load_study(study_name=project, storage=postgres_url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert 24 <= len(study.trials) <= 25  # the total, not 24 each (one may overshoot while in flight)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # Running again resumes the shared study: nothing left to do.
    again = subprocess.run([*cmd, "--project-dir", str(tmp_path / "w0")], capture_output=True, text=True)
    assert again.returncode == 0 and "0 to go" in again.stdout
