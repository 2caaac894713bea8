"""Model shapes and layers: the reference MLP [001], the block CNN [000], torchvision, factories."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train import build_model, registry

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def output_shape(config: TrainConfig, input_shape, classes: int = 10) -> tuple[int, ...]:
    model = build_model(config, input_shape, classes).eval()
    with torch.no_grad():
        return tuple(model(torch.randn(2, *input_shape)).shape)


def layers_of(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("shape", SHAPES)
def test_mlp_output_shape(shape):
    assert output_shape(TrainConfig(), shape, classes=7) == (2, 7)


def test_reference_mlp_is_three_hidden_layers_of_100_and_a_classifier():
    model = build_model(TrainConfig(), (1, 28, 28), 10)
    linears = layers_of(model, nn.Linear)
    assert [(l.in_features, l.out_features) for l in linears] == [(784, 100), (100, 100), (100, 100), (100, 10)]
    assert not layers_of(model, nn.Dropout) and not layers_of(model, nn.BatchNorm1d)


@pytest.mark.parametrize(("norm", "kind"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_normalisation_follows_each_hidden_linear(norm, kind):
    model = build_model(TrainConfig(norm=norm, dropout=0.2), (1, 8, 8), 10)
    names = [type(m).__name__ for m in model]
    assert names[:5] == ["Flatten", "Linear", kind.__name__, "ReLU", "Dropout"]
    assert len(layers_of(model, kind)) == 3 and len(layers_of(model, nn.Dropout)) == 3
    assert layers_of(model, nn.Dropout)[0].p == 0.2


@pytest.mark.parametrize("blocks", [2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_cnn_output_shape(blocks, shape):
    config = TrainConfig(model="cnn", conv_blocks=blocks, conv_width=32)
    assert output_shape(config, shape) == (2, 10)


@pytest.mark.parametrize("width", [32, 48, 64])
def test_cnn_channels_double_per_block(width):
    model = build_model(TrainConfig(model="cnn", conv_width=width), (3, 32, 32), 10)
    assert [c.out_channels for c in layers_of(model, nn.Conv2d)] == [width, 2 * width, 4 * width]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in layers_of(model, nn.Conv2d))


def test_cnn_pools_after_each_block_until_the_map_is_one_pixel():
    model = build_model(TrainConfig(model="cnn", conv_blocks=4, conv_width=32), (1, 8, 8), 10)
    assert len(layers_of(model, nn.MaxPool2d)) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert layers_of(model, nn.Linear)[-1].in_features == 256 * 1 * 1


def test_cnn_without_first_pool_keeps_more_features():
    config = TrainConfig(model="cnn", conv_blocks=3, conv_width=32, first_pool=False)
    model = build_model(config, (1, 28, 28), 10)
    assert len(layers_of(model, nn.MaxPool2d)) == 2  # 28 -> 28 -> 14 -> 7
    assert layers_of(model, nn.Linear)[-1].in_features == 128 * 7 * 7
    assert output_shape(config, (1, 28, 28)) == (2, 10)


def test_cnn_two_layer_head_and_batch_norm():
    config = TrainConfig(model="cnn", head="mlp", conv_norm="batch", dropout=0.3, conv_width=32)
    model = build_model(config, (3, 32, 32), 10)
    linears = layers_of(model, nn.Linear)
    assert [(l.in_features, l.out_features) for l in linears] == [(128 * 4 * 4, 128), (128, 10)]
    assert len(layers_of(model, nn.BatchNorm2d)) == 3 and len(layers_of(model, nn.Dropout)) == 1
    names = [type(m).__name__ for m in model][:3]
    assert names == ["Conv2d", "BatchNorm2d", "ReLU"]  # Conv2D -> BatchNorm -> ReLU [000]
    assert output_shape(config, (3, 32, 32)) == (2, 10)


def test_cnn_linear_head_dropout_only_when_asked():
    assert not layers_of(build_model(TrainConfig(model="cnn"), (1, 8, 8), 10), nn.Dropout)
    assert layers_of(build_model(TrainConfig(model="cnn", dropout=0.5), (1, 8, 8), 10), nn.Dropout)


def test_cnn_rejects_vector_inputs():
    with pytest.raises(ConfigError, match=r"cnn needs image inputs \(C, H, W\), got input shape \(5,\)"):
        build_model(TrainConfig(model="cnn"), (5,), 3)


def test_torchvision_resnet18_takes_one_channel_mnist():
    model = build_model(TrainConfig(model="torchvision:resnet18"), (1, 28, 28), 10)
    assert model.conv1.in_channels == 1 and model.conv1.out_channels == 64
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert output_shape(TrainConfig(model="torchvision:resnet18"), (1, 28, 28)) == (2, 10)


def test_unknown_torchvision_model_says_how_to_list_names():
    with pytest.raises(ConfigError) as error:
        build_model(TrainConfig(model="torchvision:resnet7"), (1, 28, 28), 10)
    assert str(error.value) == (
        "model: unknown torchvision model `resnet7`; fix: pick a name listed by "
        "`python -c \"import torchvision; print(torchvision.models.list_models())\"`, "
        "e.g. torchvision:resnet18"
    )


def test_unknown_model_lists_the_built_ins(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"model": {}, "dataset": {}})
    with pytest.raises(ConfigError) as error:
        build_model(TrainConfig(model="transformer"), (1, 8, 8), 10, where="base.model")
    assert str(error.value).startswith(
        "base.model: unknown model `transformer`; fix: use one of mlp, cnn, torchvision:NAME,"
    )


@pytest.fixture
def model_module(tmp_path, monkeypatch):
    (tmp_path / "hp_user_models.py").write_text(
        "from torch import nn\n"
        "def build(config, input_shape, num_classes, hidden=8):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Linear(hidden, num_classes))\n"
        "def not_a_model(config, input_shape, num_classes):\n"
        "    return 'model'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    monkeypatch.delitem(__import__("sys").modules, "hp_user_models", raising=False)


def test_model_factory_by_import_path_gets_model_args(model_module):
    config = TrainConfig(model="hp_user_models:build", model_args={"hidden": 13})
    model = build_model(config, (6,), 4)
    assert model[1].out_features == 13 and model[2].out_features == 4


def test_model_factory_must_return_a_module(model_module):
    with pytest.raises(ConfigError) as error:
        build_model(TrainConfig(model="hp_user_models:not_a_model"), (6,), 4)
    assert str(error.value) == (
        "model: model factory `hp_user_models:not_a_model` returned str, not a torch nn.Module; "
        "fix: return the model (an nn.Module instance)"
    )


def test_registered_model_name(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"model": {}, "dataset": {}})

    @registry.model("tiny")
    def tiny(config, input_shape, num_classes, scale=1):
        return nn.Linear(input_shape[0], num_classes * scale)

    assert build_model(TrainConfig(model="tiny", model_args={"scale": 2}), (3,), 5).out_features == 10
