"""Learned widths: the quantizer and its surrogate gradient, BatchNorm folding, training, freezing to a
plain fixed-point design (bit-exact), pruning, collapse, reproducibility, and the pruner hook."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bitsmith.data import get_dataset
from bitsmith.errors import BitsmithError
from bitsmith.graph import trace
from bitsmith.learn import Collapsed, LearnSettings, fit_learned, freeze, learn
from bitsmith.learned import LN2, learned_quantize, learned_weights
from bitsmith.passes import get_pass
from bitsmith.quant import Fixed, formats, quantize
from bitsmith.train import evaluate, fit
from tests.helpers import graph_of


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    from bitsmith.models import build_model

    torch.manual_seed(0)
    model = build_model("digits-mlp", digits.in_shape, digits.n_classes)
    fit(model, digits, max_epochs=8, batch_size=64, learning_rate=3e-3, seed=0)
    return trace(model.eval(), digits.in_shape)


@pytest.mark.parametrize("frac,int_bits,signed", [(3, 1, True), (0, 2, False), (-1, 3, True), (5, -2, True)])
def test_the_learned_quantizer_equals_quant_py_on_integral_widths(frac, int_bits, signed):
    x = torch.randn(2000) * 6
    got = learned_quantize(x, torch.tensor(float(frac)), int_bits, signed)
    width = int_bits + frac + (1 if signed else 0)
    if width >= 1:
        assert torch.equal(got, quantize(x, Fixed(width, frac, signed)))
    else:
        assert torch.equal(got, torch.zeros_like(x))  # no bits: everything rounds to zero (pruned)


def test_the_width_gradient_is_minus_ln2_times_the_rounding_error_inside_the_range():
    x = torch.tensor([0.3, -0.71, 0.12, 5.0])  # the last one saturates at 2 integer bits
    frac = torch.tensor(2.0, requires_grad=True)
    q = learned_quantize(x, frac, 2)
    q.sum().backward()
    err = (q.detach() - x)[:3]  # saturated values give no width gradient
    assert math.isclose(float(frac.grad), float(-LN2 * err.sum()), rel_tol=1e-5)


def test_weight_widths_per_weight_round_each_on_its_grid_and_count_the_bits_of_nonzero_values():
    w = torch.tensor([[0.3, -0.71], [0.12, 0.01]], requires_grad=True)
    frac = torch.tensor([[2.0, 2.4], [3.0, 2.0]], requires_grad=True)  # 2.4 rounds to 2
    q, bits = learned_weights(w, frac)
    assert torch.equal(q.detach(), torch.tensor([[0.25, -0.75], [0.125, 0.0]]))
    # |k| = 1, 3, 1, 0 -> 1 + (log2(3) + 1) + 1 + 0 bits
    assert math.isclose(float(bits.detach()), 3 + math.log2(3), rel_tol=1e-6)
    (q.sum() + bits).backward()
    err = q.detach() - w.detach()
    assert torch.allclose(frac.grad, -LN2 * err + (q.detach() != 0))
    nz = q.detach() != 0  # straight through, plus the bits' pull towards zero on nonzero values: d log2|q| / dq
    assert torch.allclose(w.grad, 1 + nz / (torch.where(nz, q.detach(), 1.0) * LN2))


def test_fold_batchnorm_computes_the_same_function_and_removes_the_norms():
    g = graph_of("jsc-toy", train_steps=5)
    folded, info = get_pass("fold_batchnorm").fn(g, {})
    assert len(info["folded"]) == 3  # after each Linear; the input BatchNorm reads no kernel and stays
    kinds = [n.kind for n in folded.nodes.values() if n.op == "call_module"]
    assert kinds.count("batchnorm1d") == 1
    x = torch.randn(50, 16)
    assert torch.allclose(g.gm(x), folded.gm(x), atol=1e-5)
    assert len([n for n in g.nodes.values() if n.kind == "batchnorm1d"]) == 4  # the input left alone


def test_learned_training_freezes_to_a_bit_exact_pruned_fixed_point_design(digits, trained):
    s = LearnSettings(beta=1e-4, max_epochs=6, learning_rate=1e-2, granularity="weight")
    learned, history = fit_learned(trained.clone(), digits, s)
    graph, passes = freeze(learned, trained)
    assert [p[0] for p in passes] == ["fold_batchnorm", "quantize"]
    with torch.no_grad():
        assert torch.equal(learned.gm(digits.test.x), graph.gm(digits.test.x))  # bit for bit
    mods = [m for m in graph.gm.modules() if formats(m) and hasattr(m, "weight")]
    assert len(mods) == 3
    zero = sum(int((m.weight == 0).sum()) for m in mods) / sum(m.weight.numel() for m in mods)
    assert zero > 0.2  # the penalty pruned weights
    for m in mods:  # the stored weights already lie on their layer's grid
        assert torch.equal(quantize(m.weight.detach(), formats(m)["weight"]), m.weight.detach())
    assert history[-1]["ebops"] < history[0]["ebops"]
    # a ReLU-fed layer's input is the ReLU's grid, one bit wider as signed
    relu = formats(graph.module("seq_blocks_1"))["data_in"]
    assert formats(graph.module("seq_blocks_2"))["data_in"] == Fixed(relu.width + 1, relu.frac, True)


def test_the_same_seed_gives_the_same_learned_widths(digits, trained):
    s = LearnSettings(beta=3e-5, max_epochs=3, learning_rate=5e-3, granularity="channel", seed=3)
    a, b = learn(trained, digits, s), learn(trained, digits, s)
    assert a.passes == b.passes
    sa, sb = a.graph.gm.state_dict(), b.graph.gm.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = learn(trained, digits, LearnSettings(beta=3e-5, max_epochs=3, learning_rate=5e-3, granularity="channel",
                                             seed=4))
    assert c.passes != a.passes or any(not torch.equal(sa[k], v) for k, v in c.graph.gm.state_dict().items())


def test_a_penalty_that_kills_the_network_is_a_collapse_with_its_reason(digits, trained):
    with pytest.raises(Collapsed, match="collapsed: validation accuracy .* at chance.*lower the penalty"):
        learn(trained, digits, LearnSettings(beta=1.0, max_epochs=5, learning_rate=5e-2))


def test_per_channel_widths_on_the_cnn_fold_its_batchnorms_and_freeze_exactly():
    data = get_dataset("digits-image")
    g = graph_of("digits-cnn", in_shape=(1, 8, 8), n_classes=10, train_steps=3)
    learned, _ = fit_learned(g.clone(), data, LearnSettings(beta=1e-6, max_epochs=2, learning_rate=3e-3,
                                                             granularity="channel"))
    graph, _ = freeze(learned, g)
    assert not any(n.kind == "batchnorm2d" for n in graph.nodes.values())
    with torch.no_grad():
        assert torch.equal(learned.gm(data.val.x), graph.gm(data.val.x))
    assert evaluate(graph.gm, data.val)["accuracy"] == evaluate(learned.gm, data.val)["accuracy"]


def test_the_pruner_hook_works_in_a_multi_objective_tpe_study_and_compares_only_harder_penalties():
    from bitsmith.search._optuna import report_and_prune, trial_id

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=0))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    dist = optuna.distributions.FloatDistribution(1e-7, 1e-2, log=True)

    def new(beta):
        t = study.ask()
        t.storage.set_trial_param(trial_id(t), "beta", dist.to_internal_repr(beta), dist)
        return t

    for beta, acc in ((1e-3, 0.9), (1e-3, 0.92), (1e-6, 0.99), (1e-6, 0.99)):
        t = new(beta)
        assert not report_and_prune(t, pruner, [acc], "hist", "beta")
        study.tell(t, [acc, 1 / beta])
    # 0.95 is below the median of the two beta-1e-6 trials (0.99), which are penalised as lightly: pruned
    t = new(1e-6)
    assert report_and_prune(t, pruner, [0.95], "hist", "beta")
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    # with beta 1e-2 no finished trial is penalised as hard: nothing to compare with, kept
    assert not report_and_prune(new(1e-2), pruner, [0.5], "hist", "beta")
    # beta 1e-3: compared with the 1e-3 trials only (median 0.91), so 0.91 is kept though others got 0.99
    assert not report_and_prune(new(1e-3), pruner, [0.91], "hist", "beta")
    # TPE still samples with a pruned trial in a multi-objective study (no intermediate values stored)
    study.optimize(lambda tr: (tr.suggest_float("beta", 1e-7, 1e-2, log=True), 1.0), n_trials=12)


@pytest.mark.parametrize("granularity", ["layer", "channel", "weight"])
@pytest.mark.parametrize("own_input", [True, False])
def test_the_fused_linear_step_has_the_values_and_gradients_of_the_chained_ops(granularity, own_input):
    from bitsmith.learned import LearnedActivation, LearnedLinear

    torch.manual_seed(1)
    lin = LearnedLinear(nn.Linear(6, 4), granularity, 3.3, own_input, 2.0)
    with torch.no_grad():
        lin.w_frac.add_(torch.randn_like(lin.w_frac))
        lin.weight[0, 0] = 0.0  # an exact zero: no NaN from the bits' gradient
    if own_input:
        lin.act.int_bits.fill_(1)
    else:
        lin.producer = LearnedActivation(False, 2.0)
        lin.producer.int_bits.fill_(2)
    x = torch.randn(5, 6) * 2
    if not own_input:
        x = lin.producer(x.relu()).detach()

    def run(fused: bool):
        for p in lin.parameters():
            p.grad = None
        a = lin.input_act()
        a.frac.grad = None
        if fused:
            out = lin(x)
        else:
            xin = lin.act(x) if own_input else x
            out = F.linear(xin, *lin.quantized())
        e = lin.ebops()
        (out.square().sum() + 0.37 * e).backward()
        return out.detach(), e.detach(), [None if p.grad is None else p.grad.clone() for p in lin.parameters()], \
            a.frac.grad.clone()

    fo, fe, fg, fa = run(True)
    co, ce, cg, ca = run(False)
    assert torch.equal(fo, co) and torch.allclose(fe, ce)
    for f, c in zip(fg, cg):
        assert torch.allclose(f, c, atol=1e-5) and torch.isfinite(f).all()
    assert torch.allclose(fa, ca, atol=1e-5)


def test_a_kept_design_is_read_back_only_when_sound_and_of_the_same_study_point_and_seed(tmp_path, digits, trained):
    from types import SimpleNamespace

    from bitsmith.search.learned import LearnedSpace, parse_learned

    space = LearnedSpace(parse_learned({"name": "graph/quantize/learned_widths", "setup": {"pruner": "none"}, "hyper": {
        "beta": [1e-4], "max_epochs": [2], "learning_rate": [5e-3]}}))
    space.keep(tmp_path / "designs", "study-a")
    ctx = SimpleNamespace(data=digits, device="cpu", seed=0)
    point = {"beta": 1e-4, "max_epochs": 2, "learning_rate": 5e-3, "granularity": "weight", "range_quantile": 1.0}
    trial = SimpleNamespace(number=7, set_user_attr=lambda *a: None)
    before = {k: v.clone() for k, v in trained.gm.state_dict().items()}
    graph, passes = space.build(trained, point, ctx, trial)
    assert (tmp_path / "designs" / "trial_7.ckpt").is_file()
    back, back_passes = space._kept(trained, point, 7, 0)
    assert back_passes == passes
    assert all(torch.equal(v, before[k]) for k, v in trained.gm.state_dict().items())  # the base is untouched
    assert torch.equal(back.gm(digits.val.x), graph.gm(digits.val.x))
    assert space._kept(trained, {**point, "beta": 2e-4}, 7, 0) is None  # another point
    assert space._kept(trained, point, 7, 1) is None  # another seed
    space.keep(tmp_path / "designs", "study-b")
    assert space._kept(trained, point, 7, 0) is None  # another study (other weights, data or config)
    space.keep(tmp_path / "designs", "study-a")
    (tmp_path / "designs" / "trial_7.ckpt").write_bytes(b"torn")
    assert space._kept(trained, point, 7, 0) is None  # damaged: trained again, never an error
    again, _ = space.build(trained, point, ctx, None, number=7)
    assert torch.equal(again.gm(digits.val.x), graph.gm(digits.val.x))  # the same seed, the same design


def test_distillation_learns_from_the_loaded_models_soft_labels(digits, trained):
    """With distill = 1 the labels do not count: training on shuffled labels gives the same design; with
    distill = 0 they are all there is."""
    import dataclasses

    order = torch.randperm(len(digits.train.y), generator=torch.Generator().manual_seed(0))
    shuffled = dataclasses.replace(digits, train=dataclasses.replace(digits.train, y=digits.train.y[order]))

    def weights(data, distill):
        s = LearnSettings(beta=1e-5, max_epochs=2, learning_rate=5e-3, seed=1, distill=distill)
        return learn(trained, data, s).graph.gm.state_dict()

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights(digits, 1.0), weights(shuffled, 1.0))
    assert not same(weights(digits, 0.0), weights(shuffled, 0.0))
    with pytest.raises(BitsmithError, match=r"distill 1\.5: use 0 \(labels only\) to 1"):
        LearnSettings(beta=1e-5, max_epochs=1, learning_rate=1e-3, distill=1.5)


def test_repeats_enter_a_studys_digest_only_when_set_and_their_seeds_stay_in_range():
    from bitsmith.schema import MAX_SEED
    from bitsmith.search.learned import LearnedSpace, parse_learned

    def spec(**setup):
        return parse_learned({"name": "graph/quantize/learned_widths", "setup": setup, "hyper": {"beta": [1e-4]}})

    assert "repeats" not in spec().digest_data()[1]  # a study made before the setting resumes
    assert spec(repeats=1).digest_data() == spec().digest_data()
    assert spec(repeats=3).digest_data()[1]["repeats"] == 3
    assert LearnedSpace(spec(repeats=3)).more_seeds(5) == [6, 7]
    assert LearnedSpace(spec(repeats=3)).more_seeds(MAX_SEED) == [0, 1]
    assert LearnedSpace(spec()).more_seeds(5) == []
