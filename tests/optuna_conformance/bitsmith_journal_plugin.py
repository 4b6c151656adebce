"""pytest plugin: Optuna's own storage tests, in journal mode, run against bitsmith's journal storage.

Loaded with ``-p bitsmith_journal_plugin`` by scripts/optuna-conformance.sh, inside an
unpacked Optuna source distribution of the installed version. Not a test module
(no ``test_`` prefix, no conftest): bitsmith's own suite collects nothing here.

Optuna parametrizes its storage tests over ``optuna.testing.storages.STORAGE_MODES``
and builds each storage in ``StorageSupplier.__enter__``. This plugin

* swaps the storage that mode "journal" yields for bitsmith's (``open_storage`` on
  the same temporary file Optuna would use, so tests that open a second storage
  on one file, ``StorageSupplier("journal", file=f)``, still share it);
* deselects every test that is not parametrized over storage modes, or that uses a
  mode other than "journal": they do not exercise the journal.

``--stock-journal`` keeps the selection but not the swap: the baseline, Optuna's
own JournalStorage on the same tests.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

JOURNAL = "journal"


def _stub_fakeredis() -> None:
    # optuna.testing.storages imports fakeredis at module level, for mode "journal_redis"
    # only. That mode is deselected, so a placeholder lets the module import without
    # adding a Redis fake to bitsmith's environment.
    if importlib.util.find_spec("fakeredis") is None:
        stub = types.ModuleType("fakeredis")

        def _unavailable(*args, **kwargs):
            raise RuntimeError("fakeredis is not installed (journal_redis mode is not run here)")

        stub.FakeStrictRedis = _unavailable
        sys.modules["fakeredis"] = stub


_stub_fakeredis()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--stock-journal", action="store_true",
                     help="journal mode uses Optuna's own JournalStorage (the baseline), not bitsmith's")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--stock-journal"):
        return
    from optuna.testing import storages as testing_storages

    from bitsmith.search.storage import open_storage

    stock_enter = testing_storages.StorageSupplier.__enter__

    def enter(self):
        if self.storage_specifier != JOURNAL:
            return stock_enter(self)
        # As Optuna's own supplier: a pooled temporary file (removed at exit), or the caller's.
        self.tempfile = self.extra_args.get("file") or testing_storages.NamedTemporaryFilePool().tempfile()
        self.storage, _backend = open_storage(None, Path(self.tempfile.name))
        return self.storage

    testing_storages.StorageSupplier.__enter__ = enter
    config.bitsmith_journal = True  # reported in the header, so a run says which storage it tested


def pytest_report_header(config: pytest.Config) -> str:
    which = "bitsmith.search.storage.open_storage" if getattr(config, "bitsmith_journal", False) \
        else "optuna.storages.JournalStorage (stock)"
    return f"journal storage mode: {which}"


def _modes(item: pytest.Item) -> set[str]:
    """The storage modes a test runs with, read from its parameters (storage, storage_mode, ...)."""
    from optuna.testing.storages import STORAGE_MODES

    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return set()
    return {v for v in callspec.params.values() if isinstance(v, str) and v in STORAGE_MODES}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        (keep if _modes(item) == {JOURNAL} else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
