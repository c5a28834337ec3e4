"""Config loading: overrides, validation, and one-line errors that name the key."""

import pytest

from fedtune.config import ConfigError, load_config


def test_defaults_and_overrides():
    cfg = load_config(None, ["train.lr=5e-4", "federation.clients_per_round=0.5", "model.adapter.target_modules=[q_proj,v_proj]"])
    assert cfg.train.lr == 5e-4
    assert cfg.federation.per_round() == 2  # half of 4 clients
    assert cfg.model.adapter.target_modules == ["q_proj", "v_proj"]


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


def test_each_algorithm_validates_its_own_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("algorithm: {name: fedprox, mu: 0.1}\n")
    cfg = load_config(p)
    assert (cfg.algorithm.name, cfg.algorithm.mu) == ("fedprox", 0.1)
    with pytest.raises(ConfigError, match=r"unknown key 'algorithm.mu' for algorithm fedavg \(its keys: server_lr\)"):
        load_config(None, ["algorithm.name=fedavg", "algorithm.mu=0.1"])
    with pytest.raises(ConfigError, match=r"'algorithm.mu': Input should be greater than or equal to 0"):
        load_config(p, ["algorithm.mu=-1"])
    with pytest.raises(ConfigError, match=r"'algorithm.name': unknown algorithm 'fedavgg'; registered: .*fedavg"):
        load_config(None, ["algorithm.name=fedavgg"])


def test_a_component_can_be_named_in_short_form_and_dumps_back_in_full():
    cfg = load_config(None, ["train.objective=dpo", "aggregation.reducer=mean"])
    assert cfg.train.objective.name == "dpo" and cfg.train.objective.beta == 0.1
    dumped = cfg.model_dump(mode="json")
    assert dumped["train"]["objective"] == {"beta": 0.1, "label_smoothing": 0.0, "reference": "base", "name": "dpo"}
    assert dumped["model"]["adapter"]["method"] == "lora"
    from fedtune.config import from_dict

    assert from_dict(dumped) == cfg  # a run directory's config.yaml loads back to the same config


def test_a_stage_that_names_another_objective_does_not_inherit_the_old_ones_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {objective: {name: beta-dpo, rho: 0.3}}\n"
                 "stages: [{}, {train: {objective: {name: dr-dpo, beta_prime: 2.0}}}, {train: {objective: sft}}]\n")
    first, second, third = load_config(p).stage_configs()
    assert first.train.objective.rho == 0.3
    assert (second.train.objective.name, second.train.objective.beta_prime) == ("dr-dpo", 2.0)
    assert third.train.objective.name == "sft"


def test_yaml_on_off_switches_are_read_as_written(tmp_path):
    """YAML 1.1 reads a bare `off` as False; `bf16: off`, as the docs write it, must mean "off"."""
    p = tmp_path / "c.yaml"
    for literal, expected in (("off", "off"), ("on", "on"), ("auto", "auto"), ("false", "off"), ("true", "on")):
        p.write_text(f"train:\n  bf16: {literal}\n")
        assert load_config(p).train.bf16 == expected
    assert load_config(None, ["train.bf16=off"]).train.bf16 == "off"
    with pytest.raises(ConfigError, match="'train.bf16'"):
        load_config(None, ["train.bf16=sometimes"])


def test_set_switches_a_component_and_opens_a_short_form(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("algorithm: {name: fedprox, mu: 0.5}\ntrain: {objective: sft}\n")
    # the file's fedprox keys belong to fedprox: switching the algorithm drops them...
    assert load_config(p, ["algorithm.name=local"]).algorithm.name == "local"
    # ...but keys given on the command line stay, in either order
    cfg = load_config(p, ["algorithm.server_lr=0.5", "algorithm.name=fedavg"])
    assert (cfg.algorithm.name, cfg.algorithm.server_lr) == ("fedavg", 0.5)
    assert load_config(p, ["algorithm.name=fedprox"]).algorithm.mu == 0.5  # same algorithm: nothing dropped
    cfg = load_config(p, ["train.objective.name=dpo", "train.objective.reference=start"])
    assert (cfg.train.objective.name, cfg.train.objective.reference) == ("dpo", "start")
    with pytest.raises(ConfigError, match="'train.lr' is not a section"):
        load_config(p, ["train.lr=0.1", "train.lr.x=1"])
