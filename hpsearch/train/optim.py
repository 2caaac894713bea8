"""Optimizers and learning-rate schedules [000, 002, 003].

The schedule is a pure function of the batch step (`lr_factor`), so it can be tabulated in
tests and plotted; `build_scheduler` wraps it in a LambdaLR stepped after every batch.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.registry import load_import_path
from hpsearch.train.user_code import describe


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` over all of `model`'s parameters.

    Built-ins take `lr` and the settings given (not None); the others keep torch's own
    defaults, so RMSprop runs without momentum unless `momentum` is set. Starting points
    [000]: SGD(lr=0.1, momentum=0.9, weight_decay=1e-4) or Adam(lr=1e-3); AdamW's weight
    decay is decoupled from the gradient [002]. An import path ("torch.optim:Adadelta") names
    any optimizer class, called with the parameters, `lr`, `weight_decay` when set, and
    `optimizer_args`.
    """
    name = config.optimizer
    if name in BUILTIN_OPTIMIZERS:
        cls, settings = BUILTIN_OPTIMIZERS[name]
        kwargs = _given(config, settings)
        if name == "sgd":
            _check_nesterov(config)
        if "beta1" in kwargs or "beta2" in kwargs:
            betas = _torch_default(cls, "betas")  # one beta given: the other keeps torch's
            kwargs["betas"] = (kwargs.pop("beta1", betas[0]), kwargs.pop("beta2", betas[1]))
    else:
        cls = load_import_path(name, "optimizer", "optimizer")
        kwargs = {} if config.weight_decay is None else {"weight_decay": config.weight_decay}
    return _construct(name, cls, model, {"lr": config.lr, **kwargs, **config.optimizer_args})


# name -> (class, the settings it takes); torch's defaults apply to those left at None.
BUILTIN_OPTIMIZERS: dict[str, tuple[type, tuple[str, ...]]] = {
    "sgd": (torch.optim.SGD, ("momentum", "nesterov", "weight_decay")),
    "adam": (torch.optim.Adam, ("beta1", "beta2", "weight_decay")),
    "adamw": (torch.optim.AdamW, ("beta1", "beta2", "weight_decay")),
    "rmsprop": (torch.optim.RMSprop, ("momentum", "weight_decay")),
}


def _given(config: TrainConfig, settings: tuple[str, ...]) -> dict:
    """The settings of `settings` that are set: None leaves torch's default in place."""
    values = {name: getattr(config, name) for name in settings}
    return {name: value for name, value in values.items() if value is not None}


def _torch_default(cls: type, argument: str):
    return inspect.signature(cls.__init__).parameters[argument].default


def _construct(name: str, cls: type, model: nn.Module, kwargs: dict) -> torch.optim.Optimizer:
    try:
        return cls(model.parameters(), **kwargs)
    except Exception as exc:  # an unknown keyword, a value the class refuses
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ConfigError(
            f"optimizer `{name}` refused its arguments ({given}): {describe(exc)}; fix: "
            f"correct optimizer_args or the optimizer settings"
        ) from exc


def _check_nesterov(config: TrainConfig) -> None:
    if config.nesterov and not (config.momentum or 0) > 0:
        raise ConfigError(
            f"nesterov=true needs momentum > 0, got momentum={config.momentum}; "
            f"fix: set momentum (e.g. 0.9 [000]) or nesterov=false"
        )


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The multiplier of `config.lr` for batch `step` (0-based, counted over the whole run).

    Schedules [003]: step (x gamma every `step_size` epochs; ResNet50: /10 every 30), cosine
    (to 0 over `epochs`), exponential (x gamma per epoch, continuous), polynomial
    ((1 - t/epochs) ** power); all times a linear warmup over `warmup_epochs` (e.g. 5).
    """
    epoch = step / steps_per_epoch  # fractional epochs elapsed before this batch
    return _decay(config, step // steps_per_epoch, epoch) * _warmup(config, step, steps_per_epoch)


def _decay(config: TrainConfig, whole_epochs: int, epoch: float) -> float:
    kind = config.scheduler
    progress = min(epoch / config.epochs, 1.0) if config.epochs > 0 else 1.0
    if kind == "none":
        return 1.0
    if kind == "step":
        if config.step_size < 1:
            raise ConfigError(
                f"step_size must be >= 1 epoch, got {config.step_size}; fix: e.g. 30 [003]"
            )
        return config.gamma ** (whole_epochs // config.step_size)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "exponential":
        return config.gamma**epoch
    if kind == "polynomial":
        return (1.0 - progress) ** config.power
    raise ConfigError(
        f"unknown scheduler `{kind}`; fix: pick one of none, step, cosine, exponential, polynomial"
    )


def _warmup(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if warmup_steps <= 0:
        return 1.0
    # (step + 1): the first batch already moves the weights a little instead of wasting a step.
    return min(1.0, (step + 1) / warmup_steps)


def build_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> LambdaLR:
    """A LambdaLR applying `lr_factor`; call `.step()` after every batch."""
    return LambdaLR(optimizer, lambda step: lr_factor(config, step, steps_per_epoch))
