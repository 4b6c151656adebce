import numpy as np
import pytest
import torch

from bitsmith.data import DATASETS, get_dataset
from bitsmith.data.jsc import CLASS_NAMES, FEATURES, load_jsc, read_jsc_file
from bitsmith.errors import BitsmithError
from tests.conftest import make_jsc_frame


def rows(t: torch.Tensor) -> set[bytes]:
    return {r.tobytes() for r in t.reshape(len(t), -1).numpy()}


def test_registry_lists_bundled_and_jsc():
    assert {"digits", "digits-image", "jsc"} <= set(DATASETS)
    with pytest.raises(BitsmithError, match=r"unknown data set 'digit'.*did you mean 'digits'"):
        get_dataset("digit")


def test_digits_splits_are_disjoint_and_scaled_on_train():
    d = get_dataset("digits")
    assert d.in_shape == (64,) and d.n_classes == 10
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert len(d.test) == pytest.approx(0.2 * 1797, abs=1)
    train, val, test = rows(d.train.x), rows(d.val.x), rows(d.test.x)
    assert not (train & val) and not (train & test) and not (val & test)
    # Scaler fitted on the training split only: train is centred, the others only roughly.
    assert d.train.x.mean(0).abs().max() < 1e-5
    assert d.val.x.mean(0).abs().max() > 1e-3
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64


def test_digits_image_view_is_the_same_data():
    flat, img = get_dataset("digits"), get_dataset("digits-image")
    assert img.in_shape == (1, 8, 8) and img.train.x.shape[1:] == (1, 8, 8)
    assert torch.equal(img.train.x.reshape(len(img.train), -1), flat.train.x)
    assert torch.equal(img.test.y, flat.test.y)


def test_shared_sample_rows_parse(shared_jsc_csv):
    x, y = read_jsc_file(shared_jsc_csv)
    assert x.shape == (5, 16) and x.dtype == np.float32
    # class column: g w t z w; indices are alphabetical g q t w z.
    assert y.tolist() == [0, 3, 2, 4, 3]
    assert x[0, FEATURES.index("zlogz")] == pytest.approx(-2.935125)
    assert x[0, FEATURES.index("multiplicity")] == 75.0
    # d2_b1_mmdt equals d2_a1_b1_mmdt in the real rows.
    assert np.array_equal(x[:, FEATURES.index("d2_b1_mmdt")], x[:, FEATURES.index("d2_a1_b1_mmdt")])


def test_all_layouts_give_the_same_splits(jsc_files):
    loaded = {k: load_jsc(str(p)) for k, p in jsc_files.items()}
    ref = loaded["csv"]
    assert ref.class_names == CLASS_NAMES and ref.in_shape == (16,)
    for name, d in loaded.items():
        for part in ("train", "val", "test"):
            a, b = getattr(ref, part), getattr(d, part)
            assert torch.allclose(a.x, b.x, atol=1e-5), (name, part)
            assert torch.equal(a.y, b.y), (name, part)


def test_duplicates_are_dropped_before_splitting(tmp_path):
    frame = make_jsc_frame(400, seed=1)
    doubled = frame.iloc[list(range(400)) + list(range(100))]
    path = tmp_path / "dupes.csv"
    doubled.to_csv(path, index=False)
    d = load_jsc(str(path))
    assert len(d.train) + len(d.val) + len(d.test) == 400
    assert not (rows(d.train.x) & rows(d.test.x))


def test_processed_arrays_are_cached(jsc_files, monkeypatch, tmp_path):
    monkeypatch.setenv("BITSMITH_CACHE", str(tmp_path))
    first = load_jsc(str(jsc_files["csv"]))
    (entry,) = (tmp_path / "processed").glob("jsc-*.npz")
    stamp = entry.stat().st_mtime_ns
    again = load_jsc(str(jsc_files["csv"]))
    assert entry.stat().st_mtime_ns == stamp  # a hit reads, never rewrites
    assert torch.equal(first.train.x, again.train.x)
    # Another file (other size/mtime) is another entry, not a stale hit.
    load_jsc(str(jsc_files["parquet"]))
    assert len(list((tmp_path / "processed").glob("jsc-*.npz"))) == 2


def test_missing_columns_are_named(tmp_path):
    frame = make_jsc_frame(100).drop(columns=["zlogz", "mass_mmdt"])
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(BitsmithError, match=r"missing JSC columns.*zlogz, mass_mmdt"):
        load_jsc(str(path))


def test_unknown_labels_are_named(tmp_path):
    frame = make_jsc_frame(100)
    frame.loc[3, "class"] = "b"
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(BitsmithError, match="labels"):
        load_jsc(str(path))


def test_too_few_rows_is_a_clear_error(shared_jsc_csv):
    with pytest.raises(BitsmithError, match="too few"):
        load_jsc(str(shared_jsc_csv))


def test_no_file_no_cache_no_network_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("BITSMITH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("BITSMITH_JSC_PATH", raising=False)
    with pytest.raises(BitsmithError, match=r"--data-path FILE.*BITSMITH_JSC_PATH"):
        load_jsc()


def test_env_var_names_the_file(monkeypatch, jsc_files):
    monkeypatch.setenv("BITSMITH_JSC_PATH", str(jsc_files["csv"]))
    assert torch.equal(get_dataset("jsc").test.y, load_jsc(str(jsc_files["csv"])).test.y)


def test_missing_local_file(tmp_path):
    with pytest.raises(BitsmithError, match="does not exist"):
        load_jsc(str(tmp_path / "nope.csv"))
