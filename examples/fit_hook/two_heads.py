"""A fit hook: your own training loop, for what hpsearch's loop cannot express.

Here one encoder feeds two heads, a classifier and a decoder, trained on the sum of two
losses (cross-entropy + `recon_weight` x reconstruction MSE). hpsearch calls
`fit(config, data, device, report)` once per trial; the hook trains as it likes and calls
`report(epoch, ...)` after every epoch. Everything downstream works from what it reports:
pruning (a pruned trial raises out of `report`), the criteria, the protocol's choice. It
declares the settings it reads, so a study may search exactly those.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import hpsearch


class TwoHeads(nn.Module):
    def __init__(self, features: int, classes: int, hidden: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.classify = nn.Linear(hidden, classes)
        self.decode = nn.Linear(hidden, features)

    def forward(self, x):
        code = self.encoder(x.flatten(1))
        return self.classify(code), self.decode(code)


@hpsearch.declare(honours=["lr", "batch_size"])  # model_args and epochs always reach it
def fit(config, data, device, report):
    """Train on `data.train`, report validation loss and accuracy each epoch."""
    hidden = config.model_args.get("hidden", 64)
    recon_weight = config.model_args.get("recon_weight", 0.5)
    model = TwoHeads(math.prod(data.input_shape), data.num_classes, hidden).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = data.train.x, data.train.y
    for epoch in range(1, config.epochs + 1):
        model.train()
        order, total = torch.randperm(len(y), device=device), 0.0
        for start in range(0, len(y), config.batch_size):
            idx = order[start:start + config.batch_size]
            logits, rebuilt = model(x[idx])
            recon = F.mse_loss(rebuilt, x[idx].flatten(1))
            loss = F.cross_entropy(logits, y[idx]) + recon_weight * recon
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        report(epoch, train_loss=total / len(y), **evaluate(model, data.val, recon_weight))
    return model


def evaluate(model, split, recon_weight):
    model.eval()
    with torch.no_grad():
        logits, rebuilt = model(split.x)
        recon = F.mse_loss(rebuilt, split.x.flatten(1))
        return {"val_loss": (F.cross_entropy(logits, split.y) + recon_weight * recon).item(),
                "val_acc": (logits.argmax(1) == split.y).float().mean().item(),
                "recon_loss": recon.item()}
