"""The `latency` runner: its settings, its measurement rule on real small models, and a search that records it."""

import csv
import gc
from pathlib import Path

import pytest
import torch

from bitsmith.config import parse
from bitsmith.errors import BitsmithError
from bitsmith.search.runners import Context, make_runners
from bitsmith.search.runners.latency import Latency, LatencySettings, batch_of, measure, quartiles
from tests.helpers import graph_of

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WHERE = ("search", "strategy", "sw_runner", "latency")


def settings(**kw) -> LatencySettings:
    return parse(LatencySettings, kw, WHERE)


# --- settings ---------------------------------------------------------------------------------------------------

def test_mase_and_old_names_are_read_as_the_new_settings():
    assert settings(num_batches=7, num_warmup_batches=2).model_dump(include={"min_repeats", "warmup"}) == {
        "min_repeats": 7, "warmup": 2}
    assert settings(repeats=5).min_repeats == 5  # configs/search_digits_joint.toml writes repeats
    # The resume digest records the settings by their own names, whichever spelling the file used.
    assert Latency(settings(num_batches=7)).digest_data() == Latency(settings(min_repeats=7)).digest_data()


@pytest.mark.parametrize("table,message", [
    ({"batch_size": 0}, r"batch_size = 0 in the config: expected a value >= 1"),
    ({"warmup": -1}, r"warmup = -1 in the config: expected a value >= 0"),
    ({"num_warmup_batches": -1}, r"num_warmup_batches = -1 in the config: expected a value >= 0"),
    ({"repeats": 0}, r"repeats = 0 in the config: expected a value >= 1"),
    ({"num_batches": 0}, r"num_batches = 0 in the config: expected a value >= 1"),
    ({"max_repeats": 0}, r"max_repeats = 0 in the config: expected a value >= 1"),
    ({"min_repeats": 20, "max_repeats": 10}, r"max_repeats = 10 is below min_repeats = 20"),
    ({"max_time_ms": 0}, r"max_time_ms = 0 in the config: expected a value > 0"),
    ({"rel_tolerance": 0}, r"rel_tolerance = 0 in the config: expected a value > 0"),
    ({"rel_tolerance": 11}, r"rel_tolerance = 11 in the config: expected a value <= 10"),
    ({"rel_tolerance": "0.05"}, r"rel_tolerance = '0.05' in the config: expected a number"),
    ({"block_ms": -0.2}, r"block_ms = -0.2 in the config: expected a value > 0"),
    ({"num_threads": 0}, r"num_threads = 0 in the config: expected a value >= 1"),
    ({"max_time": 5}, r"unknown key 'max_time' .*did you mean 'max_time_ms'"),
])
def test_bad_settings_name_the_key_and_the_range(table, message):
    with pytest.raises(BitsmithError, match=message) as e:
        make_runners({"latency": table}, {})
    assert "[search.strategy.sw_runner.latency]" in str(e.value)


def test_threads_setting_is_what_the_runner_asks_of_the_search():
    assert Latency(settings(num_threads=3)).threads() == 3
    assert Latency(settings()).threads() is None  # the process's threads, as the search sets them


# --- the measurement ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    """A real small model and a one-row input: the fastest case, where blocks hold several calls."""
    g = graph_of("jsc-tiny")
    x = torch.randn(1, 16)

    def forward():
        with torch.no_grad():
            return g.gm(x)

    return forward


def test_quartiles_bracket_the_median_and_the_iqr_fits_in_the_range(tiny):
    t = measure(tiny, settings(min_repeats=15, rel_tolerance=10))
    q1, med, q3 = quartiles(t.blocks)
    assert min(t.blocks) <= q1 <= med <= q3 <= max(t.blocks)
    assert t.median_ms == med > 0
    assert 0 <= t.iqr_ms <= max(t.blocks) - min(t.blocks)
    assert quartiles([2.0]) == (2.0, 2.0, 2.0)


def test_every_call_is_warm_up_or_in_a_block(tiny):
    calls = 0

    def counted():
        nonlocal calls
        calls += 1
        tiny()

    t = measure(counted, settings(warmup=4, min_repeats=6, rel_tolerance=10))
    assert calls == 4 + t.calls_per_block * len(t.blocks)
    # Without warm-up, one call still calibrates the block.
    calls = 0
    t = measure(counted, settings(warmup=0, min_repeats=6, rel_tolerance=10))
    assert calls == 1 + t.calls_per_block * len(t.blocks)


def test_a_block_of_one_call_when_one_call_is_long_enough(tiny):
    assert measure(tiny, settings(block_ms=1e-6, min_repeats=3, rel_tolerance=10)).calls_per_block == 1


def test_a_tighter_tolerance_takes_more_blocks(tiny):
    loose = measure(tiny, settings(min_repeats=8, rel_tolerance=10))
    # A tolerance no real spread meets: only the cap stops it (the time cap is out of reach here).
    tight = measure(tiny, settings(min_repeats=8, max_repeats=40, rel_tolerance=1e-12, max_time_ms=3_600_000))
    assert loose.converged and len(loose.blocks) == 8
    assert not tight.converged and len(tight.blocks) == 40


