"""Who trains a trial: hpsearch's loop, the user's fit hook, or their Lightning Trainer.

Each takes a resolved `TrainConfig`, the data, the device and an `on_epoch(record)` hook, and
returns (model, epoch history); none knows Optuna. The objective, criteria and protocol only
read the history, so they work the same whoever trains.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train import hooks, lightning, loop
from hpsearch.train.loop import Trained
from hpsearch.train.models import is_lightning
from hpsearch.train.registry import resolve_factory
from hpsearch.train.splits import DataModuleSource, DataSplits

HPSEARCH, FIT_HOOK, LIGHTNING = "hpsearch", "fit hook", "lightning"


def trainer_of(config: TrainConfig, where: str = "model") -> str:
    """hpsearch | fit hook | lightning: who trains `config`."""
    if config.fit is not None:
        return FIT_HOOK
    if config.model in ("mlp", "cnn") or config.model.startswith("torchvision:"):
        return HPSEARCH
    return LIGHTNING if is_lightning(resolve_factory(config.model, "model", where)) else HPSEARCH


def fit(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    *, tensorboard: str | os.PathLike | None = None,
    on_trained: Callable[[Trained], None] | None = None,
) -> tuple[Any, list[dict]]:
    """Train `config` on `data`; return (model, history). `tensorboard` (a run's folder) and
    `on_trained` (what a checkpoint needs) as in loop.fit; a hook or a Lightning module gives
    `on_trained` the model it returned (no optimizer state), and TensorBoard is hpsearch's
    loop's alone."""
    kind = trainer_of(config)
    if kind == HPSEARCH:
        return loop.fit(config, _splits(config, data), device, on_epoch,
                        tensorboard=tensorboard, on_trained=on_trained)
    if kind == FIT_HOOK:
        model, history = hooks.fit_with_hook(config, data, device, on_epoch)
    else:
        model, history = lightning.fit_lightning(config, data, device, on_epoch)
    if on_trained is not None and isinstance(model, torch.nn.Module):
        shape, classes = ((data.input_shape, data.num_classes) if isinstance(data, DataSplits)
                          else ((), 0))
        on_trained(Trained(model, None, None, len(history), input_shape=tuple(shape),
                           num_classes=classes))
    return model, history


def train(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    *, tensorboard: str | os.PathLike | None = None,
    on_trained: Callable[[Trained], None] | None = None,
) -> list[dict]:
    """Train as `fit` does and return only the epoch history."""
    return fit(config, data, device, on_epoch, tensorboard=tensorboard,
               on_trained=on_trained)[1]


def fit_and_test(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device,
    on_trained: Callable[[Trained], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train `config` once more and evaluate the final model once on the test split:
    (model, {"loss", "acc", "epochs"}); acc is None for a task without accuracy.
    `on_trained` gets the run's optimizer and scheduler (hpsearch's loop) before the test."""
    kind = trainer_of(config)
    if kind == LIGHTNING:
        model, result = lightning.fit_and_test_lightning(config, data, device)
        return model, {**result, "epochs": config.epochs}
    splits = _splits(config, data)
    if splits.test is None:
        raise ConfigError(f"data set `{config.dataset}` has no test split; fix: return a "
                          "`test` split from the data factory")
    if kind == FIT_HOOK:  # the hook evaluates what it is given as `val`: give it the test split
        swapped = DataSplits(splits.train, splits.test, None, splits.num_classes,
                             splits.input_shape)
        model, history = hooks.fit_with_hook(config, swapped, device)
        last = history[-1]
        return model, {"loss": last.get("val_loss"), "acc": last.get("val_acc"),
                       "epochs": len(history)}
    model, history = loop.fit(config, splits, device, on_trained=on_trained)
    test_loss, test_acc = loop.evaluate(model, splits.test, config, device)
    return model, {"loss": test_loss, "acc": test_acc, "epochs": len(history)}


def _splits(config: TrainConfig, data) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    raise ConfigError(
        f"data `{config.dataset}` is a LightningDataModule, which only a LightningModule's "
        f"Trainer reads; fix: name a LightningModule as the model, or a data factory that "
        f"returns tensors or Datasets"
    )
