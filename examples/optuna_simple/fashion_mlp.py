"""Optuna's `pytorch_simple.py` example (optuna-examples, pytorch/), ported to hpsearch.

The original searches an MLP on a small part of Fashion-MNIST (3,840 training and 1,280
validation images, batch 128, 10 epochs): 1-3 layers of 4-128 units, each with its dropout
in 0.2-0.5, log-softmax outputs and NLL loss, Adam / RMSprop / SGD at lr 1e-5..1e-1, median
pruning on the validation accuracy. Its 140 lines hold the data loading, the training and
validation loops, the report/prune calls and the summary printing; here the model is all
that is left, and `pytorch_simple.yaml` holds the search.
"""

from __future__ import annotations

import math

from torch import nn


def build_mlp(config, input_shape, num_classes, n_layers=1, units_0=64, units_1=64,
              units_2=64, dropout_0=0.2, dropout_1=0.2, dropout_2=0.2):
    """`n_layers` x [Linear -> ReLU -> Dropout], then Linear -> LogSoftmax (loss: nll)."""
    units, dropouts = (units_0, units_1, units_2), (dropout_0, dropout_1, dropout_2)
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for width, p in zip(units[:n_layers], dropouts[:n_layers]):
        layers += [nn.Linear(features, width), nn.ReLU(), nn.Dropout(p)]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, num_classes), nn.LogSoftmax(dim=1))
