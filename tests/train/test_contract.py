"""What a model and its trainer honour: the settings a search may vary for it."""

from __future__ import annotations

import pytest

from hpsearch.config import TrainConfig
from hpsearch.train.contract import contract_for

FACTORIES = '''
import hpsearch

def plain(config, input_shape, num_classes):
    return None

@hpsearch.declare(honours=["dropout", "norm"])
def declared(config, input_shape, num_classes):
    return None

def by_hand(config, input_shape, num_classes):
    return None
by_hand.honours = ["width"]

@hpsearch.declare(honours=["lr"])
def hook(config, data, device, report):
    return None
'''


@pytest.fixture(autouse=True)
def factories(tmp_path, monkeypatch):
    (tmp_path / "hp_contract.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))


def honoured(config: TrainConfig, *settings: str) -> list[bool]:
    contract = contract_for(config)
    return [contract.honoured(s) for s in settings]


def test_the_builtin_models_read_their_own_settings():
    assert honoured(TrainConfig(model="mlp"), "depth", "dropout", "conv_blocks") == [True, True, False]
    assert honoured(TrainConfig(model="cnn"), "conv_blocks", "head", "width") == [True, True, False]
    assert honoured(TrainConfig(model="torchvision:resnet18"), "dropout", "lr") == [False, True]


def test_a_factory_honours_the_loop_settings_and_what_it_declares():
    assert honoured(TrainConfig(model="hp_contract:plain"), "lr", "weight_decay", "dropout") == [
        True, True, False]
    assert honoured(TrainConfig(model="hp_contract:declared"), "dropout", "norm", "depth") == [
        True, True, False]
    assert honoured(TrainConfig(model="hp_contract:by_hand"), "width") == [True]


def test_its_own_knobs_data_and_run_settings_always_apply():
    config = TrainConfig(model="hp_contract:plain")
    assert all(honoured(config, "model_args.hidden", "epochs", "seed", "val_fraction"))


def test_label_smoothing_belongs_to_cross_entropy():
    assert honoured(TrainConfig(loss="nll"), "label_smoothing") == [False]
    assert honoured(TrainConfig(), "label_smoothing") == [True]


def test_a_fit_hook_honours_only_what_it_declares():
    config = TrainConfig(fit="hp_contract:hook")
    assert honoured(config, "lr", "batch_size", "dropout", "epochs") == [True, False, False, True]


def test_the_refusal_says_what_is_declared_and_how_to_declare_more():
    refusal = contract_for(TrainConfig(model="hp_contract:declared")).refusal("depth")
    assert refusal == (
        "model `hp_contract:declared` does not declare that it reads `depth` (it declares: "
        "dropout, norm), so trials would differ in name only; fix: read it from config in "
        "declared and declare it with @hpsearch.declare(honours=[...]) (or "
        "declared.honours = [...]), or do not search it")
    assert contract_for(TrainConfig(model="mlp")).refusal("head") == (
        "model `mlp` does not read `head` (it reads: depth, dropout, norm, width), so trials "
        "would differ in name only; fix: do not search or set it for this model")
