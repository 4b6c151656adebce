"""Per-trial cost of `bitsmith search` against bare PyTorch, idle and under load, measured in one run.

Settings (random sampler, default journal storage):

1. jsc-toy post-training quantization scored on the WHOLE validation split;
2. jsc-tiny and jsc-toy scoring 512 validation samples per trial (the published
   searches, configs/jsc_tiny_by_type.toml and configs/jsc_toy_by_type.toml).

For each, under each load (``--loads 0,2``: idle, then two busy background
processes started and stopped by the benchmark itself):

* ``bare``: the same fake-quantized evaluation of the same points written by
  hand in PyTorch (one intra-op thread, its fastest setting on small models);
* ``trial``: start-to-start time per trial of the search loop as `bitsmith
  search` runs it (bitsmith's Objective, its callbacks and threads, journal
  storage), median and 90th percentile over all trials of ``--rounds`` fresh
  studies; its ratio to ``bare``;
* ``storage``: time inside the storage per trial (every call Optuna and
  bitsmith make to it, and the fsync), median and 90th percentile;
* ``search``: the same, read off the study of a whole `bitsmith search` run
  (progress bar, signal handling and all), start to start.

    python benchmarks/search_overhead.py [--data-path JSC_FILE] [--trials 100] [--loads 0,2]

Without --data-path a JSC-layout file of the real set's size (830,000 rows) is
generated once in the temp directory. To compare with an older commit, run
this file with PYTHONPATH pointing at that commit's src/ (it adapts to what
the older code lacks).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy, jsc_layout_file  # noqa: E402

import bitsmith  # noqa: E402
from bitsmith.config import load_settings  # noqa: E402
from bitsmith.jobs import prepare  # noqa: E402
from bitsmith.search.config import parse_search  # noqa: E402
from bitsmith.search.runners import Context  # noqa: E402
from bitsmith.search.samplers import make_sampler  # noqa: E402
from bitsmith.search.spaces import build_space  # noqa: E402
from bitsmith.search.storage import open_storage  # noqa: E402
from bitsmith.search.study import Objective  # noqa: E402

try:  # search/ as one module per job
    from bitsmith.search.process import WORKER, WORKER_ATTR
    from bitsmith.search.run import run_search
    from bitsmith.search.studies import one_callback, optuna_quiet
    from bitsmith.search.threads import search_threads as pick_threads
except ImportError:  # older commits: search/job.py did it all
    from bitsmith.search import job

    WORKER, WORKER_ATTR, run_search, optuna_quiet = job.WORKER, job.WORKER_ATTR, job.run_search, job.optuna_quiet
    one_callback = getattr(job, "one_callback", None)  # older code passed each callback apart
    pick_threads = getattr(job, "search_threads", None)  # older code: torch's default

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WARMUP = 5  # trials left out of the figures: the first ones import and allocate
STORAGE_CALLS = ("create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_user_attr",
                 "set_trial_system_attr", "get_trial", "get_all_trials", "get_trial_system_attrs",
                 "get_trial_params", "get_study_directions", "get_study_system_attrs", "get_study_user_attrs",
                 "get_trial_id_from_study_id_trial_number", "get_best_trial", "flush")


def train_quickly(model: str, data_path: str, out: Path) -> Path:
    from rich.console import Console

    from bitsmith import jobs

    s = load_settings(None, model=model, dataset="jsc", data_path=data_path, max_epochs=1, batch_size=1024,
                      project_dir=str(out), accelerator="cpu")
    jobs.train(s, Console(quiet=True))
    return out / f"{model}_jsc" / "checkpoints" / "best.ckpt"


def bare_eval(model, cfg: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    """The same fake-quantized evaluation, by hand, on the float model's layers."""

    def fq(t, width, frac, signed=True):
        s = 2.0 ** -frac
        lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
        return torch.clamp(torch.round(t / s), lo, hi) * s

    def fmt(c, part):
        w = c[f"{part}_width"]
        f = c.get(f"{part}_frac_width")
        return w, (w // 2 if f is None else f)

    with torch.no_grad():
        h = x
        for i, layer in enumerate(model.seq_blocks):
            key = type(layer).__name__.lower() if cfg.get("by") == "type" else f"seq_blocks_{i}"
            c = cfg.get(key, {}).get("config", {})
            if c.get("name") == "integer" and isinstance(layer, torch.nn.Linear):
                h = F.linear(fq(h, *fmt(c, "data_in")), fq(layer.weight, *fmt(c, "weight")),
                             fq(layer.bias, *fmt(c, "bias")))
            elif c.get("name") == "integer" and isinstance(layer, torch.nn.ReLU):
                h = torch.relu(fq(h, *fmt(c, "data_in"), signed=False))
            else:
                h = layer(h)
        F.cross_entropy(h, y).item()
        (h.argmax(1) == y).float().mean().item()


class StorageClock:
    """Time spent inside the storage's outermost calls, per trial."""

    def __init__(self, store, backend):
        self.depth, self.now, self.per_trial = 0, 0.0, []
        for name in STORAGE_CALLS:
            if hasattr(store, name):
                setattr(store, name, self._timed(getattr(store, name)))
        if backend is not None:
            backend.sync = self._timed(backend.sync)

    def _timed(self, fn):
        def timed(*args, **kwargs):
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.now += time.perf_counter() - t0
        return timed

    def trial_done(self):
        self.per_trial.append(self.now)
        self.now = 0.0


def callbacks(*fns):
    return one_callback(*fns) if one_callback else [f for f in fns if f]


def search_threads(cfg, val_rows: int) -> int | None:
    return pick_threads(cfg, val_rows) if pick_threads else None


def quantiles(values: list[float]) -> tuple[float, float]:
    v = sorted(values)
    return statistics.median(v), v[min(len(v) - 1, round(0.9 * (len(v) - 1)))]


def setting(config: Path, ckpt: Path, data_path: str, num_samples: int | None, trials: int, rounds: int,
            out: Path) -> dict:
    s = load_settings(config, data_path=data_path, load_name=str(ckpt), accelerator="cpu", project_dir=str(out))
    raw = copy.deepcopy(s.search)
    ev = raw["strategy"]["sw_runner"]["basic_evaluation"]
    if num_samples is None:
        ev.pop("num_samples", None)
    else:
        ev["num_samples"] = num_samples
    raw["strategy"]["setup"]["sampler"] = "random"
    cfg = parse_search(raw, s.seed, {"sampler": "random"})
    p = prepare(s)
    threads = search_threads(cfg, len(p.data.val))
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    from bitsmith.graph import trace

    base = trace(p.model.eval(), p.data.in_shape)
    space = build_space(base, cfg.space)
    objective = Objective(cfg, base, space, Context(p.data, p.device, cfg.seed))
    n = len(p.data.val) if num_samples is None else min(num_samples, len(p.data.val))
    x, y = p.data.val.x[:n].clone(), p.data.val.y[:n].clone()

    trial_times, storage_times, points = [], [], []
    for r in range(rounds):
        path = out / f"{config.stem}-{num_samples}-{r}.journal"
        path.unlink(missing_ok=True)
        store, backend = open_storage(str(path), path)
        if hasattr(store, "creation_attrs"):
            store.creation_attrs = {WORKER_ATTR: WORKER}
        clock = StorageClock(store, backend)
        study = optuna.create_study(storage=store, sampler=make_sampler("random", cfg.seed + r, objective.params),
                                    directions=cfg.directions)
        stamps = []

        def stamp(st, t, stamps=stamps, clock=clock):
            clock.trial_done()
            stamps.append(time.perf_counter())

        cb = callbacks(lambda st, t: None, lambda st, t, b=backend: b.sync(),
                       optuna.study.MaxTrialsCallback(trials + WARMUP), stamp)
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=trials + WARMUP, callbacks=cb, gc_after_trial=False)
        starts = [t0, *stamps]
        trial_times += [b - a for a, b in zip(starts, starts[1:])][WARMUP:]
        storage_times += clock.per_trial[WARMUP:]
        points += [t.params for t in study.trials[WARMUP:]]

    torch.set_num_threads(1)
    bare = []
    for params in points[:trials]:
        cfg_dict = space.passes(params)[0][1]
        t0 = time.perf_counter()
        bare_eval(p.model, cfg_dict, x, y)
        bare.append(time.perf_counter() - t0)

    # A whole `bitsmith search`, as a user runs it; per-trial figures read off its study.
    torch.set_num_threads(default_threads)
    run = s.model_copy(update={"search": raw, "project_dir": str(out / f"run-{config.stem}-{num_samples}")})
    from rich.console import Console

    with optuna_quiet():
        summary = run_search(run, None, fresh=True, overrides={"sampler": "random", "n_trials": trials + WARMUP},
                             console=Console(quiet=True))
    journal = Path(summary["out"]) / "study.journal"  # older commits: the study's folder held the journal
    if not journal.exists():
        journal = Path(summary["out"]).parent / "study.journal"  # the project's journal, beside the study folder
    study = optuna.load_study(study_name=summary["study"], storage=open_storage(None, journal)[0])
    starts = sorted(t.datetime_start.timestamp() for t in study.trials)
    search_times = [b - a for a, b in zip(starts, starts[1:])][WARMUP:]
    torch.set_num_threads(default_threads)
    return {"model": s.model, "rows": n, "threads": threads or default_threads, "bare": quantiles(bare),
            "trial": quantiles(trial_times), "storage": quantiles(storage_times), "search": quantiles(search_times)}


