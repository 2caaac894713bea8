"""Per-epoch validation on a fixed stratified subset, the peak model on the whole split."""

from __future__ import annotations

import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.metrics import metric_value
from hpsearch.protocol import criteria
from hpsearch.train import TensorSplit, evaluate, fit, load_data
from hpsearch.train.validation import PeakKeeper, validation_subset

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return load_data(TrainConfig(), CPU)


def test_subset_keeps_each_class_share_and_is_the_same_every_time():
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    split = TensorSplit(torch.arange(1000.0).unsqueeze(1), labels)
    subset = validation_subset(split, 100)
    assert len(subset) == 100
    assert torch.bincount(subset.y).tolist() == [60, 30, 10]
    assert torch.equal(subset.x, validation_subset(split, 100).x)  # one subset for all trials
    assert torch.equal(subset.y, labels[subset.x.squeeze(1).long()])  # inputs keep their labels


def test_subset_shares_round_to_the_requested_size():
    split = TensorSplit(torch.zeros(10, 1), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2]))
    assert len(validation_subset(split, 5)) == 5
    assert sorted(torch.bincount(validation_subset(split, 5).y).tolist()) == [1, 2, 2]


def test_no_subset_when_it_would_not_be_smaller(digits):
    assert validation_subset(digits.val, 0) is digits.val
    assert validation_subset(digits.val, len(digits.val)) is digits.val


def test_epochs_validate_on_the_subset_and_the_peak_on_the_whole_split(digits):
    size = 90
    config = TrainConfig(epochs=4, val_subset=size)
    model, history = fit(config, digits, CPU)
    subset = validation_subset(digits.val, size)
    for record in history:  # accuracies on 90 images: multiples of 1/90
        assert record["val_acc"] * size == pytest.approx(round(record["val_acc"] * size))
    peaks = [r for r in history if "full_val_acc" in r]
    assert len(peaks) == 1
    assert peaks[0]["epoch"] == criteria.peak_epoch(history)
    assert peaks[0]["full_val_acc"] * len(digits.val) == pytest.approx(
        round(peaks[0]["full_val_acc"] * len(digits.val)))
    # The selection reads the whole split's value at the peak, not the subset's.
    assert metric_value("best_val_acc", history) == peaks[0]["full_val_acc"]
    assert criteria.val_loss_at_peak(history) == peaks[0]["full_val_loss"]
    # The model returned keeps its last weights.
    assert evaluate(model, subset, config, CPU)[1] == pytest.approx(history[-1]["val_acc"])


def test_whole_split_every_epoch_without_a_subset(digits):
    _, history = fit(TrainConfig(epochs=2, val_subset=0), digits, CPU)
    assert not any("full_val_acc" in r for r in history)


def test_negative_subset_is_refused(digits):
    with pytest.raises(ConfigError, match=r"^val_subset must be >= 0, got -1; fix: "):
        load_data(TrainConfig(val_subset=-1), CPU)


def _weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_the_peak_keeper_holds_the_peak_weights_while_the_model_trains_on():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    keeper = PeakKeeper(keep_weights=True)
    keeper.offer(model, 1, val_loss=1.0, val_acc=0.5)
    first_peak = _weights_of(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model(torch.randn(8, 4))  # train mode: the BatchNorm running statistics move too
    keeper.offer(model, 2, val_loss=0.9, val_acc=0.4)  # not a peak: the kept weights stay
    assert keeper.epoch == 1
    assert all(torch.equal(keeper.state[k], v) for k, v in first_peak.items())
    keeper.offer(model, 3, val_loss=0.8, val_acc=0.6)  # a new peak: its weights replace them
    second_peak = _weights_of(model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.0)  # the model moves on; the copy must not follow it
    assert keeper.epoch == 3
    assert all(torch.equal(keeper.state[k], v) for k, v in second_peak.items())
    assert not any(torch.equal(keeper.state[k], v) for k, v in first_peak.items()
                   if v.is_floating_point())


def test_the_peak_keeper_copies_anew_an_entry_whose_shape_or_type_changed():
    """The kept buffers are reused only where the layout matches: a buffer replaced by one of
    another shape or dtype, or a new entry in the state, is copied as it now is."""
    model = torch.nn.Linear(2, 2)
    model.register_buffer("counts", torch.zeros(1))
    keeper = PeakKeeper(keep_weights=True)
    keeper.offer(model, 1, val_loss=1.0, val_acc=0.5)
    model.counts = torch.arange(3)  # another shape and dtype under the same name
    keeper.offer(model, 2, val_loss=0.9, val_acc=0.6)
    assert torch.equal(keeper.state["counts"], torch.arange(3))
    model.counts.add_(10)  # the model's own tensor moves on; the copy must not follow it
    assert torch.equal(keeper.state["counts"], torch.arange(3))
    model.register_buffer("extra", torch.ones(2))  # a new entry: the state is copied whole
    keeper.offer(model, 3, val_loss=0.8, val_acc=0.7)
    assert set(keeper.state) == {"weight", "bias", "counts", "extra"}
    assert torch.equal(keeper.state["counts"], torch.arange(3) + 10)


def test_the_kept_weights_load_back_with_the_module_versions_they_were_saved_with():
    """The first copy is made tensor by tensor, not by `copy.deepcopy`: it must still carry
    the metadata `load_state_dict` reads (BatchNorm upgrades a state saved without its
    version), and restoring must hand back the model's own weights, not a view of them."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    keeper = PeakKeeper(keep_weights=True)
    keeper.offer(model, 1, val_loss=1.0, val_acc=0.5)
    assert keeper.state._metadata == model.state_dict()._metadata
    with torch.no_grad():
        model[0].weight.add_(1.0)
    moved = _weights_of(model)
    before = keeper.restore_into(model)
    assert torch.equal(model[0].weight, keeper.state["0.weight"])
    with torch.no_grad():
        model[0].weight.mul_(0.0)
    assert all(torch.equal(before[k], v) for k, v in moved.items())
    assert before._metadata == model.state_dict()._metadata
