"""The command line end to end: real data, real checkpoints, exit codes."""

import subprocess
import sys

import pytest
import torch

from bitsmith.cli import main

B = [sys.executable, "-m", "bitsmith"]


def cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_train_digits_mlp_reaches_095_and_test_reloads(tmp_path, capsys):
    code, out, _ = cli(capsys, "train", "digits-mlp", "digits", "--project-dir", str(tmp_path))
    assert code == 0, out
    assert "settings: model=digits-mlp" in out and out.count("settings:") == 1
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc >= 0.95
    best = tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    assert best.is_file() and (best.parent / "last.ckpt").is_file()
    code, out, _ = cli(capsys, "test", "--load", str(best), "--project-dir", str(tmp_path))
    assert code == 0
    assert float(out.split("test accuracy ")[1].split()[0]) == acc  # model and data set from the checkpoint


def test_flags_override_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "jsc-tiny"\ndataset = "digits"\nmax_epochs = 5\nbatch_size = 64\n')
    code, out, _ = cli(capsys, "train", "digits-mlp", "--config", str(cfg), "--max-epochs", "1",
                       "--project-dir", str(tmp_path))
    assert code == 0
    assert "model=digits-mlp" in out and "max_epochs=1 " in out and "batch_size=64" in out


def test_cnn_on_digit_images(tmp_path, capsys):
    code, out, _ = cli(capsys, "train", "digits-cnn", "digits-image", "--max-epochs", "2",
                       "--project-dir", str(tmp_path))
    assert code == 0 and "test accuracy" in out


def test_jsc_toy_on_each_file_layout(tmp_path, capsys, jsc_files):
    for layout, path in jsc_files.items():
        code, out, err = cli(capsys, "train", "jsc-toy", "jsc", "--data-path", str(path), "--max-epochs", "3",
                             "--project-dir", str(tmp_path), "--project", layout)
        assert code == 0, err
        # Five balanced classes with separable centres: far above chance (0.2).
        assert float(out.split("test accuracy ")[1].split()[0]) > 0.6, layout


def test_gpu_request_falls_back_with_one_warning(tmp_path, capsys):
    code, out, err = cli(capsys, "train", "--accelerator", "gpu", "--max-epochs", "1",
                         "--project-dir", str(tmp_path))
    assert code == 0
    if not torch.cuda.is_available():
        assert err.count("no CUDA device") == 1 and "running on the CPU" in err


@pytest.mark.parametrize("argv,expected", [
    (["train", "digits-mpl"], "did you mean 'digits-mlp'"),
    (["train", "digits-mlp", "digitz"], "did you mean 'digits'"),
    (["train", "--optimizer", "lion"], "optimizer = 'lion'"),
    (["test"], "needs a checkpoint"),
    (["test", "--load", "/nonexistent/best.ckpt"], "does not exist"),
])
def test_user_mistakes_exit_2_with_one_line(capsys, argv, expected):
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


def test_config_mistakes(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "jsc-tiny"\nbatch_sise = 3\n')
    code, _, err = cli(capsys, "train", "--config", str(bad))
    assert code == 2 and "did you mean 'batch_size'" in err
    bad.write_text('model = "jsc-tiny"\n[passes\n')
    code, _, err = cli(capsys, "train", "--config", str(bad))
    assert code == 2 and "line 2" in err


def test_checkpoint_mistakes(tmp_path, capsys):
    code, _, _ = cli(capsys, "train", "--max-epochs", "1", "--project-dir", str(tmp_path))
    best = tmp_path / "digits-mlp_digits" / "checkpoints" / "best.ckpt"
    before = best.read_bytes()
    code, _, err = cli(capsys, "test", "jsc-toy", "digits", "--load", str(best))
    assert code == 2 and "holds model 'digits-mlp', not 'jsc-toy'" in err
    torch.save(torch.load(best, weights_only=True)["state_dict"], tmp_path / "bare.pt")
    code, _, err = cli(capsys, "test", "digits-cnn", "digits-image", "--load", str(tmp_path / "bare.pt"),
                       "--load-type", "pt")
    assert code == 2 and "does not fit model 'digits-cnn'" in err
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(before[: len(before) // 2])
    code, _, err = cli(capsys, "test", "--load", str(corrupt))
    assert code == 2 and "is damaged" in err
    assert best.read_bytes() == before  # nothing already written is touched


@pytest.mark.slow
def test_no_traceback_from_a_real_process(tmp_path):
    r = subprocess.run([*B, "train", "jsc-tiny", "jsc", "--data-path", str(tmp_path / "missing.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_same_seed_same_checkpoint_across_runs(tmp_path, capsys):
    paths = []
    for run in ("a", "b"):
        torch.manual_seed(len(run) * 1234 + ord(run))  # global RNG state must not matter
        code, _, _ = cli(capsys, "train", "--max-epochs", "2", "--seed", "7",
                         "--project-dir", str(tmp_path), "--project", run)
        assert code == 0
        paths.append(tmp_path / run / "checkpoints" / "best.ckpt")
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in paths)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
