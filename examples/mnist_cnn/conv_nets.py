"""PyTorch's classic MNIST example (pytorch/examples, mnist/main.py), as a model for hpsearch.

Its network: two 3x3 convolutions (32 and 64 channels), a 2x2 max-pool, dropout 0.25, a
128-unit layer, dropout 0.5 and log-softmax outputs, trained with NLL, Adadelta(lr=1.0) and
the learning rate times 0.7 after every epoch. The network is kept; the training loop, the
argument parsing and the data loading are hpsearch's (`adadelta.yaml`). Any image size works
(the features are pooled to 12 x 12 as on 28 x 28 MNIST), so the protocol can also run it on
the bundled 8 x 8 digits.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

import hpsearch


class ConvNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, channels: int, hidden: int,
                 dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.pool = nn.AdaptiveMaxPool2d(12)  # 28 x 28 -> 12 x 12, as the original's pool
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(2 * channels * 144, hidden)
        self.dropout2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(self.pool(x)).flatten(1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


# Its own knobs for the architecture phase, and the one standard setting it reads.
@hpsearch.declare(space={"channels": {"values": [16, 32]}, "hidden": {"values": [64, 128]}},
                  honours=["dropout"])
def build_cnn(config, input_shape, num_classes, channels=32, hidden=128):
    """The classic MNIST network; `config.dropout` is its second dropout (0.5 there)."""
    return ConvNet(input_shape[0], num_classes, channels, hidden, config.dropout)
