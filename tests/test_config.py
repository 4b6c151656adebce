import pytest

from bitsmith.config import load_settings, na_to_none, read_toml
from bitsmith.errors import BitsmithError


def write(tmp_path, text: str):
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_defaults_file_and_flags_precedence(tmp_path):
    p = write(tmp_path, 'model = "jsc-toy"\nbatch_size = 64\nlearning_rate = 0.01\n')
    s = load_settings(p, batch_size=32, learning_rate=None)
    assert s.model == "jsc-toy"  # file over default
    assert s.batch_size == 32  # flag over file
    assert s.learning_rate == 0.01  # a flag left out does not override
    assert s.optimizer == "adam"  # default
    assert s.model_fields_set >= {"model", "batch_size", "learning_rate"}


def test_na_means_none_at_any_depth(tmp_path):
    assert na_to_none({"a": "NA", "b": [1, "NA"], "c": {"d": "NA", "e": "x"}}) == {
        "a": None, "b": [1, None], "c": {"d": None, "e": "x"}}
    p = write(tmp_path, 'load_name = "NA"\n[passes.quantize.default.config]\nname = "NA"\n')
    s = load_settings(p)
    assert s.load_name is None
    assert s.passes["quantize"]["default"]["config"]["name"] is None


def test_mase_files_with_plumbing_keys_load(tmp_path):
    p = write(tmp_path, 'model = "jsc-tiny"\ndataset = "jsc"\ntask = "cls"\naccelerator = "gpu"\n'
                        'is_pretrained = true\nlog_every_n_steps = 5\n[transform]\nstyle = "graph"\n')
    s = load_settings(p)
    assert (s.model, s.accelerator, s.log_every_n_steps) == ("jsc-tiny", "gpu", 5)


def test_unknown_key_suggests_closest(tmp_path):
    p = write(tmp_path, "learnng_rate = 0.1\n")
    with pytest.raises(BitsmithError, match=r"unknown key 'learnng_rate'.*did you mean 'learning_rate'"):
        load_settings(p)


def test_wrong_type_names_key_and_source(tmp_path):
    p = write(tmp_path, 'batch_size = "many"\n')
    with pytest.raises(BitsmithError, match=r"batch_size = 'many' in .*run.toml"):
        load_settings(p)
    with pytest.raises(BitsmithError, match=r"optimizer = 'lion' in the command line"):
        load_settings(None, optimizer="lion")
    with pytest.raises(BitsmithError, match="max_epochs"):
        load_settings(None, max_epochs=0)


def test_malformed_toml_gives_line_and_column(tmp_path):
    p = write(tmp_path, 'model = "jsc-tiny"\nbatch_size = \n')
    with pytest.raises(BitsmithError, match=r"line 2, column \d+"):
        read_toml(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(BitsmithError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
