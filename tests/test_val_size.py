"""``val_size``: the validation share flows from the settings to the split, the cache key and the data digest;
the default changes nothing; the test split keeps its rows; a checkpoint's share is kept (docs/data.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bitsmith.config import Settings, load_settings
from bitsmith.data import DATASETS, VAL_SIZE, checkpoint_val_size, get_dataset, recipe, register_dataset, split_sizes
from bitsmith.data._base import RECIPE, cache_key, split_and_scale
from bitsmith.data.registry import DESCRIPTIONS
from bitsmith.errors import BitsmithError


def test_the_default_is_todays_recipe():
    assert Settings().val_size == VAL_SIZE == RECIPE["val_size"] == 0.1
    assert recipe() is RECIPE and recipe(0.1) is RECIPE
    # The cache key, and so every cache entry and data digest, is what it was before the setting existed.
    assert cache_key("sklearn.datasets.load_digits", recipe(0.1)) == cache_key("sklearn.datasets.load_digits", RECIPE)
    assert cache_key("s", recipe(0.25)) != cache_key("s", RECIPE)
    assert get_dataset("digits").info["digest"] == get_dataset("digits", val_size=0.1).info["digest"]


def test_a_larger_share_is_another_split_and_another_digest():
    base, wide = get_dataset("digits"), get_dataset("digits", val_size=0.25)
    assert (len(base.train), len(base.val), len(base.test)) == (1293, 144, 360)
    assert (len(wide.train), len(wide.val), len(wide.test)) == (1077, 360, 360)
    assert split_sizes(1797, recipe(0.25)) == {"train": 1077, "val": 360, "test": 360}
    assert wide.info["digest"] != base.info["digest"]
    assert torch.equal(get_dataset("digits-image", val_size=0.25).val.y, wide.val.y)  # both names share the entry


def ids_by_split(val_size: float, n: int = 500) -> dict[str, np.ndarray]:
    """Which rows each split holds: column 0 is the row's number, recovered from its scaled value."""
    rng = np.random.default_rng(0)
    x = np.column_stack([np.arange(n, dtype=np.float32), rng.normal(size=(n, 3)).astype(np.float32)])
    y = rng.integers(0, 3, n)
    arrays = split_and_scale(x, y, recipe(val_size))
    scaled = {s: arrays[f"x_{s}"][:, 0].astype(np.float64) for s in ("train", "val", "test")}
    allv = np.concatenate(list(scaled.values()))
    lo, hi = allv.min(), allv.max()  # the scaler is affine: rows 0 and n - 1 are the ends
    return {s: np.rint((v - lo) / (hi - lo) * (n - 1)).astype(int) for s, v in scaled.items()}


def test_the_test_split_keeps_its_rows_and_smaller_validation_splits_nest():
    small, large = ids_by_split(0.1), ids_by_split(0.25)
    assert sorted(np.concatenate(list(large.values()))) == list(range(500))
    assert np.array_equal(small["test"], large["test"])  # the same rows, in the same order
    # Every validation row of 0.1 is a validation row of 0.25, and the rest of 0.25's were training rows
    # of 0.1: a model trained with 0.1 has seen them (why a larger share than a checkpoint's is refused).
    assert set(small["val"]) < set(large["val"])
    assert set(large["val"]) - set(small["val"]) <= set(small["train"])


@pytest.mark.parametrize("value,match", [
    (0.0, r"val_size = 0\.0 in the command line: expected a value > 0"),
    (0.9, r"val_size = 0\.9 in the command line: expected a value < 0\.9"),
    (-0.1, r"expected a value > 0"),
    (math.nan, r"val_size = nan in the command line: expected a finite number"),
])
def test_settings_refuse_shares_out_of_range(value, match):
    with pytest.raises(BitsmithError, match=match):
        load_settings(val_size=value)


def test_settings_take_the_key_from_a_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("val_size = 0.25\n")
    assert load_settings(cfg).val_size == 0.25
    assert load_settings(cfg, val_size=0.3).val_size == 0.3  # the flag wins


def test_a_loader_without_the_argument_keeps_its_split(monkeypatch):
    monkeypatch.setitem(DATASETS, "fixed-split", None)
    monkeypatch.setitem(DESCRIPTIONS, "fixed-split", "")

    @register_dataset("fixed-split")
    def load_fixed(data_path=None):
        return get_dataset("digits")

    assert DATASETS["fixed-split"].takes_val_size is False and DATASETS["digits"].takes_val_size is True
    assert len(get_dataset("fixed-split").val) == 144
    with pytest.raises(BitsmithError, match=r"data set 'fixed-split' makes its own validation split; drop "
                                            r"--val-size / val_size"):
        get_dataset("fixed-split", val_size=0.25)


def test_every_registered_loader_takes_the_share():
    assert all(loader.takes_val_size for loader in DATASETS.values())


# -- a checkpoint keeps the share it was trained with -------------------------------------------------

def test_checkpoint_share_is_used_unless_one_is_given():
    assert checkpoint_val_size(None, 0.1, False) == {}  # a bare state dict records nothing
    assert checkpoint_val_size({"seed": 0}, 0.1, False) == {}  # made before the setting: 0.1
    assert checkpoint_val_size({"val_size": 0.25}, 0.1, False) == {"val_size": 0.25}
    assert checkpoint_val_size({"val_size": 0.25}, 0.25, True) == {}
    assert checkpoint_val_size({"val_size": 0.25}, 0.1, True) == {}  # smaller: its rows were validation rows too


def test_checkpoint_refuses_a_larger_share_and_a_damaged_one():
    with pytest.raises(BitsmithError, match=r"trained with val_size = 0\.1: a validation split of 0\.25 holds rows "
                                            r"it learned from; train with --val-size 0\.25 first"):
        checkpoint_val_size({"seed": 0}, 0.25, True)
    for bad in ("0.25", 1.5, True, None):
        with pytest.raises(BitsmithError, match=r"edited or damaged"):
            checkpoint_val_size({"val_size": bad}, 0.1, False)
