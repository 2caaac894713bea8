"""Turning what a user data factory returns into `DataSplits` on the training device.

A factory `fn(config, **dataset_args)` returns `DataSplits`, or a dict with keys train, val and
optionally test, num_classes, input_shape. Each split is an `(x, y)` pair of tensors, a
`TensorSplit` or a torch `Dataset` (streamed through a DataLoader by the training loop).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch.utils.data import Dataset, TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.splits import DataSplits, Split, TensorSplit

_EXPECTED = (
    "DataSplits or a dict with keys train, val (optional: test, num_classes, input_shape) "
    "whose splits are (x, y) tensors, TensorSplits or torch Datasets"
)


def splits_from_factory(
    factory: Callable, config: TrainConfig, device: torch.device, where: str
) -> DataSplits:
    """Call `factory(config, **config.dataset_args)` and check and place what it returns."""
    name = f"{where}: data factory `{config.dataset}`"
    out = factory(config, **config.dataset_args)
    if isinstance(out, DataSplits):
        out = {"train": out.train, "val": out.val, "test": out.test,
               "num_classes": out.num_classes, "input_shape": out.input_shape}
    if not isinstance(out, Mapping) or not {"train", "val"} <= set(out):
        got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
        raise ConfigError(f"{name} returned {got}; fix: return {_EXPECTED}")
    splits = {key: _as_split(out[key], key, name, device) for key in ("train", "val", "test")
              if out.get(key) is not None}
    num_classes = out.get("num_classes") or _infer_classes(splits, name)
    input_shape = tuple(out.get("input_shape") or _infer_shape(splits["train"]))
    return DataSplits(
        splits["train"], splits["val"], splits.get("test"), int(num_classes), input_shape
    )


def _as_split(value: Any, key: str, name: str, device: torch.device) -> Split:
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
        return _tensor_split(x, y, key, name, device)
    raise ConfigError(f"{name}: `{key}` is a {type(value).__name__}; fix: return {_EXPECTED}")


def _tensor_split(x, y, key: str, name: str, device: torch.device) -> TensorSplit:
    if len(x) != len(y) or y.dim() != 1 or y.is_floating_point():
        raise ConfigError(
            f"{name}: `{key}` has x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} "
            f"({y.dtype}); fix: y must hold one integer class label per row of x"
        )
    x = x if x.is_floating_point() else x.float()  # models take float inputs
    return TensorSplit(x.to(device), y.to(device=device, dtype=torch.int64))


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
