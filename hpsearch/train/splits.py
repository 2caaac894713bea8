"""The containers the data loaders return and the training loop consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class TensorSplit:
    """One split as two tensors: inputs `x` (N, ...) and integer class labels `y` (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


Split = Union[TensorSplit, Dataset]


@dataclass
class DataSplits:
    """The three splits of a data set plus what a model needs to know about it."""

    train: Split
    val: Split
    test: Split | None  # the official test split; never used by training
    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W) for images, (features,) for vectors


@dataclass(frozen=True)
class DataModuleSource:
    """A LightningDataModule class named as the data set: each trial builds it with its own
    settings (batch size...) and its Trainer reads it (train/lightning.py)."""

    cls: type
    name: str  # the import path, for messages
