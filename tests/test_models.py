import socket

import pytest
import torch

from fedge.config import FedgeConfig
from fedge.models.backbones import SPECS, WeightsError, build_backbone, imagenet_cache_path
from fedge.models.fingerprint import FingerprintMismatch, check_fingerprint
from fedge.models.model import build_model, load_backbone, load_trainable_state, trainable_state
from tests.conftest import ASSET_WEIGHTS, require_assets


@pytest.mark.parametrize("name", list(SPECS))
def test_every_backbone_embeds_to_its_declared_dimension(name):
    backbone = build_backbone(name, "none")
    with torch.no_grad():
        z = backbone(torch.zeros(2, 3, 64, 64))
    assert z.shape == (2, SPECS[name].embedding_dim)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_linear_head_on_mobilenet_v2_is_12810_floats_and_all_that_travels():
    cfg = FedgeConfig.from_mapping({"weights": "none", "backbone": "mobilenet_v2"})
    model = build_model(cfg, num_classes=10)
    state = trainable_state(model)
    assert set(state) == {"head.weight", "head.bias"}
    assert sum(v.size for v in state.values()) == 12_810
    assert sum(p.numel() for p in model.parameters()) > 2_000_000


def test_unfreeze_last_trains_the_last_blocks_too():
    cfg = FedgeConfig.from_mapping({"weights": "none", "backbone": "resnet18", "unfreeze-last": 1})
    state = trainable_state(build_model(cfg, num_classes=4))
    assert any(k.startswith("backbone.blocks.4.") for k in state)
    assert not any(k.startswith("backbone.blocks.3.") for k in state)


def test_unfreeze_more_blocks_than_exist_is_a_clear_error():
    cfg = FedgeConfig.from_mapping({"weights": "none", "backbone": "resnet18", "unfreeze-last": 9})
    with pytest.raises(ValueError, match="has only 5 blocks"):
        build_model(cfg, num_classes=4)


def test_mlp_head_state_round_trips():
    cfg = FedgeConfig.from_mapping({"weights": "none", "head": "mlp", "mlp-hidden": 16})
    a, b = build_model(cfg, 3), build_model(cfg.replace({"seed": 5}), 3)
    load_trainable_state(b, trainable_state(a))
    for k, v in trainable_state(a).items():
        assert (trainable_state(b)[k] == v).all()


def test_loading_a_mismatched_head_state_is_refused():
    cfg = FedgeConfig.from_mapping({"weights": "none"})
    model = build_model(cfg, 3)
    with pytest.raises(ValueError, match="do not match"):
        load_trainable_state(model, {"head.weight": trainable_state(model)["head.weight"]})


def test_fingerprint_depends_on_weights_and_preprocessing():
    a = load_backbone("mobilenet_v3_small", "none", 64, seed=0).fingerprint
    assert a == load_backbone("mobilenet_v3_small", "none", 64, seed=0).fingerprint
    assert a != load_backbone("mobilenet_v3_small", "none", 96, seed=0).fingerprint
    assert a != load_backbone("mobilenet_v3_small", "none", 64, seed=1).fingerprint


def test_mismatched_fingerprint_refuses_with_the_fix():
    with pytest.raises(FingerprintMismatch, match="Refusing to train.*same backbone"):
        check_fingerprint("a" * 64, "b" * 64, "backbone=x")


def test_weights_from_a_state_dict_file():
    require_assets(ASSET_WEIGHTS)
    loaded = load_backbone("mobilenet_v2", str(ASSET_WEIGHTS), 128)
    random = load_backbone("mobilenet_v2", "none", 128)
    assert loaded.fingerprint != random.fingerprint
    first = next(loaded.module.parameters())
    assert not torch.equal(first, next(random.module.parameters()))


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(build_backbone("resnet18", "none").state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit backbone 'mobilenet_v2'"):
        build_backbone("mobilenet_v2", str(path))


def test_missing_or_corrupt_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="neither `imagenet`, `none` nor an existing file"):
        build_backbone("mobilenet_v2", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="could not be read"):
        build_backbone("mobilenet_v2", str(bad))


def _online() -> bool:
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=2).close()
        return True
    except OSError:
        return False


def test_imagenet_weights_offline_and_uncached_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not imagenet_cache_path("resnet18").exists()
    if _online():
        pytest.skip("this machine can download the weights, so the offline error cannot occur")
    with pytest.raises(WeightsError, match=r"not cached at .*could not be downloaded.*Fix"):
        build_backbone("resnet18", "imagenet")
