"""``table``: your own CSV, Parquet or NPZ file as a data set (real iris rows, bundled with scikit-learn).

The user's mistakes with such files are rows of tests/cli/test_bad_input.py.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
import torch

from bitsmith.data import DATASETS, get_dataset
from bitsmith.errors import BitsmithError
from tests.cli.test_cli import cli

SPECIES = ("setosa", "versicolor", "virginica")


def iris() -> pd.DataFrame:
    """Iris as a user would keep it: named feature columns and a text label column (it has one duplicate row)."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    frame = pd.DataFrame(bunch.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    frame["species"] = [SPECIES[i] for i in bunch.target]
    return frame


@pytest.fixture
def iris_csv(tmp_path):
    path = tmp_path / "iris.csv"
    iris().to_csv(path, index=False)
    return path


def expected_splits(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The recipe written out independently: dedupe (first kept), 80/20 then 10% of train, scaler on train."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    keep = ~pd.DataFrame(np.column_stack([x, y])).duplicated().to_numpy()
    x, y = x[keep], y[keep]
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=42)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.1, random_state=42)
    scaler = StandardScaler().fit(x_tr)
    return {name: (scaler.transform(a), b) for name, a, b in
            (("train", x_tr, y_tr), ("val", x_va, y_va), ("test", x_te, y_te))}


def assert_same_splits(a, b):
    for part in ("train", "val", "test"):
        assert torch.allclose(getattr(a, part).x, getattr(b, part).x, atol=1e-6), part
        assert torch.equal(getattr(a, part).y, getattr(b, part).y), part


def test_splits_follow_the_recipe_and_the_scaler_sees_train_only(iris_csv):
    d = get_dataset("table", str(iris_csv), "species")
    frame = iris()
    assert d.class_names == SPECIES and d.info["class_names"] == list(SPECIES)
    assert d.in_shape == (4,) and d.info["features"] == list(frame.columns[:4])
    assert d.info["label_column"] == "species" and d.info["rows"] == 150
    x = frame.iloc[:, :4].to_numpy(np.float32)
    y = frame["species"].map({s: i for i, s in enumerate(SPECIES)}).to_numpy()
    want = expected_splits(x, y)
    assert len(d.train) + len(d.val) + len(d.test) == 149  # iris holds one duplicate row
    for part, (wx, wy) in want.items():
        split = getattr(d, part)
        np.testing.assert_allclose(split.x.numpy(), wx, atol=1e-5)
        assert split.y.tolist() == wy.tolist()
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
    # Fitted on train alone: train is centred and unit-scaled, the held-out splits only roughly.
    assert d.train.x.mean(0).abs().max() < 1e-5
    assert d.val.x.mean(0).abs().max() > 1e-3 and d.test.x.mean(0).abs().max() > 1e-3


def test_classes_are_the_sorted_values_and_keep_their_names(tmp_path):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=300, n_features=7, n_informative=4, n_classes=3, random_state=0)
    values = np.array([10, 2, 1])[y]  # numeric order 1 < 2 < 10, not text order
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(7)]).assign(grade=values)
    cases = {"int.csv": frame, "float.csv": frame.assign(grade=values.astype(float)),
             "text.parquet": frame.assign(grade=[f"g{v:02d}" for v in values])}
    for name, f in cases.items():
        path = tmp_path / name
        f.to_csv(path, index=False) if name.endswith(".csv") else f.to_parquet(path)
        d = get_dataset("table", str(path), "grade")
        assert d.in_shape == (7,), name
        assert d.class_names == (("g01", "g02", "g10") if name.startswith("text") else ("1", "2", "10")), name
        assert set(d.train.y.tolist()) == {0, 1, 2}, name
    # the class of a row is the index of its value among the sorted names
    d = get_dataset("table", str(tmp_path / "int.csv"), "grade")
    want = expected_splits(x.astype(np.float32), np.searchsorted([1, 2, 10], values))
    assert d.test.y.tolist() == want["test"][1].tolist()


def test_parquet_and_both_npz_layouts_give_the_csv_splits(tmp_path, iris_csv):
    frame = iris()
    parquet = tmp_path / "iris.parquet"
    frame.to_parquet(parquet)
    by_column = tmp_path / "columns.npz"
    np.savez(by_column, **{c: frame[c].to_numpy() for c in frame.columns[:4]},
             species=frame["species"].to_numpy(str))
    x_and_y = tmp_path / "xy.npz"
    np.savez(x_and_y, x=frame.iloc[:, :4].to_numpy(), y=frame["species"].to_numpy(str))
    ref = get_dataset("table", str(iris_csv), "species")
    assert_same_splits(ref, get_dataset("table", str(parquet), "species"))
    assert_same_splits(ref, get_dataset("table", str(by_column), "species"))
    d = get_dataset("table", str(x_and_y), "y")
    assert_same_splits(ref, d)
    assert d.info["features"] == ["x[0]", "x[1]", "x[2]", "x[3]"] and d.class_names == SPECIES


