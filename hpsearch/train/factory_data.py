"""Turning what a user data factory returns into `DataSplits` on the training device.

A factory `fn(config, **dataset_args)` returns `DataSplits`, or a dict with keys train, val and
optionally test, num_classes, input_shape. Each split is an `(x, y)` pair of tensors, a
`TensorSplit` or a torch `Dataset` (streamed through a DataLoader by the training loop).

What the targets must be follows the loss (train/losses.py): class indices for
classification, one float per output for bce and regression (`num_classes` is then the
number of outputs), anything of the right length for a custom loss or a fit hook.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch.utils.data import Dataset, TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.losses import CLASSIFICATION, CUSTOM, task_of
from hpsearch.train.splits import DataSplits, Split, TensorSplit
from hpsearch.train.user_code import call_user

_EXPECTED = (
    "DataSplits or a dict with keys train, val (optional: test, num_classes, input_shape) "
    "whose splits are (x, y) tensors, TensorSplits or torch Datasets"
)


def splits_from_factory(
    factory: Callable, config: TrainConfig, device: torch.device, where: str
) -> DataSplits:
    """Call `factory(config, **config.dataset_args)` and check and place what it returns."""
    name = f"{where}: data factory `{config.dataset}`"
    out = call_user(f"data factory `{config.dataset}`", factory, config, **config.dataset_args)
    if isinstance(out, DataSplits):
        out = {"train": out.train, "val": out.val, "test": out.test,
               "num_classes": out.num_classes, "input_shape": out.input_shape}
    if not isinstance(out, Mapping) or not {"train", "val"} <= set(out):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ConfigError(f"{name} returned {got}; fix: return {_EXPECTED}")
    task = task_of(config)
    splits = {key: _as_split(out[key], key, name, device, task)
              for key in ("train", "val", "test") if out.get(key) is not None}
    num_classes = out.get("num_classes") or _infer_outputs(splits, name, task)
    input_shape = tuple(out.get("input_shape") or _infer_shape(splits["train"]))
    return DataSplits(
        splits["train"], splits["val"], splits.get("test"), int(num_classes), input_shape
    )


def _as_split(value: Any, key: str, name: str, device: torch.device, task: str) -> Split:
    if isinstance(value, TensorSplit):
        value = (value.x, value.y)
    if isinstance(value, Dataset):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        try:
            x, y = torch.as_tensor(value[0]), torch.as_tensor(value[1])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"{name}: `{key}` is not a pair of tensors ({exc}); fix: return {_EXPECTED}"
            ) from exc
        return _tensor_split(x, y, key, name, device, task)
    raise ConfigError(f"{name}: `{key}` is a {type(value).__name__}; fix: return {_EXPECTED}")


def _tensor_split(x, y, key: str, name: str, device: torch.device, task: str) -> TensorSplit:
    shapes = f"x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} ({y.dtype})"
    if len(x) != len(y):
        raise ConfigError(f"{name}: `{key}` has {shapes}; fix: give one target per row of x")
    if task == CLASSIFICATION and (y.dim() != 1 or y.is_floating_point()):
        raise ConfigError(
            f"{name}: `{key}` has {shapes}; fix: y must hold one integer class label per row "
            f"of x (or set loss: mse, l1 or bce for other targets)"
        )
    if x.dtype in (torch.uint8, torch.bool):  # images and masks: models take floats
        x = x.float()  # (integer token ids stay integers, for embedding layers)
    if task == CLASSIFICATION:
        y = y.to(torch.int64)
    elif task != CUSTOM:
        y = y.float()  # bce and regression targets
    return TensorSplit(x.to(device), y.to(device))


def _infer_outputs(splits: dict[str, Split], name: str, task: str) -> int:
    """Classes (or, for float targets, outputs) the model must produce."""
    train = splits["train"]
    if isinstance(train, TensorSplit) and (task not in (CLASSIFICATION, CUSTOM)
                                           or train.y.is_floating_point()):
        return 1 if train.y.dim() == 1 else int(train.y[0].numel())
    return _infer_classes(splits, name)


def _infer_classes(splits: dict[str, Split], name: str) -> int:
    """Largest label + 1 over every tensor split; for Datasets, their `classes` or labels."""
    labels = [_labels(split) for split in splits.values()]
    known = [y for y in labels if y is not None]
    if len(known) < len(labels):
        raise ConfigError(
            f"{name}: cannot infer the number of classes from a Dataset; "
            f"fix: return num_classes with the splits"
        )
    return max((int(y.max()) + 1 for y in known if len(y)), default=0)


def _labels(split: Split):
    if isinstance(split, TensorSplit):
        return split.y
    if isinstance(split, TensorDataset) and len(split.tensors) >= 2:
        return split.tensors[1]
    if hasattr(split, "classes"):
        return torch.tensor([len(split.classes) - 1])
    if hasattr(split, "targets"):
        return torch.as_tensor(split.targets)
    return None


def _infer_shape(split: Split) -> tuple[int, ...]:
    if isinstance(split, TensorSplit):
        return tuple(split.x.shape[1:])
    x = split[0][0]  # a Dataset: the first item's input
    return tuple(torch.as_tensor(x).shape)
