"""Before any trial: build what the trials build and take one training step on a few samples.

A bug that every trial would hit (a shape mismatch in the user's model, a loss that does not
fit the targets, a model ending in softmax) then fails at once with one line naming the
user's file and line, before storage is written, instead of once per trial.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, HpsearchError
from hpsearch.train import lightning
from hpsearch.train.losses import build_loss, looks_like_probabilities
from hpsearch.train.models import build_model
from hpsearch.train.optim import build_optimizer
from hpsearch.train.registry import load_import_path
from hpsearch.train.splits import DataModuleSource, DataSplits, Split, TensorSplit
from hpsearch.train.trainers import FIT_HOOK, LIGHTNING, trainer_of
from hpsearch.train.user_code import call_user, describe

SAMPLES = 8  # enough for BatchNorm (it needs 2), few enough to cost nothing


def preflight(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device, where: str
) -> None:
    """Raise the one-line error every trial of `config` would raise; return quietly if none."""
    kind = trainer_of(config, f"{where}.model")
    if kind == FIT_HOOK:
        load_import_path(config.fit, "fit hook", f"{where}.fit")
        return
    if kind == LIGHTNING:
        if isinstance(data, DataModuleSource):
            data = lightning.build_datamodule(config, data, f"{where}.dataset")
        lightning.build_module(config, data, f"{where}.model")
        return
    if not isinstance(data, DataSplits):
        raise ConfigError(f"{where}.dataset: `{config.dataset}` is a LightningDataModule; fix: "
                          "name a LightningModule as the model, or use a data factory")
    model = build_model(config, data.input_shape, data.num_classes, where=f"{where}.model")
    _one_step(config, model.to(device), *_few(data.train, device))
    build_optimizer(config, model)


def _one_step(config: TrainConfig, model, x: Tensor, y: Tensor) -> None:
    model.train()
    what = f"model `{config.model}` on a batch of shape {tuple(x.shape)}"
    outputs = call_user(what, model, x)
    if not isinstance(outputs, Tensor):
        raise ConfigError(f"{what} returned {type(outputs).__name__}, not a tensor; fix: return "
                          "the outputs (logits) as one tensor, or train it with a fit hook")
    if config.loss == "cross_entropy" and looks_like_probabilities(outputs.detach()):
        raise ConfigError(
            f"{what} returns probabilities (non-negative rows that sum to 1), but cross-entropy "
            f"expects logits and would train with vanishing gradients; fix: drop the final "
            f"softmax, or end in log_softmax with loss: nll"
        )
    try:
        loss = build_loss(config).train(outputs, y)
        loss.backward()
    except HpsearchError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"loss `{config.loss}` on outputs of shape {tuple(outputs.shape)} and targets of "
            f"shape {tuple(y.shape)} ({y.dtype}) failed: {describe(exc)}; fix: make the model "
            f"return what the loss expects (cross_entropy: one logit per class; bce, mse, l1: "
            f"one output per target), or choose the loss that fits the targets"
        ) from exc


def _few(split: Split, device: torch.device) -> tuple[Tensor, Tensor]:
    count = min(SAMPLES, len(split))
    if isinstance(split, TensorSplit):
        return split.x[:count].to(device), split.y[:count].to(device)
    items = [split[i] for i in range(count)]
    x, y = torch.utils.data.default_collate(items)
    x = torch.as_tensor(x)
    x = x.float() if x.dtype in (torch.uint8, torch.bool) else x
    return x.to(device), torch.as_tensor(y).to(device)
