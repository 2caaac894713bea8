"""Optuna's `pytorch_lightning_simple.py` example (optuna-examples, pytorch/), ported to
hpsearch: the user's LightningModule and LightningDataModule, trained by their own Trainer.

The original tunes an MLP (1-3 layers of 4-128 units, log scale, one dropout in 0.2-0.5)
written as a LightningModule, with a median pruner through optuna-integration's callback,
on Fashion-MNIST downloaded by its data module. Here the data module serves scikit-learn's
bundled digits instead, so it runs offline; nothing in it knows hpsearch or Optuna:
`lightning_simple.yaml` names the classes, and hpsearch passes each constructor the
arguments it names (`dropout` and `batch_size` are hpsearch settings, the rest `model_args`).
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitMLP(pl.LightningModule):
    """1-3 hidden layers with one dropout; log-softmax outputs trained with NLL."""

    # Its own architecture knobs (constructor arguments), for `hpsearch protocol`'s
    # architecture phase: a plain attribute, so this file needs no hpsearch import.
    search_space = {"n_layers": {"type": "int", "low": 1, "high": 3},
                    "units_0": {"type": "int", "low": 4, "high": 128, "log": True}}

    def __init__(self, dropout: float = 0.2, n_layers: int = 1, units_0: int = 64,
                 units_1: int = 64, units_2: int = 64, lr: float = 1e-3):
        super().__init__()
        self.lr, self.steps_run = lr, 0
        layers, features = [], 64  # 8 x 8 digits
        for width in (units_0, units_1, units_2)[:n_layers]:
            layers += [nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout)]
            features = width
        self.net = nn.Sequential(*layers, nn.Linear(features, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.net(x.flatten(1)), dim=1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self.steps_run += 1
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self.log("steps_run", float(self.steps_run), on_step=False, on_epoch=True,
                 reduce_fx="max")
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        output = self(x)
        self.log("val_loss", F.nll_loss(output, y))
        self.log("val_acc", (output.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DigitsData(pl.LightningDataModule):
    """scikit-learn's 1,797 8x8 digits: 1,200 to train, 297 to validate, 300 to test."""

    def __init__(self, batch_size: int = 128):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        self.train_set = TensorDataset(x[:1200], y[:1200])
        self.val_set = TensorDataset(x[1200:1497], y[1200:1497])
        self.test_set = TensorDataset(x[1497:], y[1497:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)
