"""Train / validation / test splits, normalised and resident on the training device.

Built-in data sets are carved the same way for every trial: validation is a fixed share of the
official train split (seeded by `split_seed`, never by `seed`), training takes its share of the
rest, and the official test split is returned untouched by training [000: test once, at the
end]. Per-channel mean/std come from the training split only [001: normalisation correct].
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.factory_data import splits_from_factory
from hpsearch.train.models import is_lightning_data
from hpsearch.train.registry import resolve_factory
from hpsearch.train.sources import BUILTIN_DATASETS, RawData, read_builtin
from hpsearch.train.splits import DataModuleSource, DataSplits, Split, TensorSplit

__all__ = [
    "DataSplits", "Split", "TensorSplit", "cache_dir", "default_data_dir", "data_root", "load_data",
]

DATA_DIR_ENV = "HPSEARCH_DATA_DIR"
# The folder hpsearch owns for built-in data sets: archives copied from the user's data folder
# are extracted there and downloads land there, so the user's folder is only ever read.
CACHE_DIR_ENV = "HPSEARCH_CACHE_DIR"
_DEVICE_CACHE_SIZE = 2  # device-resident split sets kept per process (GPU memory is finite)


def default_data_dir() -> Path:
    """`storage/data` under the current directory: the data folder and cache of last resort."""
    return Path.cwd() / "storage" / "data"


def cache_dir() -> Path:
    """The cache hpsearch writes data sets into: $HPSEARCH_CACHE_DIR, else `default_data_dir()`.

    Unless $HPSEARCH_CACHE_DIR moves it, the default data folder (no --data-dir, no
    $HPSEARCH_DATA_DIR) is this cache too: hpsearch then extracts and downloads in it.
    """
    chosen = os.environ.get(CACHE_DIR_ENV) or default_data_dir()
    return Path(chosen).expanduser().resolve()


def data_root(config: TrainConfig) -> Path:
    """The data folder: `config.data_dir`, else $HPSEARCH_DATA_DIR, else `default_data_dir()`."""
    chosen = config.data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()
    return Path(chosen).expanduser().resolve()


_SPLIT_CACHE: OrderedDict[tuple, DataSplits] = OrderedDict()


def load_data(config: TrainConfig, device: torch.device, *, where: str = "dataset") -> DataSplits:
    """Load `config.dataset` as device-resident, normalised splits (cached per process).

    `where` names the setting in error messages (e.g. "studies/x.yaml: base.dataset").
    """
    if config.dataset not in BUILTIN_DATASETS:
        factory = resolve_factory(config.dataset, "dataset", where)
        if is_lightning_data(factory):  # built per trial, with the trial's settings
            return DataModuleSource(factory, config.dataset)
        return splits_from_factory(factory, config, device, where)
    check_fractions(config)
    root = data_root(config)
    folder = "" if config.dataset == "digits" else str(root)  # digits is bundled: no folder
    key = (config.dataset, folder, config.split_seed, config.val_fraction,
           config.train_fraction, config.max_val_samples, str(device))
    if key in _SPLIT_CACHE:
        _SPLIT_CACHE.move_to_end(key)
        return _SPLIT_CACHE[key]
    raw = read_builtin(config.dataset, root, cache=cache_dir())
    splits = _split_and_normalise(raw, config, device)
    _SPLIT_CACHE[key] = splits
    while len(_SPLIT_CACHE) > _DEVICE_CACHE_SIZE:
        _SPLIT_CACHE.popitem(last=False)
    return splits


def check_fractions(config: TrainConfig) -> None:
    """Reject split fractions that leave nothing to train or validate on, or overlap."""
    val, train = config.val_fraction, config.train_fraction
    if not 0 < val < 1:
        raise ConfigError(
            f"val_fraction must be > 0 and < 1, got {val}; fix: e.g. val_fraction=0.1"
        )
    if train is not None and not 0 < train < 1:
        raise ConfigError(
            f"train_fraction must be > 0 and < 1 (or none for all the rest), got {train}; "
            f"fix: e.g. train_fraction=0.05 as in the reference setting [001]"
        )
    if train is not None and train + val > 1 + 1e-9:
        raise ConfigError(
            f"train_fraction + val_fraction must be <= 1, got {train} + {val} = {train + val:g}; "
            f"fix: lower one of them (reference [001]: train_fraction=0.05, val_fraction=0.95)"
        )
    if config.max_val_samples is not None and config.max_val_samples < 1:
        raise ConfigError(
            f"max_val_samples must be >= 1 or none, got {config.max_val_samples}; "
            f"fix: set a positive cap or none"
        )
    if config.val_subset < 0:
        raise ConfigError(
            f"val_subset must be >= 0, got {config.val_subset}; fix: a number of samples to "
            "validate on each epoch (e.g. 10000), or 0 for the whole validation split"
        )


def split_indices(n: int, config: TrainConfig) -> tuple[Tensor, Tensor]:
    """Indices (train, val) into an official train split of `n` samples; disjoint, fixed by
    `split_seed` alone so every trial of a study sees the same split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.split_seed))
    n_val = round(config.val_fraction * n)
    rest = perm[n_val:]
    n_train = len(rest) if config.train_fraction is None else round(config.train_fraction * n)
    train, val = rest[:n_train], perm[:n_val][: config.max_val_samples]
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(
            f"{config.dataset}: the split leaves {len(train)} training and {len(val)} validation "
            f"samples of {n}; fix: raise train_fraction / val_fraction"
        )
    return train, val


def _split_and_normalise(raw: RawData, config: TrainConfig, device: torch.device) -> DataSplits:
    train_idx, val_idx = split_indices(len(raw.train_y), config)
    official = raw.train_x.to(device)  # uint8: a quarter of the float32 transfer
    train_x = official[train_idx.to(device)].float()
    dims = (0, *range(2, train_x.dim()))  # every axis but the channel
    mean = train_x.mean(dim=dims, keepdim=True)
    std = train_x.std(dim=dims, keepdim=True, unbiased=False).clamp_min(1e-6)

    def normalised(x: Tensor) -> Tensor:
        return (x.to(device).float() - mean) / std

    labels = raw.train_y.to(device)
    return DataSplits(
        train=TensorSplit((train_x - mean) / std, labels[train_idx.to(device)]),
        val=TensorSplit(normalised(official[val_idx.to(device)]), labels[val_idx.to(device)]),
        test=TensorSplit(normalised(raw.test_x), raw.test_y.to(device)),
        num_classes=raw.num_classes,
        input_shape=tuple(raw.train_x.shape[1:]),
    )
