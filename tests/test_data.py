import numpy as np
import pytest
import torch

from bitsmith.data import DATASETS, get_dataset
from bitsmith.data._base import RECIPE, load_arrays, split_and_scale
from bitsmith.data.jsc import CLASS_NAMES, FEATURES, is_hdf5, load_jsc, read_jsc_file
from bitsmith.errors import BitsmithError
from tests.conftest import make_jsc_frame, to_h5_layout


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


def test_sample_rows_parse(jsc_head5_csv):
    x, y = read_jsc_file(jsc_head5_csv)
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
    (entry,) = (tmp_path / "processed").glob("jsc-*")
    stamps = {f.name: f.stat().st_mtime_ns for f in entry.iterdir()}
    again = load_jsc(str(jsc_files["csv"]))
    assert {f.name: f.stat().st_mtime_ns for f in entry.iterdir()} == stamps  # a hit reads, never rewrites
    assert torch.equal(first.train.x, again.train.x)
    again.train.x[0, 0] += 1  # tensors of a hit are writable copies-on-write: the cache never changes
    assert torch.equal(first.train.x, load_jsc(str(jsc_files["csv"])).train.x)
    # Another file (other size/mtime) is another entry, not a stale hit.
    load_jsc(str(jsc_files["parquet"]))
    assert len(list((tmp_path / "processed").glob("jsc-*"))) == 2


