"""A user's Lightning project as a test double, shared by the tests that train one.

Written to a file of the test's own folder (`write_lightning_project`), it is imported by path
as a user's module is: `hp_lit:Lit` (a LightningModule that logs under its own names, see
`NAMES`), `hp_lit:Data` (a LightningDataModule). `hp_lit.STEPS` records every call of the
module's `training_step`: the user's own step is the one that ran.
"""

from __future__ import annotations

from pathlib import Path

MODULE = '''
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEPS = []  # every training_step call: the user's step is the one that ran

class Lit(pl.LightningModule):
    def __init__(self, config, num_classes, lr=0.01, hidden=16, fail_in=""):
        super().__init__()
        self.lr, self.fail_in, self.seen_config = lr, fail_in, config
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def training_step(self, batch, index):
        if self.fail_in == "step":
            raise ValueError("bad batch")
        STEPS.append(index)
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("my/train", loss, on_epoch=True, on_step=False)
        self.log("user_steps", float(len(STEPS)), on_epoch=True, on_step=False, reduce_fx="max")
        return loss

    def validation_step(self, batch, index):
        x, y = batch
        out = self.net(x)
        self.log("my/val", F.cross_entropy(out, y))
        self.log("my/acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        if self.fail_in == "optimizers":
            raise RuntimeError("no optimizer today")
        return torch.optim.Adam(self.parameters(), lr=self.lr)

class Data(pl.LightningDataModule):
    num_classes = 2  # what Lit(num_classes=...) gets

    def __init__(self, batch_size=32, size=240):
        super().__init__()
        self.batch_size, self.size = batch_size, size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.size, 1, 8, 8, generator=g)
        y = (x.mean(dim=(1, 2, 3)) > 0).long()
        cut = self.size * 3 // 4
        self.train_set, self.val_set = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)
'''
# Lit logs under its own names: what `logged_metrics` maps ours to.
NAMES = {"train_loss": "my/train", "val_loss": "my/val", "val_acc": "my/acc"}


def write_lightning_project(folder: Path):
    """Write hp_lit.py into `folder` (on sys.path), import it and clear its step record."""
    import importlib
    import sys

    (folder / "hp_lit.py").write_text(MODULE)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    module = importlib.import_module("hp_lit")
    module.STEPS.clear()
    return module
