"""Who trains a trial: hpsearch's loop, the user's fit hook, or their Lightning Trainer.

Each takes a resolved `TrainConfig`, the data, the device and an `on_epoch(record)` hook, and
returns (model, epoch history); none knows Optuna. The objective, criteria and protocol only
read the history, so they work the same whoever trains.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train import hooks, lightning, loop
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
) -> tuple[Any, list[dict]]:
    """Train `config` on `data`; return (model, history)."""
    kind = trainer_of(config)
    if kind == FIT_HOOK:
        return hooks.fit_with_hook(config, data, device, on_epoch)
    if kind == LIGHTNING:
        return lightning.fit_lightning(config, data, device, on_epoch)
    return loop.fit(config, _splits(config, data), device, on_epoch)


def train(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train as `fit` does and return only the epoch history."""
    return fit(config, data, device, on_epoch)[1]


def fit_and_test(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device
) -> tuple[Any, dict[str, Any]]:
    """Train `config` once more and evaluate the final model once on the test split:
    (model, {"loss", "acc", "epochs"}); acc is None for a task without accuracy."""
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
    model, history = loop.fit(config, splits, device)
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
