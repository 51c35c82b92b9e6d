import tomllib
from pathlib import Path

import pytest

from fedge.config import ConfigError, FedgeConfig, from_run_config, parse_set_items, resolve

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_flower_config_matches_schema_defaults():
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert table == FedgeConfig().to_run_config()


def test_unknown_key_names_the_key_and_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'num-round'.*num-rounds"):
        resolve(overrides={"num-round": "3"})


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"'strategy'.*fedavg, fedprox"):
        resolve(overrides={"strategy": "fedsgd"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", "fast", "must be a number"),
        ("num-rounds", "2.5", "must be an integer"),
        ("num-rounds", "0", "must be >= 1"),
        ("fraction-train", "0", "must be > 0"),
        ("fraction-train", "1.5", "must be <= 1"),
    ],
)
def test_bad_values_fail_at_once(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides={key: value})


def test_set_strings_are_coerced_to_the_key_types():
    cfg = resolve(overrides=parse_set_items(["num-rounds=3", "lr=0.5", "weights=none"])).config
    assert (cfg.num_rounds, cfg.lr, cfg.weights) == (3, 0.5, "none")


def test_file_then_set_with_provenance(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('num-rounds = 4\nstrategy = "fedprox"\n')
    resolved = resolve(path, {"num-rounds": "7"})
    assert resolved.config.num_rounds == 7
    assert resolved.config.strategy == "fedprox"
    assert resolved.sources["num-rounds"] == "--set"
    assert resolved.sources["strategy"] == f"file {path}"
    assert resolved.sources["lr"] == "default"


def test_file_may_hold_a_flower_app_config_table(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.flwr.app.config]\nnum-clients = 5\n")
    assert resolve(path).config.num_clients == 5


def test_set_item_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set_items(["num-rounds"])


def test_min_clients_cannot_exceed_num_clients():
    with pytest.raises(ConfigError, match="min-clients=5 exceeds num-clients=3"):
        FedgeConfig.from_mapping({"num-clients": 3, "min-clients": 5})


def test_run_config_round_trip():
    cfg = FedgeConfig.from_mapping({"head": "mlp", "seed": 9})
    assert from_run_config(cfg.to_run_config()) == cfg