def report(name: str, load: str, r: dict) -> None:
    ms = lambda v: f"{v * 1e3:6.2f}"  # noqa: E731
    bare = r["bare"][0]
    print(f"[{name}] {load}: model={r['model']} rows/trial={r['rows']} search threads={r['threads']}")
    print(f"  bare PyTorch evaluation   median {ms(bare)} ms")
    for key, label in (("trial", "per trial (loop)"), ("storage", "storage per trial"),
                       ("search", "per trial (search)")):
        med, p90 = r[key]
        print(f"  {label:24s}  median {ms(med)} ms  p90 {ms(p90)} ms   ratio to bare {med / bare:5.2f}x / "
              f"{p90 / bare:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-path")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loads", default="0,2", help="busy background processes, comma-separated (0: idle)")
    ap.add_argument("--only", choices=("whole", "512"), help="run one kind of setting")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as `bitsmith search` does: no per-trial log lines
    data_path = args.data_path or str(jsc_layout_file(830_000))
    print(f"bitsmith from {Path(bitsmith.__file__).parent}  torch default threads={torch.get_num_threads()} "
          f"optuna={optuna.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        toy = train_quickly("jsc-toy", data_path, out)
        tiny = train_quickly("jsc-tiny", data_path, out)
        settings = []
        if args.only in (None, "whole"):
            settings.append(("1: jsc-toy PTQ, whole validation split", "jsc_toy_by_type.toml", toy, None))
        if args.only in (None, "512"):
            settings += [("2: jsc_tiny_by_type.toml, 512 samples", "jsc_tiny_by_type.toml", tiny, 512),
                         ("2: jsc_toy_by_type.toml, 512 samples", "jsc_toy_by_type.toml", toy, 512)]
        for load in (int(v) for v in args.loads.split(",")):
            with busy(load) as b:
                for name, cfg, ckpt, rows in settings:
                    trials = args.trials if rows else max(20, args.trials // 5)
                    r = setting(CONFIGS / cfg, ckpt, data_path, rows, trials, args.rounds, out / f"l{load}")
                    report(name, b.label, r)


if __name__ == "__main__":
    main()
