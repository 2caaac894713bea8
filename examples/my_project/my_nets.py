"""A user's own model and data, tuned by hpsearch without touching hpsearch's code.

hpsearch imports these factories by the paths named in `tune_my_net.yaml`
(`my_nets:build_net`, `my_nets:load_blobs`) from the study file's folder and the working
directory, as pytest and Hydra do: no PYTHONPATH needed.
"""

from __future__ import annotations

import torch
from torch import nn

import hpsearch


# `space`: the model's own architecture knobs (its keyword arguments), searched by the
# protocol's architecture phase. `honours`: the standard settings it reads from `config`;
# hpsearch searches only those for it (here dropout: the regularization phase may tune it).
@hpsearch.declare(
    space={"hidden": {"type": "int", "low": 16, "high": 256, "log": True},
           "layers": {"type": "int", "low": 1, "high": 3}},
    honours=["dropout"],
)
def build_net(config, input_shape, num_classes, hidden=64, layers=2):
    """Model factory: receives the resolved config, the input shape and the class count."""
    features = 1
    for size in input_shape:
        features *= size
    blocks: list[nn.Module] = [nn.Flatten()]
    for _ in range(layers):
        blocks += [nn.Linear(features, hidden), nn.GELU(), nn.Dropout(config.dropout)]
        features = hidden
    blocks.append(nn.Linear(features, num_classes))
    return nn.Sequential(*blocks)


def load_blobs(config, samples=3000, classes=4):
    """Data factory: returns train/val/test splits as (inputs, labels) tensors.

    Four Gaussian blobs in 16 dimensions, standardised; tensors are the fast path (kept on the training
    device); returning torch Datasets instead streams them through a DataLoader.
    """
    generator = torch.Generator().manual_seed(1234)
    centers = torch.randn(classes, 16, generator=generator) * 2.0
    labels = torch.randint(0, classes, (samples,), generator=generator)
    inputs = centers[labels] + torch.randn(samples, 16, generator=generator) * 1.5
    cut_val, cut_test = int(samples * 0.7), int(samples * 0.85)
    # Standardised with the training split's statistics: the protocol's setup phase checks it.
    mean, std = inputs[:cut_val].mean(dim=0), inputs[:cut_val].std(dim=0)
    inputs = (inputs - mean) / std
    return {
        "train": (inputs[:cut_val], labels[:cut_val]),
        "val": (inputs[cut_val:cut_test], labels[cut_val:cut_test]),
        "test": (inputs[cut_test:], labels[cut_test:]),
    }
