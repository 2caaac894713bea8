"""Regression on your own data: a noisy sine curve, tuned on the MSE loss.

The data factory returns float targets, so `loss: mse` (or l1) trains one output per target
(`num_classes` is then the number of targets); without accuracy, hpsearch's criteria read
the validation loss, and the objective is a loss (`best_val_loss`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

import hpsearch


def noisy_sine(config, samples=2000, noise=0.1):
    """y = sin(3x) + noise on x in [-2, 2]: 70% train, 15% validation, 15% test."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(samples, 1, generator=g) * 4 - 2
    y = torch.sin(3 * x).squeeze(1) + noise * torch.randn(samples, generator=g)
    a, b = int(samples * 0.7), int(samples * 0.85)
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


@hpsearch.declare(space={"hidden": {"type": "int", "low": 8, "high": 128, "log": True}},
                  honours=["dropout"])
def mlp(config, input_shape, num_outputs, hidden=32):
    """Two tanh layers: a smooth curve wants a smooth activation."""
    features = math.prod(input_shape)
    return nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Dropout(config.dropout),
                         nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, num_outputs))
