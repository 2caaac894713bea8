"""Training: data on the device, models, losses, optimizers and schedules, and who trains.

The training code knows nothing of Optuna: `train`/`fit` take a `TrainConfig` and return an
epoch history; the objective reports it and decides about pruning. hpsearch's own loop
(loop.py) trains by default; a fit hook (hooks.py) or a LightningModule's Trainer
(lightning.py) trains the user's way (trainers.py chooses).
"""

from hpsearch.train.data import DataSplits, TensorSplit, default_data_dir, load_data
from hpsearch.train.loop import Diverged, evaluate, resolve_device
from hpsearch.train.models import build_model
from hpsearch.train.registry import dataset, declare, model, resolve_factory
from hpsearch.train.trainers import fit, fit_and_test, train

__all__ = [
    "DataSplits",
    "Diverged",
    "TensorSplit",
    "build_model",
    "dataset",
    "declare",
    "default_data_dir",
    "evaluate",
    "fit",
    "fit_and_test",
    "load_data",
    "model",
    "resolve_device",
    "resolve_factory",
    "train",
]
