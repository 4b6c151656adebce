"""Extra worker processes on this machine: spawned on the same study, joined, stopped on a signal."""

from __future__ import annotations

import sys
from typing import Any

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError
from bitsmith.schema import Notes
from bitsmith.search.prepare import Search, prepare_search
from bitsmith.search.recovery import fail_unfinished
from bitsmith.search.signals import stop_on_signals
from bitsmith.search.storage import StorageOptions
from bitsmith.search.studies import open_study, optuna_quiet, run_trials, trial_callbacks

MAX_WORKERS = 256


def start_workers(search: Search, options: StorageOptions, study_name: str, overrides, count: int,
                  threads: int) -> list:
    """``count`` more processes on the same study (spawned: no state inherited from this one)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    payload = {"settings": search.settings.model_dump(mode="json"), "source": search.settings.source,
               "options": options, "study": study_name, "overrides": overrides, "threads": threads}
    procs = [ctx.Process(target=worker_main, args=(payload, i + 1), daemon=False) for i in range(count)]
    for p in procs:
        p.start()
    return procs


def join(procs: list) -> None:
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise BitsmithError(f"{len(bad)} worker process(es) stopped with an error (exit {bad[0]}); their message "
                            "is above. The same command resumes the study")


def stop(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker fails its trial in flight and exits
    for p in procs:
        p.join(timeout=10)


def worker_main(payload: dict[str, Any], index: int) -> None:
    """One extra worker process: the same search, on the same study, until the study's total is reached."""
    import torch

    settings = Settings(**payload["settings"])
    settings._source = payload["source"]
    torch.set_num_threads(payload["threads"])
    code = 0
    options = payload["options"]
    with optuna_quiet(), stop_on_signals() as signals:
        search = store = None
        try:
            search = prepare_search(settings, payload["overrides"], Notes(settings.strict, quiet=True))
            search.objective.on_start = signals.check
            signals.objective = search.objective
            study, store, backend = open_study(search, StorageOptions(options.url, payload["study"], options.timeout),
                                               fresh=False, create=False, seed_offset=index)
            cb = trial_callbacks(search.cfg, signals.check, backend and (lambda st, t: backend.sync()))
            run_trials(study, store, search, search.cfg.setup.n_trials, cb)
        except KeyboardInterrupt:
            if store is not None:
                fail_unfinished(store, search.objective.started)
            code = 130
        except BitsmithError as e:
            print(f"bitsmith: error: worker {index}: {e}", file=sys.stderr)
            code = 2
    sys.exit(code)
