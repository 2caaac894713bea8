"""The models a study can name: the reference MLP [001], the block CNN [000], any torchvision
classifier, or a user factory (registered name or `pkg.mod:fn`): a function or an nn.Module
class called as fn(config, input_shape, num_classes, **model_args). A LightningModule class
is trained by its own Trainer loop instead (train/lightning.py)."""

from __future__ import annotations

import math

from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.registry import resolve_factory
from hpsearch.train.user_code import call_user

TORCHVISION_PREFIX = "torchvision:"
HEAD_HIDDEN = 128  # two-layer head FC(features, 128) + ReLU + Linear(128, classes) [000]


def build_model(
    config: TrainConfig, input_shape: tuple[int, ...], num_classes: int, *, where: str = "model"
) -> nn.Module:
    """Build `config.model` for inputs of `input_shape` (no batch axis) and `num_classes` outputs.

    `where` names the setting in error messages (e.g. "studies/x.yaml: base.model").
    """
    name = config.model
    if name == "mlp":
        return mlp(config, input_shape, num_classes)
    if name == "cnn":
        return cnn(config, input_shape, num_classes, where)
    if name.startswith(TORCHVISION_PREFIX):
        return torchvision_model(name[len(TORCHVISION_PREFIX):], input_shape, num_classes, where)
    factory = resolve_factory(name, "model", where)
    model = call_user(f"model factory `{name}`", factory, config, tuple(input_shape),
                      num_classes, **config.model_args)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{where}: model factory `{name}` returned {type(model).__name__}, not a torch "
            f"nn.Module; fix: return the model (an nn.Module instance)"
        )
    if is_lightning(type(model)):
        raise ConfigError(
            f"{where}: model factory `{name}` returned a LightningModule, whose "
            f"training_step and configure_optimizers only its Trainer runs; fix: name the "
            f"LightningModule class itself as the model (model: package.module:ClassName)"
        )
    return model


def is_lightning(cls: type) -> bool:
    """True for a LightningModule subclass (found by name: lightning stays an optional
    dependency, imported only when used)."""
    return _derives_from(cls, "LightningModule")


def is_lightning_data(cls: type) -> bool:
    """True for a LightningDataModule subclass."""
    return _derives_from(cls, "LightningDataModule")


def _derives_from(cls: object, name: str) -> bool:
    if not isinstance(cls, type):
        return False
    roots = ("lightning.pytorch", "pytorch_lightning")
    return any(base.__name__ == name and base.__module__.startswith(roots)
               for base in cls.__mro__)


def mlp(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Flatten, `depth` x [Linear(width) -> norm -> ReLU -> Dropout], Linear(width, classes).

    Reference [001]: 3 linear layers of 100 outputs and a linear classifier; BatchNorm1d or
    LayerNorm as the normalisation, dropout after the hidden FC layers.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for _ in range(config.depth):
        layers.append(nn.Linear(features, config.width))
        if config.norm == "batch":
            layers.append(nn.BatchNorm1d(config.width))
        elif config.norm == "layer":
            layers.append(nn.LayerNorm(config.width))
        layers.append(nn.ReLU())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        features = config.width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def cnn(
    config: TrainConfig, input_shape: tuple[int, ...], num_classes: int, where: str = "model"
) -> nn.Sequential:
    """`conv_blocks` x [Conv3x3 -> (BatchNorm2d) -> ReLU -> MaxPool2d(2)], then the head [000].

    Block i has conv_width * 2**i channels (64-128-256, lighter 32-64-128 or 48-96-192). The
    first block's pool is dropped when `first_pool` is False, and any pool once the map is
    smaller than 2 pixels, so 8x8 digits take 4 blocks.
    """
    if len(input_shape) != 3:
        raise ConfigError(
            f"{where}: cnn needs image inputs (C, H, W), got input shape {tuple(input_shape)}; "
            f"fix: use model=mlp for vector inputs"
        )
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for block in range(config.conv_blocks):
        out = config.conv_width * 2**block
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if config.conv_norm == "batch":
            layers.append(nn.BatchNorm2d(out))  # Conv2D -> BatchNorm -> ReLU [000]
        layers.append(nn.ReLU())
        if (block > 0 or config.first_pool) and min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out
    return nn.Sequential(*layers, *_head(config, channels * height * width, num_classes))


def _head(config: TrainConfig, features: int, num_classes: int) -> list[nn.Module]:
    dropout = [nn.Dropout(config.dropout)] if config.dropout > 0 else []
    if config.head == "mlp":
        return [nn.Flatten(), nn.Linear(features, HEAD_HIDDEN), nn.ReLU(), *dropout,
                nn.Linear(HEAD_HIDDEN, num_classes)]
    return [nn.Flatten(), *dropout, nn.Linear(features, num_classes)]


def torchvision_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, where: str = "model"
) -> nn.Module:
    """`torchvision.models.get_model(arch)`, untrained, first conv fitted to the input channels."""
    import torchvision.models

    if arch not in torchvision.models.list_models():
        raise ConfigError(
            f"{where}: unknown torchvision model `{arch}`; fix: pick a name listed by "
            f"`python -c \"import torchvision; print(torchvision.models.list_models())\"`, "
            f"e.g. torchvision:resnet18"
        )
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if len(input_shape) == 3:
        _fit_first_conv(model, input_shape[0])
    return model


def _fit_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first Conv2d for one with `in_channels` inputs (1-channel MNIST), same settings."""
    convs = ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    name, conv = next(convs, ("", None))
    if conv is None or conv.in_channels == in_channels:
        return
    replacement = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=1 if conv.groups == conv.in_channels else conv.groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, replacement)