@pytest.mark.parametrize("damage", ["truncated-array", "missing-array", "bad-meta"])
def test_a_damaged_cache_entry_is_rebuilt(jsc_files, monkeypatch, tmp_path, damage):
    monkeypatch.setenv("BITSMITH_CACHE", str(tmp_path))
    first = load_jsc(str(jsc_files["csv"]))
    (entry,) = (tmp_path / "processed").glob("jsc-*")
    if damage == "truncated-array":
        data = (entry / "x_val.npy").read_bytes()
        (entry / "x_val.npy").write_bytes(data[:len(data) // 2])
    elif damage == "missing-array":
        (entry / "y_test.npy").unlink()
    else:
        (entry / "meta.json").write_text("{not json")
    again = load_jsc(str(jsc_files["csv"]))
    assert torch.equal(first.val.x, again.val.x) and torch.equal(first.test.y, again.test.y)
    assert load_arrays(entry) is not None  # repaired, not rebuilt on every load


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
    with pytest.raises(BitsmithError, match=r"row 4 \(line 5\), column 'class' holds 'b', not a JSC class label"):
        load_jsc(str(path))


def test_too_few_rows_is_a_clear_error(jsc_head5_csv):
    with pytest.raises(BitsmithError, match="too few"):
        load_jsc(str(jsc_head5_csv))


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


def write_csv(frame, path):
    frame.to_csv(path, index=False)
    return path


def test_a_cell_that_is_not_a_number_is_named(tmp_path):
    frame = make_jsc_frame(100)
    frame["c1_b0_mmdt"] = frame["c1_b0_mmdt"].astype(object)
    frame.loc[16, "c1_b0_mmdt"] = "abc"
    path = write_csv(frame, tmp_path / "jsc.csv")
    with pytest.raises(BitsmithError, match=r"jsc\.csv: row 17 \(line 18\), column 'c1_b0_mmdt' holds 'abc', "
                                            r"not a number$"):
        read_jsc_file(path)


def test_an_empty_feature_cell_is_named(tmp_path):
    frame = make_jsc_frame(100)
    frame.loc[5, "zlogz"] = np.nan
    path = write_csv(frame, tmp_path / "jsc.csv")
    with pytest.raises(BitsmithError, match=r"row 6 \(line 7\), column 'zlogz' holds nan, not a finite number"):
        read_jsc_file(path)


def test_a_label_that_is_not_a_class_is_named(tmp_path):
    frame = make_jsc_frame(100)
    frame["class"] = frame["class"].astype(object)
    frame.loc[3, "class"] = 7
    path = write_csv(frame, tmp_path / "jsc.csv")
    with pytest.raises(BitsmithError, match=r"row 4 \(line 5\), column 'class' holds '7', not a JSC class label; "
                                            r"expected one of g, q, t, w, z"):
        read_jsc_file(path)


def test_one_hot_labels_that_are_not_one_hot_are_named(tmp_path):
    frame = to_h5_layout(make_jsc_frame(100))
    frame.loc[9, ["j_g", "j_q"]] = 1
    path = tmp_path / "jsc.h5"
    frame.to_hdf(path, key="t_allpar_new", mode="w")
    with pytest.raises(BitsmithError, match=r"jsc\.h5: row 10: label columns j_g, .* hold \[1\.0, 1\.0, "):
        read_jsc_file(path)


@pytest.mark.parametrize("name, content", [("x.h5", b"row,zlogz\n0,1.5\n"), ("r.z", bytes(range(256)) * 12)])
def test_a_file_that_is_not_hdf5_says_so_in_one_line(tmp_path, capfd, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BitsmithError, match=rf"{name} is not an HDF5 file") as e:
        read_jsc_file(path)
    assert "\n" not in str(e.value)
    assert capfd.readouterr().err == ""


def test_a_damaged_hdf5_file_is_one_line_and_quiet(tmp_path, capfd):
    good = tmp_path / "good.h5"
    to_h5_layout(make_jsc_frame(100)).to_hdf(good, key="t_allpar_new", mode="w")
    path = tmp_path / "cut.h5"
    path.write_bytes(good.read_bytes()[:2000])  # signature intact, the rest missing
    with pytest.raises(BitsmithError, match=r"cannot read JSC file .*cut\.h5: HDF5ExtError: truncated file") as e:
        read_jsc_file(path)
    assert "\n" not in str(e.value)
    assert capfd.readouterr().err == ""


def test_hdf5_signature_after_a_user_block_is_found(tmp_path):
    import tables

    path = tmp_path / "ub.h5"
    with tables.open_file(path, "w", userblock_size=512) as f:
        f.create_array("/", "a", np.arange(3))
    assert path.read_bytes()[:8] != path.read_bytes()[512:520]  # the signature sits after the block
    assert is_hdf5(path)
    text = tmp_path / "t.h5"
    text.write_bytes(b"x" * 3000)
    assert not is_hdf5(text)


def test_a_file_that_is_not_parquet_says_so_in_one_line(tmp_path):
    path = tmp_path / "jsc.parquet"
    path.write_text("row,zlogz\n0,1.5\n" * 20)
    with pytest.raises(BitsmithError, match=r"cannot read JSC file .*jsc\.parquet: ArrowInvalid: ") as e:
        read_jsc_file(path)
    assert "\n" not in str(e.value)


def test_rows_of_a_single_class_are_refused(tmp_path):
    frame = make_jsc_frame(200)
    frame["class"] = "g"
    path = write_csv(frame, tmp_path / "one.csv")
    with pytest.raises(BitsmithError, match=r"every row is of class 'g': training a classifier needs rows of at "
                                            r"least two classes"):
        load_jsc(str(path))


def test_a_split_left_empty_is_refused():
    x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    y = np.arange(100) % 3
    with pytest.raises(BitsmithError, match=r"100 distinct rows leave the test split empty"):
        split_and_scale(x, y, {**RECIPE, "test_size": 0.0})


@pytest.mark.parametrize("name", ["digits", "digits-image"])
def test_a_data_path_for_a_data_set_that_reads_no_file_is_refused(name, jsc_files):
    with pytest.raises(BitsmithError, match=rf"data set '{name}' reads no file; drop --data-path / data_path "
                                            r"\(data sets that read a file: jsc, table\)"):
        get_dataset(name, str(jsc_files["csv"]))
    assert DATASETS["jsc"].reads_file and not DATASETS[name].reads_file


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(BitsmithError, match=r"is a directory, not a file; check --data-path"):
        load_jsc(str(tmp_path))
    with pytest.raises(BitsmithError, match=r"is a directory, not a file"):
        read_jsc_file(tmp_path)
