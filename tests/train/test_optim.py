"""Optimizer settings and the learning-rate schedule table [000, 003]."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.optim import build_optimizer, build_scheduler, lr_factor


def optimizer(**changes) -> torch.optim.Optimizer:
    return build_optimizer(TrainConfig(**changes), nn.Linear(3, 2))


def test_sgd_settings():
    opt = optimizer(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    group = opt.param_groups[0]
    assert type(opt) is torch.optim.SGD
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.1, 0.9, True, 1e-4)


def test_nesterov_needs_momentum():
    with pytest.raises(ConfigError) as error:
        optimizer(optimizer="sgd", nesterov=True, momentum=0.0)
    assert str(error.value) == (
        "nesterov=true needs momentum > 0, got momentum=0.0; fix: set momentum (e.g. 0.9 [000]) "
        "or nesterov=false"
    )


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_family_betas_and_decay(name, cls):
    opt = optimizer(optimizer=name, lr=3e-4, beta1=0.8, beta2=0.99, weight_decay=1e-2)
    group = opt.param_groups[0]
    assert type(opt) is cls
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.8, 0.99), 1e-2)


def test_rmsprop_momentum():
    opt = optimizer(optimizer="rmsprop", momentum=0.5)
    assert type(opt) is torch.optim.RMSprop and opt.param_groups[0]["momentum"] == 0.5


# (settings, step, steps_per_epoch, expected factor); 10 steps per epoch unless stated.
SCHEDULE_TABLE = [
    ({}, 0, 10, 1.0),
    ({}, 999, 10, 1.0),
    ({"scheduler": "step", "step_size": 30, "gamma": 0.1}, 299, 10, 1.0),  # last batch of epoch 30
    ({"scheduler": "step", "step_size": 30, "gamma": 0.1}, 300, 10, 0.1),  # first of epoch 31
    ({"scheduler": "step", "step_size": 30, "gamma": 0.1}, 600, 10, 0.01),
    ({"scheduler": "cosine", "epochs": 20}, 0, 10, 1.0),
    ({"scheduler": "cosine", "epochs": 20}, 100, 10, 0.5),
    ({"scheduler": "cosine", "epochs": 20}, 200, 10, 0.0),
    ({"scheduler": "exponential", "gamma": 0.5}, 20, 10, 0.25),
    ({"scheduler": "exponential", "gamma": 0.5}, 5, 10, math.sqrt(0.5)),  # continuous in epochs
    ({"scheduler": "polynomial", "epochs": 10, "power": 2.0}, 50, 10, 0.25),
    ({"scheduler": "polynomial", "epochs": 10, "power": 1.0}, 100, 10, 0.0),
    ({"warmup_epochs": 5}, 0, 10, 1 / 50),  # from ~0 ...
    ({"warmup_epochs": 5}, 24, 10, 0.5),
    ({"warmup_epochs": 5}, 49, 10, 1.0),  # ... to the peak after 5 epochs [003]
    ({"warmup_epochs": 5}, 80, 10, 1.0),
    ({"warmup_epochs": 2, "scheduler": "cosine", "epochs": 4}, 9, 10, 0.5 * (0.5 * (1 + math.cos(math.pi * 9 / 40)))),
]


@pytest.mark.parametrize(("settings", "step", "per_epoch", "expected"), SCHEDULE_TABLE)
def test_lr_factor_table(settings, step, per_epoch, expected):
    assert lr_factor(TrainConfig(**settings), step, per_epoch) == pytest.approx(expected, abs=1e-12)


def test_scheduler_steps_the_factor_every_batch():
    config = TrainConfig(lr=0.2, scheduler="cosine", epochs=2, warmup_epochs=0.5)
    opt = build_optimizer(config, nn.Linear(3, 2))
    scheduler = build_scheduler(config, opt, steps_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert seen == pytest.approx([0.2 * lr_factor(config, step, 4) for step in range(8)])


def test_step_size_must_be_positive():
    with pytest.raises(ConfigError, match="step_size must be >= 1 epoch, got 0"):
        lr_factor(TrainConfig(scheduler="step", step_size=0), 5, 10)


# --- torch's own defaults, import paths ---------------------------------------------------


def test_rmsprop_keeps_torchs_zero_momentum_unless_set():
    assert optimizer(optimizer="rmsprop").param_groups[0]["momentum"] == 0


def test_each_builtin_keeps_torchs_defaults_for_what_is_not_set():
    sgd = optimizer(optimizer="sgd", lr=0.1).param_groups[0]
    assert (sgd["momentum"], sgd["weight_decay"], sgd["nesterov"]) == (0, 0, False)
    adamw = optimizer(optimizer="adamw").param_groups[0]
    assert (adamw["betas"], adamw["weight_decay"]) == ((0.9, 0.999), 0.01)  # torch's AdamW
    adam = optimizer(optimizer="adam", beta2=0.99).param_groups[0]
    assert adam["betas"] == (0.9, 0.99)  # one beta given: the other stays torch's


def test_an_import_path_names_any_torch_optimizer_with_its_arguments():
    opt = optimizer(optimizer="torch.optim:Adadelta", lr=1.0, optimizer_args={"rho": 0.8})
    assert type(opt) is torch.optim.Adadelta
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["rho"]) == (1.0, 0.8)


def test_arguments_an_optimizer_refuses_are_one_line():
    with pytest.raises(ConfigError) as error:
        optimizer(optimizer="sgd", optimizer_args={"bogus": 1})
    assert str(error.value).startswith(
        "optimizer `sgd` refused its arguments (lr=0.001, nesterov=False, bogus=1): TypeError: ")
    assert str(error.value).endswith("; fix: correct optimizer_args or the optimizer settings")


def test_an_optimizer_path_that_is_no_class_says_so():
    with pytest.raises(ConfigError, match="optimizer `torch.optim:NoSuch`: module `torch.optim` "
                                          "has no attribute `NoSuch`"):
        optimizer(optimizer="torch.optim:NoSuch")
