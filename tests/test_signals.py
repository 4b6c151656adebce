"""A stop signal lands at once while a trial computes, and never inside a storage call: there it would
leave the journal's lock held or a record half written (seen once under load as "cannot write to the study
journal ...: No such file or directory", exit 2 instead of 130)."""

import os
import signal

import optuna
import pytest
from rich.console import Console

from bitsmith.config import load_settings
from bitsmith.search.run import run_search
from bitsmith.search.storage.journal import TrialSyncedJournal
from tests.test_search import search_cfg


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_journal_write_inside_a_trial_waits_for_the_write(tmp_path, monkeypatch, sig):
    sent = []
    real = TrialSyncedJournal._write

    def write(self, fd, data):
        if not sent and b'"param_name"' in bytes(data):  # the first trial's point, inside it, under the file lock
            sent.append(sig)
            os.kill(os.getpid(), sig)
        return real(self, fd, data)

    monkeypatch.setattr(TrialSyncedJournal, "_write", write)
    settings = load_settings(None, model="digits-mlp", dataset="digits", project_dir=str(tmp_path),
                             search=search_cfg(n_trials=6))
    summary = run_search(settings, console=Console(quiet=True))
    assert summary["interrupted"] and not summary.get("failed")
    journal = tmp_path / "digits-mlp_digits" / "search" / "study.journal"
    assert not journal.with_name("study.journal.lock").exists()  # the lock was released
    assert journal.read_bytes().endswith(b"\n")  # every record whole
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]  # stopped, and nothing after it
    assert trials[0].params  # the point chosen before the stop is on disk whole: a resume runs it again


def test_a_signal_as_optuna_releases_the_journal_lock_is_not_a_storage_error(tmp_path, monkeypatch):
    """The exact failure once seen under load: SIGINT lands in Optuna's lock release, before its rename; the
    release then unlinks a file that was never made, and the search ended in "cannot write to the study
    journal ...: No such file or directory" (exit 2) instead of a clean stop (130)."""
    sent = []
    real = os.rename

    def rename(src, dst, *a, **k):
        if not sent and str(src).endswith("study.journal.lock") and sent_in_trial():
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # handled before the real rename runs
        return real(src, dst, *a, **k)

    def sent_in_trial() -> bool:
        return any(b'"param_name"' in line for line in journal.read_bytes().splitlines()) if journal.exists() \
            else False

    journal = tmp_path / "digits-mlp_digits" / "search" / "study.journal"
    monkeypatch.setattr(os, "rename", rename)
    settings = load_settings(None, model="digits-mlp", dataset="digits", project_dir=str(tmp_path),
                             search=search_cfg(n_trials=6))
    summary = run_search(settings, console=Console(quiet=True))
    assert sent and summary["interrupted"]
    assert not journal.with_name("study.journal.lock").exists()
