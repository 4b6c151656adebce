"""Intra-op threads per search process, chosen by the size of the work (set once per search, never per trial)."""

from __future__ import annotations

# From about this many rows scored per trial, more intra-op threads pay off on an idle machine
# (benchmarks/threads.py: jsc-toy, whole validation split, 66,400 rows: 17 ms with 2 threads, 43 ms with 1;
# equal with two busy processes); below it a trial is mostly Python, and threads only cost.
LARGE_EVALUATION_ROWS = 16_384


def search_threads(cfg, val_rows: int, n_workers: int = 1) -> int:
    """Intra-op threads per process: ``setup.num_threads``, else the latency runner's; else torch's default for
    a single process scoring at least LARGE_EVALUATION_ROWS rows per trial, and 1 otherwise."""
    explicit = cfg.setup.num_threads or next((t for r in cfg.runners if (t := r.threads())), None)
    if explicit:
        return explicit
    rows = max((min(r.settings.num_samples or val_rows, val_rows) for r in cfg.runners
                if r.name == "basic_evaluation"), default=0)
    import torch

    return torch.get_num_threads() if n_workers == 1 and rows >= LARGE_EVALUATION_ROWS else 1
