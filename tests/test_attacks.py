import numpy as np
import pytest
from flwr.app import MessageType

from client.app import handle_train
from client.attacks import flip_labels, is_attacker, poison_update
from fedge.config import ConfigError, FedgeConfig
from fedge.records import ARRAYS, from_record
from tests.conftest import client_context, tiny_config_values, train_message


@pytest.mark.parametrize(
    ("fraction", "clients", "attackers"), [(0.2, 10, 2), (0.25, 10, 3), (0.05, 10, 1), (0.5, 3, 2)]
)
def test_the_first_partitions_attack_rounding_half_up(fraction, clients, attackers):
    cfg = FedgeConfig.from_mapping(
        {"num-clients": clients, "malicious-fraction": fraction, "attack": "scale"}
    )
    assert cfg.num_attackers == attackers
    assert [is_attacker(cfg, pid) for pid in range(clients)] == [True] * attackers + [False] * (
        clients - attackers
    )
    assert not is_attacker(cfg, None)  # a deployed client never attacks


def test_attack_and_fraction_go_together():
    with pytest.raises(ConfigError, match="set both"):
        FedgeConfig.from_mapping({"malicious-fraction": 0.2})
    with pytest.raises(ConfigError, match="set both"):
        FedgeConfig.from_mapping({"attack": "noise"})


def test_poisoned_updates():
    received = {"w": np.ones(4, np.float32)}
    new = {"w": np.array([2, 1, 1, 0], np.float32)}  # honest update [1, 0, 0, -1]
    rng = np.random.default_rng(0)
    flipped = poison_update(new, received, "sign-flip", 3.0, rng)["w"]
    np.testing.assert_allclose(flipped, [-2, 1, 1, 4])
    scaled = poison_update(new, received, "scale", 3.0, rng)["w"]
    np.testing.assert_allclose(scaled, [4, 1, 1, -2])
    big = {"w": np.ones(100_000, np.float32) * 1.5}
    noise = poison_update(big, {"w": np.ones(100_000, np.float32)}, "noise", 4.0, rng)["w"] - 1
    assert noise.std() == pytest.approx(4.0 * 0.5, rel=0.02)  # 4 x the honest RMS (0.5)
    assert abs(noise.mean()) < 0.05
    assert poison_update(new, received, "label-flip", 3.0, rng) is new
    np.testing.assert_array_equal(flip_labels(np.array([0, 1, 2]), 3), [2, 1, 0])


def test_attacker_client_sends_minus_scale_times_its_honest_update(color_folder, flower_task):
    honest = FedgeConfig.from_mapping(tiny_config_values(color_folder))
    attacker = honest.replace({"malicious-fraction": 0.34, "attack": "sign-flip"})
    msg, before = train_message(honest, MessageType.TRAIN)
    deltas = []
    for cfg in (honest, attacker):
        reply = handle_train(msg, client_context(cfg), cfg)
        after = from_record(reply.content[ARRAYS])
        deltas.append(after["head.weight"] - before["head.weight"])
    np.testing.assert_allclose(deltas[1], -10.0 * deltas[0], rtol=1e-4, atol=1e-6)
