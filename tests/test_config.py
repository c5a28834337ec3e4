"""Config loading: overrides, validation, and one-line errors that name the key."""

import pytest

from fedtune.config import ConfigError, load_config


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=5e-4", "federation.clients_per_round=0.5", "model.lora.target_modules=[q_proj,v_proj]"])
    assert cfg.train.lr == 5e-4
    assert cfg.federation.per_round() == 2  # half of 4 clients
    assert cfg.model.lora.target_modules == ["q_proj", "v_proj"]


def test_unknown_key_suggests_closest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("federation:\n  round: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'federation.round' \(did you mean 'federation.rounds'\?\)"):
        load_config(p)


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="unknown key 'trian'.*did you mean 'train'"):
        load_config(None, ["trian.lr=1"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="'train.steps'"):
        load_config(None, ["train.steps=many"])


def test_fraction_out_of_range():
    with pytest.raises(ConfigError, match="federation.clients_per_round"):
        load_config(None, ["federation.clients_per_round=1.5"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(p)