def test_the_time_cap_stops_after_the_minimum_blocks(tiny):
    # The deadline has passed before the first block: it stops as soon as min_repeats blocks are in.
    t = measure(tiny, settings(min_repeats=5, max_repeats=1000, rel_tolerance=1e-12, max_time_ms=1e-6))
    assert len(t.blocks) == 5 and not t.converged


@pytest.mark.parametrize("was_enabled", [True, False])
def test_garbage_collection_is_paused_while_timing_and_restored(tiny, was_enabled):
    seen = []

    def probe():
        seen.append(gc.isenabled())
        tiny()

    (gc.enable if was_enabled else gc.disable)()
    try:
        measure(probe, settings(min_repeats=3, rel_tolerance=10))
        assert not any(seen) and gc.isenabled() == was_enabled

        def broken():
            raise RuntimeError("forward failed")

        with pytest.raises(RuntimeError):
            measure(broken, settings())
        assert gc.isenabled() == was_enabled
    finally:
        gc.enable()


def test_batch_of_keeps_the_stated_size():
    x = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(batch_of(x, 2), x[:2])
    cycled = batch_of(x, 7)
    assert cycled.shape == (7, 2) and torch.equal(cycled[3:6], x) and torch.equal(cycled[6], x[0])


# --- the runner ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    from bitsmith.data import get_dataset

    return get_dataset("digits")


def run_latency(digits, device="cpu", **kw):
    graph = graph_of("digits-mlp", (64,), 10)
    if device != "cpu":
        graph.gm.to(device)
    runner = make_runners({"latency": kw}, {})[0]
    out_graph, metrics = runner(graph, Context(digits, torch.device(device), 0))
    assert out_graph is graph
    return runner, metrics


def test_runner_gives_every_metric_it_declares(digits):
    runner, m = run_latency(digits, batch_size=2048, min_repeats=5)
    assert set(m) == Latency.metrics == runner.produces()
    assert all(v > 0 for v in m.values())
    assert m["latency_batch_size"] == 1 and m["throughput_batch_size"] == 2048  # more rows than the split has
    assert m["latency_threads"] == torch.get_num_threads()
    assert m["latency_iqr"] >= 0
    # One row costs less than 2048 rows: the batch time is batch_size / throughput.
    assert m["latency"] < 2048 / m["throughput"] * 1e3


def test_a_candidate_left_in_training_mode_is_timed_in_eval_mode_and_left_as_it_was():
    """A fine-tuned candidate may come back in training mode; BatchNorm there cannot take one row."""
    from bitsmith.data.jsc import CLASS_NAMES, FEATURES
    from bitsmith.data._base import DataSplits, Split

    graph = graph_of("jsc-toy", (16,), 5)
    graph.gm.train()
    rows = Split(torch.randn(64, len(FEATURES)), torch.zeros(64, dtype=torch.long))
    data = DataSplits("jsc", rows, rows, rows, (len(FEATURES),), CLASS_NAMES, "test")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        graph.gm(rows.x[:1])  # what the runner would meet without eval mode
    runner = make_runners({"latency": {"min_repeats": 3, "max_time_ms": 5}}, {})[0]
    _, m = runner(graph, Context(data, torch.device("cpu"), 0))
    assert m["latency"] > 0
    assert all(module.training for module in graph.gm.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runner_on_cuda(digits):
    _, m = run_latency(digits, device="cuda", min_repeats=5)
    assert m["latency"] > 0 and m["throughput"] > 0 and m["latency_iqr"] >= 0


# --- a real search ------------------------------------------------------------------------------------------------

def test_search_records_latency_iqr_and_throughput_per_trial(tmp_path, capsys):
    from bitsmith.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "digits-mlp", "digits", "--max-epochs", "1", "--project-dir", str(tmp_path)])
    assert done.value.code == 0
    ckpt = tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    config = tmp_path / "search.toml"
    config.write_text((CONFIGS / "search_digits_quantize.toml").read_text()
                      + "\n[search.strategy.sw_runner.latency]\nbatch_size = 64\nnum_batches = 5\n")
    with pytest.raises(SystemExit) as done:
        main(["search", "--config", str(config), "--load", str(ckpt), "--project-dir", str(tmp_path),
              "--n-trials", "3", "--sampler", "random"])
    assert done.value.code == 0, capsys.readouterr().err
    with open(tmp_path / "digits-mlp_digits" / "search" / "latest" / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        assert float(row["sw.latency"]) > 0 and float(row["sw.latency_iqr"]) >= 0
        assert float(row["sw.throughput"]) > 0 and float(row["sw.throughput_batch_size"]) == 64
        assert float(row["sw.latency_batch_size"]) == 1
