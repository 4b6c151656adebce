import pytest
import torch
from torch import fx, nn

from bitsmith.errors import BitsmithError
from bitsmith.models import MODELS, build_model


def test_registry_has_the_lab_models():
    assert {"jsc-tiny", "jsc-toy", "jsc-s", "jsc-three-linear-layers", "digits-mlp", "digits-cnn"} <= set(MODELS)


@pytest.mark.parametrize("name,layers", [
    ("jsc-tiny", [nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.ReLU]),
    ("jsc-toy", [nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d,
                 nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU]),
    ("jsc-three-linear-layers", [nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU,
                                 nn.Linear, nn.ReLU]),
])
def test_jsc_models_match_their_definitions(name, layers):
    model = build_model(name, (16,), 5)
    assert [type(m) for m in model.seq_blocks] == layers
    assert model(torch.randn(7, 16)).shape == (7, 5)


def test_jsc_widths():
    toy = build_model("jsc-toy", (16,), 5)
    assert [(m.in_features, m.out_features) for m in toy.seq_blocks if isinstance(m, nn.Linear)] == [
        (16, 8), (8, 8), (8, 5)]
    s = build_model("jsc-s", (16,), 5)
    assert [(m.in_features, m.out_features) for m in s.seq_blocks if isinstance(m, nn.Linear)] == [
        (16, 64), (64, 32), (32, 32), (32, 5)]


def test_traced_node_names_follow_seq_blocks():
    gm = fx.symbolic_trace(build_model("jsc-tiny", (16,), 5))
    names = [n.name for n in gm.graph.nodes if n.op == "call_module"]
    assert names == ["seq_blocks_0", "seq_blocks_1", "seq_blocks_2", "seq_blocks_3"]


def test_digits_models_shapes():
    assert build_model("digits-mlp", (64,), 10)(torch.randn(3, 64)).shape == (3, 10)
    assert build_model("digits-cnn", (1, 8, 8), 10).eval()(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(BitsmithError, match="digits-image"):
        build_model("digits-cnn", (64,), 10)
    with pytest.raises(BitsmithError, match="flat"):
        build_model("jsc-toy", (1, 8, 8), 10)


def test_user_model_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def wide(in_shape, n_classes):\n"
        "    return nn.Sequential(nn.Linear(in_shape[0], 40), nn.ReLU(), nn.Linear(40, n_classes))\n"
        "def not_a_model(in_shape, n_classes):\n"
        "    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("my_models:wide", (16,), 5)
    assert model[0].out_features == 40
    with pytest.raises(BitsmithError, match="not a torch nn.Module"):
        build_model("my_models:not_a_model", (16,), 5)
    with pytest.raises(BitsmithError, match="no callable 'nope'"):
        build_model("my_models:nope", (16,), 5)
    with pytest.raises(BitsmithError, match="cannot import"):
        build_model("no_such_module_xyz:f", (16,), 5)


def test_unknown_model_lists_known():
    with pytest.raises(BitsmithError, match=r"did you mean 'jsc-tiny'.*known: .*jsc-toy"):
        build_model("jsc-tinny", (16,), 5)
