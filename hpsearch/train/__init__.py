"""Training: data on the device, models, optimizers and schedules, and the epoch loop.

The training code knows nothing of Optuna: `train`/`fit` take a `TrainConfig` and return an
epoch history; the objective reports it and decides about pruning.
"""

from hpsearch.train.data import DataSplits, TensorSplit, default_data_dir, load_data
from hpsearch.train.loop import Diverged, evaluate, fit, resolve_device, train
from hpsearch.train.models import build_model
from hpsearch.train.registry import dataset, model, resolve_factory

__all__ = [
    "DataSplits",
    "Diverged",
    "TensorSplit",
    "build_model",
    "dataset",
    "default_data_dir",
    "evaluate",
    "fit",
    "load_data",
    "model",
    "resolve_device",
    "resolve_factory",
    "train",
]
