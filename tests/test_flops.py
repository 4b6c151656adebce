"""FLOPs agree with PyTorch's FlopCounterMode on every bundled model; element-wise work is counted apart."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph
from bitsmith.models import MODELS, build_model
from bitsmith.passes.analysis import analyze, count_flops
from bitsmith.passes.channels import channel_multiply_pass
from bitsmith.passes.quantize import quantize_pass
from bitsmith.search.runners import RUNNERS, Context
from tests.helpers import graph_of, integer

NA = {"config": {"name": None}}
# The input shapes and classes of the bundled data sets: jsc, digits, digits-image.
SHAPES = [((16,), 5), ((64,), 10), ((1, 8, 8), 10)]
WIDTHFUL = ("linear", "conv2d")


def _accepts(name, shape, classes) -> bool:
    try:
        build_model(name, shape, classes)
    except BitsmithError:  # a model refuses a data set of the wrong shape
        return False
    return True


# Every registered model, with every bundled data set's shape it takes.
CASES = [pytest.param(n, s, c, id=f"{n}-{'x'.join(map(str, s))}")
         for n in sorted(MODELS) for s, c in SHAPES if _accepts(n, s, c)]


def torch_flops(graph: Graph) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        graph.gm.eval()(torch.zeros(1, *graph.in_shape))
    return counter.get_total_flops()


def test_every_registered_model_is_checked():
    assert {n for n in MODELS if any(_accepts(n, s, c) for s, c in SHAPES)} == set(MODELS)


@pytest.mark.parametrize("name,shape,classes", CASES)
def test_float_flops_equal_pytorch(name, shape, classes):
    g = graph_of(name, shape, classes)
    _, info = count_flops(g)
    assert info["flops"] == torch_flops(g) == 2 * info["macs"] > 0


@pytest.mark.parametrize("name,shape,classes", CASES)
def test_quantized_flops_equal_pytorch(name, shape, classes):
    g = graph_of(name, shape, classes)
    kinds = {info.kind for info in g.nodes.values()}
    cfg = {"by": "type", "default": NA, **{k: integer(6) for k in WIDTHFUL if k in kinds}}
    if "relu" in kinds:
        cfg["relu"] = integer(6, relu=True)
    q, info = quantize_pass(g, cfg)
    assert info["quantized"]  # the check is on a quantized model, not the float one again
    assert count_flops(q)[1]["flops"] == torch_flops(q) == count_flops(g)[1]["flops"]


def _layers(name, shape, classes) -> list[str]:
    return [n for n, info in graph_of(name, shape, classes).nodes.items() if info.kind in WIDTHFUL]


# A model with one Linear/Conv layer (jsc-tiny) has no width to change: both are fixed by the data.
WIDENABLE = [c for c in CASES if len(_layers(*c.values)) >= 2]


def test_only_single_layer_models_are_left_out_of_widening():
    assert {c.values[0] for c in CASES} - {c.values[0] for c in WIDENABLE} == {"jsc-tiny"}


@pytest.mark.parametrize("name,shape,classes", WIDENABLE)
def test_channel_multiplied_flops_equal_pytorch(name, shape, classes):
    g = graph_of(name, shape, classes)
    layers = _layers(name, shape, classes)
    # Widen every layer but the last (whose output is the classes); consumers follow (mode = "auto").
    factors = {n: {"config": {"name": "output_only", "channel_multiplier": 2 + i % 2}}
               for i, n in enumerate(layers[:-1])}
    cfg = {"by": "name", "mode": "auto", "default": NA, **factors}
    wide, _ = channel_multiply_pass(g, cfg)
    flops = count_flops(wide)[1]["flops"]
    assert flops == torch_flops(wide) > count_flops(g)[1]["flops"]


def test_elementwise_ops_of_digits_cnn_by_hand():
    g = graph_of("digits-cnn", (1, 8, 8), 10)
    c1, c2 = (g.gm.get_submodule(f"seq_blocks.{i}").out_channels for i in (0, 4))
    classes = g.gm.get_submodule("seq_blocks.9").out_features
    a1, a2 = c1 * 8 * 8, c2 * 4 * 4  # activations after each conv (padding 1 keeps 8x8; the max pool halves it)
    expected = {
        "seq_blocks_0": a1,  # conv bias adds
        "seq_blocks_1": 2 * a1,  # BatchNorm: scale and shift
        "seq_blocks_2": a1,  # ReLU
        "seq_blocks_3": a1,  # 2x2 max pool reads every input
        "seq_blocks_4": a2,
        "seq_blocks_5": 2 * a2,
        "seq_blocks_6": a2,
        "seq_blocks_7": a2,  # global average pool
        "seq_blocks_8": 0,  # flatten
        "seq_blocks_9": classes,  # linear bias adds
    }
    _, info = count_flops(g)
    assert {k: v["elementwise_ops"] for k, v in info["nodes"].items()} == expected
    assert info["elementwise_ops"] == 5 * a1 + 5 * a2 + classes == sum(expected.values())
    assert info["flops"] == torch_flops(g)  # element-wise work is not in FLOPs


def test_flops_runner_gives_flops_macs_and_elementwise_ops():
    g = graph_of("jsc-toy")
    runner = RUNNERS["flops"](RUNNERS["flops"].Settings())
    assert runner.produces() == {"flops", "macs", "elementwise_ops"}
    _, metrics = runner(g, Context(data=None, device=torch.device("cpu"), seed=0))
    totals = analyze(g)["totals"]
    assert metrics == {k: totals[k] for k in ("flops", "macs", "elementwise_ops")}
    assert metrics["flops"] == torch_flops(g)


def test_elementwise_ops_is_a_search_metric_of_the_flops_runner():
    from bitsmith.search.config import parse_search
    from tests.test_search import search_cfg

    metrics = {"accuracy": {"scale": 1.0, "direction": "maximize"},
               "elementwise_ops": {"scale": 1e-3, "direction": "minimize"}}
    with pytest.raises(BitsmithError, match=r"metric 'elementwise_ops' .*hw_runner.flops"):
        parse_search(search_cfg(metrics=metrics))
    raw = search_cfg(metrics=metrics)
    raw["strategy"]["hw_runner"]["flops"] = {}
    assert [m.name for m in parse_search(raw).metrics] == ["accuracy", "elementwise_ops"]
