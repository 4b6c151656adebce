"""The packed training step of a learned MLP computes what the module path computes: outputs, penalty,
gradients, calibration and accuracy; graphs it cannot take are left to the module path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bitsmith.data import get_dataset
from bitsmith.graph import trace
from bitsmith.learn import LearnSettings, calibrate, ebops, fit_learned, to_learned
from bitsmith.learned import LearnedActivation, _LearnedKernel
from bitsmith.models import build_model
from bitsmith import packed
from bitsmith.packed import pack
from bitsmith.train import eval_mode, evaluate

MODELS = [("digits-mlp", (64,), 10),  # Linear ReLU Linear ReLU Linear
          ("jsc-toy", (16,), 5),  # a float BatchNorm first, then ReLU, folded BatchNorms
          ("jsc-tiny", (16,), 5)]  # ends in a ReLU


def learned_graph(name, shape, n_classes, granularity, seed=0):
    torch.manual_seed(seed)
    graph = trace(build_model(name, shape, n_classes).eval(), shape)
    gm = to_learned(graph, LearnSettings(beta=1e-5, max_epochs=1, learning_rate=1e-3, granularity=granularity)).gm
    x = torch.randn(300, *shape) * 2
    calibrate(gm, x)
    with torch.no_grad():  # widths off their start, an exact zero, some clipped activations
        for m in gm.modules():
            if isinstance(m, _LearnedKernel):
                m.w_frac.add_(torch.randn_like(m.w_frac))
                m.weight[0, 0] = 0.0
            if isinstance(m, LearnedActivation):
                m.frac.add_(torch.randn(()) * 1.5)
    return gm, x


@pytest.mark.parametrize("dense", [True, False], ids=["feeds-per-value", "feeds-per-tensor"])
@pytest.mark.parametrize("granularity", ["weight", "channel", "layer"])
@pytest.mark.parametrize("name,shape,n_classes", MODELS)
def test_the_packed_step_has_the_outputs_penalty_and_gradients_of_the_module_path(name, shape, n_classes,
                                                                                    granularity, dense, monkeypatch):
    if not dense:  # a large model sums its weights' bits per tensor first
        monkeypatch.setattr(packed, "DENSE_FEEDS", 0)
    modules, x = learned_graph(name, shape, n_classes, granularity)
    flat_gm = copy.deepcopy(modules)
    modules.train(), flat_gm.train()
    flat = pack(flat_gm, x[:2])
    assert flat is not None and flat._per_value == dense
    out_m = modules(x[:64])
    pen_m = ebops(modules)
    (out_m.square().sum() * 0.01 + 0.37 * pen_m).backward()
    out_f, pen_f = flat.step(x[:64])
    (out_f.square().sum() * 0.01 + 0.37 * pen_f).backward()

    assert torch.equal(out_m, out_f)
    assert torch.allclose(pen_m, pen_f, rtol=1e-5)
    kernels = [m for m in modules.modules() if isinstance(m, _LearnedKernel)]
    g_values = torch.cat([t.grad.reshape(-1) for m in kernels for t in (m.weight, m.bias)])
    g_fracs = torch.cat([t.grad.reshape(-1) for m in kernels for t in (m.w_frac, m.b_frac)])
    assert torch.allclose(g_values, flat.values.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(g_fracs, flat.fracs.grad, rtol=1e-4, atol=1e-4)
    by_id = {id(m): n for n, m in flat_gm.named_modules()}
    same = dict(modules.named_modules())
    g_acts = torch.stack([same[by_id[id(a)]].frac.grad for a in flat.acts])
    assert torch.allclose(g_acts, flat.act_fracs.grad, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(flat.values.grad).all() and torch.isfinite(flat.fracs.grad).all()
    for p_f, p_m in zip([p for m in flat.prefix for p in m.parameters()],
                        [p for n, p in modules.named_parameters() if n.startswith("seq_blocks.0.")
                         and flat.prefix]):
        assert torch.allclose(p_f.grad, p_m.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("quantile", [1.0, 0.99])
@pytest.mark.parametrize("name,shape,n_classes", MODELS)
def test_packed_calibration_and_accuracy_are_the_module_paths(name, shape, n_classes, quantile):
    modules, x = learned_graph(name, shape, n_classes, "channel", seed=3)
    flat_gm = copy.deepcopy(modules)
    flat = pack(flat_gm, x[:2])
    calibrate(modules, x * 1.7, quantile)
    with eval_mode(flat_gm):
        flat.calibrate(x * 1.7, quantile)
    acts_m = [int(m.int_bits) for m in modules.modules() if isinstance(m, LearnedActivation)]
    acts_f = [int(m.int_bits) for m in flat_gm.modules() if isinstance(m, LearnedActivation)]
    assert acts_m == acts_f and acts_f != [0] * len(acts_f)
    with eval_mode(modules), eval_mode(flat_gm), torch.no_grad():
        assert torch.equal(modules(x), flat.predict(x))


def test_the_modules_read_the_trained_flat_parameters():
    modules, x = learned_graph("digits-mlp", (64,), 10, "channel")
    flat = pack(modules, x[:2])
    opt = torch.optim.SGD(flat.parameters(), lr=0.1)
    out, pen = flat.step(x[:64])
    (out.square().mean() + 1e-4 * pen).backward()
    opt.step()
    kernels = [m for m in modules.modules() if isinstance(m, _LearnedKernel)]
    assert torch.equal(torch.cat([t.reshape(-1) for m in kernels for t in (m.weight, m.bias)]), flat.values)
    assert torch.equal(torch.cat([t.reshape(-1) for m in kernels for t in (m.w_frac, m.b_frac)]), flat.fracs)


def test_graphs_that_are_not_a_chain_of_learned_linear_layers_are_left_to_the_module_path():
    torch.manual_seed(0)
    cnn = trace(build_model("digits-cnn", (1, 8, 8), 10).eval(), (1, 8, 8))
    s = LearnSettings(beta=1e-5, max_epochs=1, learning_rate=1e-3)
    assert pack(to_learned(cnn, s).gm, torch.zeros(2, 1, 8, 8)) is None
    # a float module between learned ones (a Dropout) is not taken either
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
    assert pack(to_learned(trace(mlp.eval(), (4,)), s).gm, torch.zeros(2, 4)) is None


def test_the_packed_training_history_holds_the_module_paths_evaluation_of_the_trained_modules():
    digits = get_dataset("digits")
    torch.manual_seed(0)
    graph = trace(build_model("digits-mlp", digits.in_shape, digits.n_classes).eval(), digits.in_shape)
    s = LearnSettings(beta=1e-6, max_epochs=3, learning_rate=5e-3, seed=2)
    learned, history = fit_learned(graph.clone(), digits, s)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # the history's validation accuracy is the module path's evaluation of the trained modules
    assert history[-1]["val_accuracy"] == evaluate(learned.gm, digits.val)["accuracy"]
    assert history[-1]["val_accuracy"] > 0.5


@pytest.mark.parametrize("distill", [0.0, 0.5])
@pytest.mark.parametrize("name,shape,n_classes", MODELS)
def test_the_step_outside_autograd_gives_autograds_gradients(name, shape, n_classes, distill):
    """fit_learned's packed step: the chain's own backward and the loss's gradient in closed form, no
    autograd but for the float modules in front."""
    from bitsmith.learn import _loss, _loss_and_grad

    modules, x = learned_graph(name, shape, n_classes, "weight", seed=5)
    other = copy.deepcopy(modules)
    modules.train(), other.train()
    auto, manual = pack(modules, x[:2]), pack(other, x[:2])
    y = torch.randint(0, n_classes, (64,))
    soft = torch.softmax(torch.randn(64, n_classes), 1) if distill else None
    s = LearnSettings(beta=3e-4, max_epochs=1, learning_rate=1e-3, distill=distill, temperature=2.5)

    logits, pen = auto.step(x[:64])
    loss = _loss(logits, y, soft, s) + s.beta * pen
    loss.backward()
    out, pen_m, saved = manual.forward_train(x[:64])
    loss_m, g = _loss_and_grad(out, y, soft, s)
    manual.backward_train(saved, g, torch.tensor(s.beta))

    assert torch.allclose(loss.detach(), loss_m + s.beta * pen_m, rtol=1e-5)
    for a, m in zip(auto.parameters(), manual.parameters()):
        assert m.grad is not None and torch.allclose(a.grad, m.grad, rtol=1e-4, atol=1e-6)
