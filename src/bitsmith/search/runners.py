"""Runners measure a candidate graph and return named metrics.

Software runners see data; hardware runners read the graph's structure and
formats. Each trial builds its own runner state: nothing (no metric object,
model or graph) carries over from one trial to the next.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bitsmith.config import check_keys
from bitsmith.errors import BitsmithError, unknown_name
from bitsmith.graph import Graph
from bitsmith.passes.analysis import analyze, memory_density
from bitsmith.train import EVAL_BATCH


@dataclass
class Context:
    """What runners may use: the data, the device and the search seed."""

    data: Any  # DataSplits
    device: torch.device
    seed: int


Runner = Callable[[Graph, Context], tuple[Graph, dict[str, float]]]


def _split_and_samples(cfg: dict[str, Any], where: str, default_split: str) -> tuple[str, int | None]:
    split = cfg.get("data_loader", default_split)
    if split not in ("train_dataloader", "val_dataloader", "test_dataloader"):
        raise BitsmithError(f"{where} data_loader = {split!r}; use \"val_dataloader\" (or train_/test_dataloader)")
    n = cfg.get("num_samples")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise BitsmithError(f"{where} num_samples = {n!r} must be a positive integer (or absent: the whole split)")
    return split, n


def basic_evaluation(cfg: dict[str, Any], where: str) -> Runner:
    """Loss and accuracy on the validation split (``num_samples`` first rows; absent = all)."""
    check_keys(cfg, {"data_loader", "num_samples", "batch_size"}, where)
    split, n = _split_and_samples(cfg, where, "val_dataloader")
    if split == "train_dataloader":
        raise BitsmithError(f"{where} data_loader = \"train_dataloader\": candidates are scored on data they "
                            "were not trained on; use \"val_dataloader\"")
    batch = cfg.get("batch_size", EVAL_BATCH)

    def run(graph: Graph, ctx: Context):
        from bitsmith.train import evaluate

        return graph, evaluate(graph.gm, ctx.data.split(split), ctx.device, batch, n)

    return run


def basic_train(cfg: dict[str, Any], where: str) -> Runner:
    """Fine-tune a copy of the candidate (for width search from random init, or QAT)."""
    keys = {"max_epochs", "max_steps", "batch_size", "learning_rate", "optimizer", "weight_decay", "scheduler",
            "data_loader", "num_samples"}
    check_keys(cfg, keys, where)
    settings = {"max_epochs": cfg.get("max_epochs", 1), "max_steps": cfg.get("max_steps"),
                "batch_size": cfg.get("batch_size", 128), "learning_rate": cfg.get("learning_rate", 1e-3),
                "optimizer": cfg.get("optimizer", "adam"), "weight_decay": cfg.get("weight_decay", 0.0),
                "scheduler": cfg.get("scheduler", "cosine")}
    from pydantic import ValidationError

    from bitsmith.config import Settings

    try:  # the same checks as `bitsmith train`
        Settings(**{k: v for k, v in settings.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        raise BitsmithError(f"{where} {first['loc'][0]} = {first['input']!r}: {first['msg']}") from None

    if cfg.get("data_loader", "train_dataloader") != "train_dataloader":
        raise BitsmithError(f"{where} data_loader = {cfg['data_loader']!r}: fine-tuning uses the training split "
                            "(\"train_dataloader\"), never the data candidates are scored on")
    _, n = _split_and_samples(cfg, where, "train_dataloader")

    def run(graph: Graph, ctx: Context):
        from dataclasses import replace

        from bitsmith.data import Split
        from bitsmith.train import fit

        data = ctx.data if n is None else replace(ctx.data, train=Split(ctx.data.train.x[:n], ctx.data.train.y[:n]))
        trained = graph.clone()  # never train modules shared with the base graph
        result = fit(trained.gm, data, seed=ctx.seed, device=ctx.device, **settings)
        trained.gm.eval()
        return trained, {"train_loss": result.history[-1]["loss"]}

    return run


def latency(cfg: dict[str, Any], where: str) -> Runner:
    """Median forward time per batch on this machine (the host's time for the simulated network)."""
    check_keys(cfg, {"batch_size", "warmup", "repeats", "num_threads"}, where)
    batch = cfg.get("batch_size", 512)
    warmup, repeats = cfg.get("warmup", 3), cfg.get("repeats", 10)
    threads = cfg.get("num_threads")

    def run(graph: Graph, ctx: Context):
        x = ctx.data.val.x[:batch].to(ctx.device)
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                for _ in range(warmup):
                    graph.gm(x)
                times = []
                for _ in range(repeats):
                    if ctx.device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    graph.gm(x)
                    if ctx.device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
        finally:
            torch.set_num_threads(old)
        return graph, {"latency": statistics.median(times) * 1e3, "latency_batch_size": len(x),
                       "latency_threads": threads or old}

    return run


def _hardware(keys: dict[str, str], extra: set[str] = frozenset()) -> Callable[[dict, str], Runner]:
    def make(cfg: dict[str, Any], where: str) -> Runner:
        check_keys(cfg, set(extra), where)
        compare_to = cfg.get("compare_to")

        def run(graph: Graph, ctx: Context):
            totals = analyze(graph)["totals"]
            out = {metric: totals[source] for metric, source in keys.items()}
            if compare_to is not None:
                out["memory_density"] = memory_density(totals["average_bitwidth"], compare_to)
            return graph, out

        return run

    return make


SW_RUNNERS: dict[str, Callable[[dict, str], Runner]] = {
    "basic_evaluation": basic_evaluation, "basic_train": basic_train, "latency": latency}
HW_RUNNERS: dict[str, Callable[[dict, str], Runner]] = {
    "average_bitwidth": _hardware({"average_bitwidth": "average_bitwidth",
                                   "average_activation_bitwidth": "average_activation_bitwidth"}, {"compare_to"}),
    "model_size": _hardware({"model_size": "model_size"}),
    "params": _hardware({"params": "params"}),
    "flops": _hardware({"flops": "flops", "macs": "macs"}),
    "macs": _hardware({"macs": "macs"}),
    "bops": _hardware({"bops": "bops"}),
}
# Which metrics each runner gives, for checking the metrics table before any trial.
PRODUCES = {
    "basic_evaluation": {"loss", "accuracy"}, "basic_train": {"train_loss"},
    "latency": {"latency", "latency_batch_size", "latency_threads"},
    "average_bitwidth": {"average_bitwidth", "average_activation_bitwidth", "memory_density"},
    "model_size": {"model_size"}, "params": {"params"}, "flops": {"flops", "macs"}, "macs": {"macs"},
    "bops": {"bops"},
}
ORDER = ("basic_train", "basic_evaluation", "latency")  # train before anything measures the candidate


def make_runners(sw: dict[str, dict], hw: dict[str, dict]) -> tuple[list[tuple[str, Runner]], list[tuple[str, Runner]]]:
    """Checked runners in the order they run; basic_train implies an evaluation after it."""
    for name in sw:
        if name not in SW_RUNNERS:
            raise unknown_name("software runner", name, SW_RUNNERS, "in [search.strategy.sw_runner]")
    for name in hw:
        if name not in HW_RUNNERS:
            raise unknown_name("hardware runner", name, HW_RUNNERS, "in [search.strategy.hw_runner]")
    if "basic_train" in sw and "basic_evaluation" not in sw:
        sw = {**sw, "basic_evaluation": {}}
    software = [(n, SW_RUNNERS[n](sw[n], f"[search.strategy.sw_runner.{n}]")) for n in ORDER if n in sw]
    hardware = [(n, HW_RUNNERS[n](cfg, f"[search.strategy.hw_runner.{n}]")) for n, cfg in hw.items()]
    return software, hardware


def produced(sw: dict[str, dict], hw: dict[str, dict]) -> set[str]:
    names = set(sw) | ({"basic_evaluation"} if "basic_train" in sw else set())
    out = set().union(*(PRODUCES[n] for n in names), *(PRODUCES[n] for n in hw)) if (names or hw) else set()
    if "average_bitwidth" in hw and hw["average_bitwidth"].get("compare_to") is None:
        out.discard("memory_density")
    return out


__all__ = ["HW_RUNNERS", "SW_RUNNERS", "Context", "make_runners", "produced"]
