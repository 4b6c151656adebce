import torch

from bitsmith.checkpoint import load_checkpoint, restore, save_checkpoint
from bitsmith.data import get_dataset
from bitsmith.models import build_model
from bitsmith.train import evaluate, fit

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
