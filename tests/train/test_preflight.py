"""One training step before any trial: the bugs every trial would hit fail at once."""

from __future__ import annotations

import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, UserCodeError
from hpsearch.train import load_data
from hpsearch.train.preflight import preflight

CPU = torch.device("cpu")
WHERE = "studies/x.yaml: base"


@pytest.fixture
def nets(tmp_path, monkeypatch):
    (tmp_path / "hp_nets.py").write_text(
        "from torch import nn\n"
        "def ok(config, input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n"
        "def shape_bug(config, input_shape, num_classes):\n"
        "    return Wrong()\n"
        "class Wrong(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a, self.b = nn.Linear(64, 10), nn.Linear(32, 10)\n"
        "    def forward(self, x):\n"
        "        return self.b(self.a(x.flatten(1)))\n"
        "def softmaxed(config, input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes), nn.Softmax(dim=1))\n"
        "def pair(config, input_shape, num_classes):\n"
        "    return Pair()\n"
        "class Pair(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a = nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        return self.a(x.flatten(1)), x\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def check(**settings) -> None:
    config = TrainConfig(**settings)
    preflight(config, load_data(config, CPU), CPU, WHERE)


def test_a_sound_model_passes(nets):
    check(model="hp_nets:ok")


def test_a_shape_bug_names_the_users_line(nets):
    with pytest.raises(UserCodeError) as caught:
        check(model="hp_nets:shape_bug")
    assert str(caught.value) == (
        "model `hp_nets:shape_bug` on a batch of shape (8, 1, 8, 8) raised RuntimeError: mat1 and "
        "mat2 shapes cannot be multiplied (8x10 and 32x10) (at hp_nets.py:11, in forward); fix: "
        "correct the code there (rerun with --debug for the whole traceback)")


def test_a_final_softmax_under_cross_entropy_is_refused(nets):
    with pytest.raises(ConfigError, match=r"returns probabilities \(non-negative rows that sum "
                       r"to 1\), but cross-entropy expects logits"):
        check(model="hp_nets:softmaxed")


def test_outputs_that_are_no_tensor_are_refused(nets):
    with pytest.raises(ConfigError, match=r"returned tuple, not a tensor; fix: return the outputs"):
        check(model="hp_nets:pair")


def test_a_loss_that_does_not_fit_the_targets_says_both_shapes(nets):
    with pytest.raises(ConfigError) as caught:
        check(model="hp_nets:ok", loss="mse")  # digits' 10 outputs against one class index
    assert str(caught.value).startswith(
        "the model's outputs have shape (8, 10) but the targets (8,)")


def test_an_optimizer_refusing_its_arguments_fails_before_any_trial(nets):
    with pytest.raises(ConfigError, match=r"optimizer `adam` refused its arguments"):
        check(model="hp_nets:ok", optimizer_args={"momentum": 0.9})
