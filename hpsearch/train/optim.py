"""Optimizers and learning-rate schedules [000, 002, 003].

The schedule is a pure function of the batch step (`lr_factor`), so it can be tabulated in
tests and plotted; `build_scheduler` wraps it in a LambdaLR stepped after every batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` over all of `model`'s parameters.

    Starting points [000]: SGD(lr=0.1, momentum=0.9, weight_decay=1e-4) or Adam(lr=1e-3);
    AdamW's weight decay is decoupled from the gradient [002].
    """
    params, name = model.parameters(), config.optimizer
    common = {"lr": config.lr, "weight_decay": config.weight_decay}
    if name == "sgd":
        if config.nesterov and config.momentum <= 0:
            raise ConfigError(
                f"nesterov=true needs momentum > 0, got momentum={config.momentum}; "
                f"fix: set momentum (e.g. 0.9 [000]) or nesterov=false"
            )
        return torch.optim.SGD(params, momentum=config.momentum, nesterov=config.nesterov, **common)
    if name == "adam":
        return torch.optim.Adam(params, betas=(config.beta1, config.beta2), **common)
    if name == "adamw":
        return torch.optim.AdamW(params, betas=(config.beta1, config.beta2), **common)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, momentum=config.momentum, **common)
    raise ConfigError(f"unknown optimizer `{name}`; fix: pick one of sgd, adam, adamw, rmsprop")


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
