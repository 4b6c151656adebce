import dataclasses
import math

import pytest
import torch
from torch import nn

from bitsmith.checkpoint import load_checkpoint, restore, save_checkpoint
from bitsmith.data import Split, get_dataset
from bitsmith.errors import BitsmithError
from bitsmith.models import build_model
from bitsmith.train import Diverged, evaluate, fit

SETTINGS = dict(max_epochs=3, batch_size=64, learning_rate=3e-3)


def trained(seed: int, tmp_path=None):
    data = get_dataset("digits")
    torch.manual_seed(seed)
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    result = fit(model, data, seed=seed, out_dir=tmp_path, **SETTINGS)
    return model, result, data


def test_same_seed_same_weights_other_seed_differs():
    a, _, _ = trained(1)
    b, _, _ = trained(1)
    c, _, _ = trained(2)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_fit_learns_and_keeps_best_and_last(tmp_path):
    model, result, data = trained(0, tmp_path)
    assert result.best_path.is_file() and result.last_path.is_file()
    assert len(result.history) == 3
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    state, meta = load_checkpoint(result.best_path)
    assert meta["val_loss"] == min(h["val_loss"] for h in result.history)
    # Lightning layout on disk: model.-prefixed keys under state_dict.
    raw = torch.load(result.best_path, weights_only=True)
    assert all(k.startswith("model.") for k in raw["state_dict"])
    fresh = restore(build_model("digits-mlp", (64,), 10), state, result.best_path, "digits-mlp")
    assert evaluate(fresh, data.val)["loss"] == meta["val_loss"]


def test_max_steps_caps_training():
    data = get_dataset("digits")
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    result = fit(model, data, max_epochs=50, batch_size=64, learning_rate=1e-3, max_steps=7)
    assert result.steps == 7


def test_evaluate_num_samples_uses_the_first_rows():
    data = get_dataset("digits")
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    part = evaluate(model, data.val, num_samples=10)
    logits = model.eval()(data.val.x[:10])
    expected = torch.nn.functional.cross_entropy(logits, data.val.y[:10]).item()
    assert abs(part["loss"] - expected) < 1e-5


def test_checkpoint_save_is_atomic_over_an_existing_file(tmp_path):
    model = build_model("jsc-tiny", (16,), 5)
    path = save_checkpoint(tmp_path / "m.ckpt", model, {"model": "jsc-tiny"})
    save_checkpoint(path, model, {"model": "jsc-tiny", "epoch": 2})
    assert load_checkpoint(path)[1]["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temp files left


class GoesNaN(nn.Module):
    """A linear model whose outputs turn NaN from its ``at``-th training step on (in ``mode``): a
    divergence that starts exactly where a test wants it."""

    def __init__(self, at: int, mode: str = "train"):
        super().__init__()
        self.lin, self.at, self.mode, self.steps = nn.Linear(64, 10), at, mode, 0

    def forward(self, x):
        self.steps += self.training
        out = self.lin(x)
        hit = self.steps >= self.at and (self.mode == "train" or not self.training)
        return out * math.nan if hit else out


def test_divergence_from_the_first_epoch_writes_nothing(tmp_path):
    data = get_dataset("digits")
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    old = save_checkpoint(tmp_path / "best.ckpt", model, {"epoch": 7})
    before = old.read_bytes()
    with pytest.raises(Diverged, match=r"training diverged in epoch 1 \(by step \d+\): training loss nan; "
                                       r"lower --learning-rate / learning_rate \(now 1e\+30\)\n"
                                       r"no epoch ended with finite losses, so no checkpoint was written"):
        fit(model, data, max_epochs=3, batch_size=64, learning_rate=1e30, out_dir=tmp_path)
    assert old.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]


@pytest.mark.parametrize("mode, what", [("train", "training"), ("eval", "validation")])
def test_divergence_after_good_epochs_keeps_a_finite_best(tmp_path, mode, what):
    data = get_dataset("digits")
    per_epoch = math.ceil(len(data.train) / 64)
    model = GoesNaN(at=2 * per_epoch + 1, mode=mode)  # epochs 1 and 2 good, 3 not
    with pytest.raises(Diverged, match=rf"diverged in epoch 3 .*: {what} loss nan; .*\n"
                                       r"kept the best checkpoint from epoch [12] at .*best\.ckpt$"):
        fit(model, data, max_epochs=5, batch_size=64, learning_rate=1e-3, out_dir=tmp_path)
    state, meta = load_checkpoint(tmp_path / "best.ckpt")
    assert meta["epoch"] in (1, 2) and all(torch.isfinite(v).all() for v in state.values())
    assert not (tmp_path / "last.ckpt").exists()  # never NaN weights on disk


def test_an_empty_training_split_is_refused():
    data = get_dataset("digits")
    empty = dataclasses.replace(data, train=Split(data.train.x[:0], data.train.y[:0]))
    model = build_model("digits-mlp", data.in_shape, data.n_classes)
    with pytest.raises(BitsmithError, match="data set 'digits' has an empty training split"):
        fit(model, empty, max_epochs=1, batch_size=64, learning_rate=1e-3)