def entries(cache):
    return sorted((cache / "processed").glob("table-*"))


def test_cached_by_contents_and_label_column(tmp_path, monkeypatch, iris_csv):
    monkeypatch.setenv("BITSMITH_CACHE", str(tmp_path / "cache"))
    first = get_dataset("table", str(iris_csv), "species")
    (entry,) = entries(tmp_path / "cache")
    stamps = {f.name: f.stat().st_mtime_ns for f in entry.iterdir()}
    again = get_dataset("table", str(iris_csv), "species")
    assert {f.name: f.stat().st_mtime_ns for f in entry.iterdir()} == stamps  # a hit reads, never rewrites
    assert_same_splits(first, again)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(iris_csv.read_bytes())
    get_dataset("table", str(copy), "species")
    assert entries(tmp_path / "cache") == [entry]  # same contents elsewhere: the same entry

    # An edit that keeps the size and the modification time is still seen.
    st = iris_csv.stat()
    text = iris_csv.read_text()
    edited = text.replace("\n5.1,3.5,1.4,0.2,setosa\n", "\n5.1,3.5,1.4,0.9,setosa\n", 1)
    assert edited != text and len(edited) == len(text)
    iris_csv.write_text(edited)
    os.utime(iris_csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh = get_dataset("table", str(iris_csv), "species")
    assert len(entries(tmp_path / "cache")) == 2
    assert not all(torch.equal(getattr(first, p).x, getattr(fresh, p).x) for p in ("train", "val", "test"))

    # Another label column of the same file is another data set, not a stale hit.
    frame = iris()
    frame["long"] = (frame["petal_length"] > 4).astype(int)
    frame["species"] = frame["species"].map({s: i for i, s in enumerate(SPECIES)})
    frame.to_csv(iris_csv, index=False)
    by_species = get_dataset("table", str(iris_csv), "species")
    by_long = get_dataset("table", str(iris_csv), "long")
    assert by_species.class_names == ("0", "1", "2") and by_long.class_names == ("0", "1")
    assert by_species.in_shape == by_long.in_shape == (5,) and len(entries(tmp_path / "cache")) == 4


def test_the_label_column_is_checked_before_the_features(tmp_path, iris_csv):
    # Naming a feature column as the label: the message says why, not that 'species' is not a number.
    with pytest.raises(BitsmithError, match=r"label column 'sepal_length' holds 5\.1, not a whole number.*regression"):
        get_dataset("table", str(iris_csv), "sepal_length")


def test_only_table_takes_a_label_column(iris_csv):
    assert DATASETS["table"].takes_label_column and DATASETS["table"].reads_file
    assert not any(DATASETS[n].takes_label_column for n in ("digits", "digits-image", "jsc"))


@pytest.mark.slow
def test_train_and_test_on_your_own_csv_end_to_end(tmp_path, capsys, iris_csv):
    data = ["--data-path", str(iris_csv), "--label-column", "species"]
    code, out, err = cli(capsys, "train", "digits-mlp", "table", *data, "--max-epochs", "15", "--batch-size", "16",
                         "--project-dir", str(tmp_path / "out"))
    assert code == 0, err
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc > 0.8  # three classes: chance is a third
    best = re.search(r"checkpoints: (\S+) \(best", out).group(1)
    code, out, err = cli(capsys, "test", "--load", best, *data, "--project-dir", str(tmp_path / "out"))
    assert code == 0, err
    assert float(out.split("test accuracy ")[1].split()[0]) == acc  # model and data set from the checkpoint
    # The same run from a config file, as a MASE-style TOML names it.
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'model = "jsc-tiny"\ndataset = "table"\ndata_path = "{iris_csv}"\nlabel_column = "species"\n'
                   f'max_epochs = 1\n')
    code, out, err = cli(capsys, "train", "--config", str(cfg), "--project-dir", str(tmp_path / "out"))
    assert code == 0, err
    assert "model=jsc-tiny dataset=table" in out


def test_listings_describe_every_entry(capsys):
    from bitsmith.data.registry import DATASETS as data_names
    from bitsmith.data.registry import DESCRIPTIONS as data_text
    from bitsmith.models.registry import DESCRIPTIONS as model_text
    from bitsmith.models.registry import MODELS as model_names

    for command, names, text in (("models", model_names, model_text), ("datasets", data_names, data_text)):
        code, out, _ = cli(capsys, command)
        assert code == 0
        lines = out.splitlines()
        assert [line.split()[0] for line in lines] == sorted(names)
        for line in lines:
            name, said = line.split(None, 1)
            assert said == text[name] and len(said) > 20, line
