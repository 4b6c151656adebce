"""Per-trial cost of `bitsmith search` against bare PyTorch, measured in one run.

Two settings (both random sampler, default journal storage unless said; each
study timing is the best of three fresh studies, each candidate timing the best
of three, so that a busy moment of the machine does not decide):

1. post-training quantization search of jsc-toy scored on the WHOLE validation
   split: bitsmith's per-candidate work (build the candidate from the base graph,
   evaluate, hardware metrics) vs the bare PyTorch time of the same evaluation
   (the same fake-quantized forward over the same tensors, written by hand).
   Target: <= 1.5x. The sampler's and the storage's time are reported apart.
2. jsc-tiny and jsc-toy scoring 512 validation samples per trial, 100 trials:
   end-to-end time per trial (target <= 3 ms), beside the bare evaluation.

    python benchmarks/search_overhead.py [--data-path JSC_FILE] [--trials 100]

Without --data-path a JSC-layout file of the real set's size (830,000 rows) is
generated once in the temp directory.
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
from _common import jsc_layout_file  # noqa: E402

from bitsmith.config import load_settings  # noqa: E402
from bitsmith.graph import trace  # noqa: E402
from bitsmith.jobs import prepare  # noqa: E402
from bitsmith.search.config import parse_search  # noqa: E402
from bitsmith.search.runners import Context  # noqa: E402
from bitsmith.search.samplers import make_sampler  # noqa: E402
from bitsmith.search.spaces import build_space  # noqa: E402
from bitsmith.search.storage import open_storage  # noqa: E402
from bitsmith.search.study import Objective, build_candidate  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def train_quickly(model: str, data_path: str, out: Path) -> Path:
    from bitsmith import jobs

    s = load_settings(None, model=model, dataset="jsc", data_path=data_path, max_epochs=1, batch_size=1024,
                      project_dir=str(out), accelerator="cpu")
    from rich.console import Console

    jobs.train(s, Console(quiet=True))
    return out / f"{model}_jsc" / "checkpoints" / "best.ckpt"


def bare_eval(base_model, cfg: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
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
        for i, layer in enumerate(base_model.seq_blocks):
            key = type(layer).__name__.lower() if cfg.get("by") == "type" else f"seq_blocks_{i}"
            c = cfg.get(key, {}).get("config", {})
            if c.get("name") == "integer" and isinstance(layer, torch.nn.Linear):
                h = F.linear(fq(h, *fmt(c, "data_in")), fq(layer.weight, *fmt(c, "weight")),
                             fq(layer.bias, *fmt(c, "bias")))
            elif c.get("name") == "integer" and isinstance(layer, torch.nn.ReLU):
                h = torch.relu(fq(h, *fmt(c, "data_in"), signed=False))
            else:
                h = layer(h)
        return {"loss": F.cross_entropy(h, y).item(), "accuracy": (h.argmax(1) == y).float().mean().item()}


def setting(config: Path, ckpt: Path, data_path: str, num_samples: int | None, trials: int, out: Path) -> dict:
    s = load_settings(config, data_path=data_path, load_name=str(ckpt), accelerator="cpu", project_dir=str(out))
    raw = copy.deepcopy(s.search)
    ev = raw["strategy"]["sw_runner"]["basic_evaluation"]
    if num_samples is None:
        ev.pop("num_samples", None)
    else:
        ev["num_samples"] = num_samples
    cfg = parse_search(raw, s.seed, {"sampler": "random"})
    p = prepare(s)
    base = trace(p.model.eval(), p.data.in_shape)
    space = build_space(base, cfg.space)
    objective = Objective(cfg, base, space, Context(p.data, p.device, cfg.seed))
    n = len(p.data.val) if num_samples is None else min(num_samples, len(p.data.val))
    x, y = p.data.val.x[:n], p.data.val.y[:n]

    def run_study(storage, backend):
        study = optuna.create_study(storage=storage, sampler=make_sampler("random", cfg.seed, objective.params),
                                    directions=cfg.directions)
        cb = [lambda st, t: backend.sync()] if backend else []
        study.optimize(objective, n_trials=5, callbacks=cb)  # warm-up
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=trials, callbacks=cb)
        return (time.perf_counter() - t0) / trials, study

    def best_of_3(make_storage):  # fresh studies; the fastest run is the least disturbed one
        runs = [run_study(*make_storage(i)) for i in range(3)]
        return min(runs, key=lambda r: r[0])

    def journal_storage(i):
        path = out / f"{config.stem}-{num_samples}-{i}.journal"
        path.unlink(missing_ok=True)
        return open_storage(str(path), path)

    t_mem, study = best_of_3(lambda i: (None, None))
    t_journal, _ = best_of_3(journal_storage)
    points = [t.params for t in study.trials[5:]]
    # bitsmith's own per-candidate work and the bare evaluation, interleaved over the same points.
    ours, bare = [], []
    for params in points:  # best of 3 for each, so a hiccup of the machine does not decide
        cfg_dict = space.passes(params)[0][1]
        o, b = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            objective.measure(build_candidate(base, space, params)[0])
            o.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bare_eval(p.model, cfg_dict, x, y)
            b.append(time.perf_counter() - t0)
        ours.append(min(o))
        bare.append(min(b))
    return {"model": s.model, "rows": n, "trial_journal": t_journal, "trial_memory": t_mem,
            "ours": statistics.mean(ours), "bare": statistics.mean(bare)}


def report(name: str, r: dict) -> None:
    ms = lambda v: f"{v * 1e3:7.3f} ms"  # noqa: E731
    print(f"[{name}] model={r['model']} rows/trial={r['rows']}")
    print(f"  bare PyTorch fake-quantized evaluation  {ms(r['bare'])}")
    print(f"  bitsmith candidate + metrics            {ms(r['ours'])}   ratio {r['ours'] / r['bare']:.2f}x")
    print(f"  sampler + Optuna bookkeeping            {ms(max(r['trial_memory'] - r['ours'], 0.0))}")
    print(f"  journal storage                         {ms(r['trial_journal'] - r['trial_memory'])}")
    print(f"  end to end per trial (journal)          {ms(r['trial_journal'])}   "
          f"ratio to bare {r['trial_journal'] / r['bare']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-path")
    ap.add_argument("--trials", type=int, default=100)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as `bitsmith search` does: no per-trial log lines
    data_path = args.data_path or str(jsc_layout_file(830_000))
    print(f"torch threads={torch.get_num_threads()} optuna={optuna.__version__} data={data_path}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        toy = train_quickly("jsc-toy", data_path, out)
        tiny = train_quickly("jsc-tiny", data_path, out)
        report("1: PTQ, whole validation split", setting(CONFIGS / "jsc_toy_by_type.toml", toy, data_path, None,
                                                         args.trials, out))
        for cfg, ckpt in (("jsc_tiny_by_type.toml", tiny), ("jsc_toy_by_type.toml", toy)):
            r = setting(CONFIGS / cfg, ckpt, data_path, 512, args.trials, out)
            report(f"2: {cfg}, 512 samples", r)
            print(f"  target: <= 3 ms per trial end to end -> {'met' if r['trial_journal'] <= 3e-3 else 'NOT met'}")


if __name__ == "__main__":
    main()
