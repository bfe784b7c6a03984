import pytest

from facerec.config import Config, load_config
from facerec.errors import ConfigError


def test_bundled_configs_load():
    from importlib.resources import files

    names = sorted(p.name.removesuffix(".yaml") for p in files("facerec.configs").iterdir() if p.name.endswith(".yaml"))
    assert {"quickstart", "partial_fc_synthetic", "default_model", "distill_lowres36_lfw"} <= set(names)
    for name in names:
        assert isinstance(load_config(name), Config)


def test_unknown_key_names_the_key_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'data.batch_sise'.*Did you mean 'batch_size'"):
        load_config(str(path))


def test_overrides_are_typed():
    cfg = load_config(None, ["train.epochs=3", "optim.lr=1e-3", "backbone.options={widths: [8, 16]}"])
    assert cfg.train.epochs == 3 and cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.backbone.options == {"widths": [8, 16]}
    with pytest.raises(ConfigError, match=r"'train\.epochs' must be of type int"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(None, ["data.augment.flip=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_missing_config_file_is_explained():
    with pytest.raises(ConfigError, match="neither a file nor a bundled config"):
        load_config("does/not/exist.yaml")


def test_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("quickstart", ["train.seed=7"])
    cfg.dump(tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg
