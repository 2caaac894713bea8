"""Losses by name or import path, what they imply (task, accuracy), and their shape rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpsearch.config import TrainConfig, coerce_value
from hpsearch.errors import ConfigError, UserCodeError
from hpsearch.train.losses import (
    BINARY,
    CLASSIFICATION,
    CUSTOM,
    REGRESSION,
    build_loss,
    has_accuracy,
    looks_like_probabilities,
    task_of,
)

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0], [1.0, 0.5, 0.0], [0.0, 2.0, 1.0]])
LABELS = torch.tensor([0, 2, 1, 1])  # argmax hits rows 0, 1 and 3


@pytest.mark.parametrize(("loss", "task", "accuracy"), [
    ("cross_entropy", CLASSIFICATION, True), ("nll", CLASSIFICATION, True),
    ("bce", BINARY, True), ("mse", REGRESSION, False), ("l1", REGRESSION, False),
    ("torch.nn:SmoothL1Loss", CUSTOM, None),
])
def test_each_loss_names_its_task(loss, task, accuracy):
    config = TrainConfig(loss=loss)
    assert (task_of(config), has_accuracy(config)) == (task, accuracy)


def test_a_fit_hook_computes_its_own_loss():
    assert task_of(TrainConfig(fit="pkg:fit")) == CUSTOM


def test_cross_entropy_smooths_in_training_only():
    loss = build_loss(TrainConfig(label_smoothing=0.1))
    assert loss.train(LOGITS, LABELS) == pytest.approx(
        F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1).item())
    assert loss.evaluate(LOGITS, LABELS) == pytest.approx(F.cross_entropy(LOGITS, LABELS).item())
    assert loss.correct(LOGITS, LABELS).item() == 3


def test_nll_reads_log_probabilities():
    loss = build_loss(TrainConfig(loss="nll"))
    log_p = F.log_softmax(LOGITS, dim=1)
    assert loss.train(log_p, LABELS).item() == pytest.approx(F.cross_entropy(LOGITS, LABELS).item())


def test_bce_counts_each_output_and_takes_one_logit_per_sample():
    loss = build_loss(TrainConfig(loss="bce"))
    logits, targets = torch.tensor([[2.0], [-1.0], [0.5]]), torch.tensor([1.0, 1.0, 0.0])
    expected = F.binary_cross_entropy_with_logits(logits.squeeze(1), targets)
    assert loss.train(logits, targets).item() == pytest.approx(expected.item())
    assert loss.correct(logits, targets).item() == 1  # only the first is right
    multi = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    assert loss.correct(multi, torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item() == 1.5


def test_regression_has_no_accuracy_and_refuses_broadcasting():
    loss = build_loss(TrainConfig(loss="mse"))
    outputs, targets = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])
    assert loss.train(outputs, targets).item() == pytest.approx((1 + 4) / 2)
    assert loss.correct(outputs, targets) is None
    with pytest.raises(ConfigError) as caught:
        loss.train(torch.zeros(2, 3), targets)
    assert str(caught.value) == (
        "the model's outputs have shape (2, 3) but the targets (2,); fix: return one output per "
        "target (num_classes is the number of targets for bce, mse and l1)")


def test_an_import_path_names_a_loss_class_with_its_arguments():
    loss = build_loss(TrainConfig(loss="torch.nn:SmoothL1Loss", loss_args={"beta": 0.5}))
    outputs, targets = torch.tensor([0.0, 2.0]), torch.tensor([0.2, 0.0])
    expected = F.smooth_l1_loss(outputs, targets, beta=0.5)
    assert loss.train(outputs, targets).item() == pytest.approx(expected.item())
    assert loss.correct(outputs, targets) is None  # float targets: no accuracy


def test_an_import_path_names_a_loss_function(tmp_path):
    (tmp_path / "hp_my_loss.py").write_text(
        "import torch.nn.functional as F\n"
        "def focal(outputs, targets, gamma=2.0):\n"
        "    return F.cross_entropy(outputs, targets) * gamma\n"
        "def broken(outputs, targets):\n"
        "    raise ValueError('no targets like these')\n")
    loss = build_loss(TrainConfig(loss="hp_my_loss:focal", loss_args={"gamma": 3.0}))
    assert loss.train(LOGITS, LABELS).item() == pytest.approx(
        3 * F.cross_entropy(LOGITS, LABELS).item())
    assert loss.correct(LOGITS, LABELS).item() == 3  # class indices: accuracy is defined
    with pytest.raises(UserCodeError) as caught:
        build_loss(TrainConfig(loss="hp_my_loss:broken")).train(LOGITS, LABELS)
    assert str(caught.value) == (
        "loss `hp_my_loss:broken` raised ValueError: no targets like these (at hp_my_loss.py:5, "
        "in broken); fix: correct the code there (rerun with --debug for the whole traceback)")


def test_probabilities_are_told_from_logits():
    assert looks_like_probabilities(torch.softmax(LOGITS, dim=1))
    assert not looks_like_probabilities(LOGITS)
    assert not looks_like_probabilities(F.log_softmax(LOGITS, dim=1))
    assert not looks_like_probabilities(torch.sigmoid(torch.zeros(4, 1)))  # one output: bce


def test_an_unknown_loss_name_is_refused():
    with pytest.raises(ConfigError) as caught:
        coerce_value("loss", "hinge", "--set loss=hinge")
    assert str(caught.value) == (
        "--set loss=hinge: `loss` must be one of cross_entropy, nll, bce, mse, l1 or an import "
        "path package.module:name, got 'hinge'; fix: pick one of cross_entropy, nll, bce, mse, l1")
