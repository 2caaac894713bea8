"""TensorBoard logging of one run of hpsearch's loop: what to log [001], and no side effects."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.train import DataSplits, Diverged, TensorSplit, load_data, resolve_device
from hpsearch.train.loop import fit, train
from hpsearch.train.losses import build_loss
from hpsearch.train.models import build_model
from hpsearch.train.tensorboard import (
    MAX_SNAPSHOTS,
    RunLogger,
    mean_entropy,
    snapshot_epochs,
)

CPU = resolve_device("cpu")
SMALL = {"train_fraction": 0.1}  # ~140 digits: a 50-epoch run takes well under a second
EVERYTHING = 0  # size_guidance 0: keep every event, no sampling


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data(TrainConfig(**SMALL), CPU)


def read_events(folder) -> EventAccumulator:
    guidance = {"scalars": EVERYTHING, "histograms": EVERYTHING}
    return EventAccumulator(str(folder), size_guidance=guidance).Reload()


def steps(events: EventAccumulator, tag: str) -> list[int]:
    kind = events.Histograms if tag in events.Tags()["histograms"] else events.Scalars
    return [event.step for event in kind(tag)]


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "epoch_time_s"} for record in history]


def test_every_epoch_logs_losses_accuracies_and_learning_rate(digits, tmp_path):
    history = train(TrainConfig(epochs=3, **SMALL), digits, CPU, tensorboard=tmp_path / "run")
    events = read_events(tmp_path / "run")
    for tag, key in [("loss/train", "train_loss"), ("loss/val", "val_loss"),
                     ("accuracy/train", "train_acc"), ("accuracy/val", "val_acc"), ("lr", "lr")]:
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([r[key] for r in history], rel=1e-6)


def test_snapshot_epochs_are_at_most_twenty_spread_from_first_to_last():
    assert snapshot_epochs(7) == set(range(1, 8))
    for epochs in (21, 50, 1000):
        planned = sorted(snapshot_epochs(epochs))
        assert len(planned) == MAX_SNAPSHOTS == 20 and planned[0] == 1 and planned[-1] == epochs
        gaps = [b - a for a, b in zip(planned, planned[1:])]
        assert max(gaps) - min(gaps) <= 1  # evenly spread


def test_a_50_epoch_run_keeps_at_most_20_snapshots_with_first_and_last(digits, tmp_path):
    train(TrainConfig(epochs=50, **SMALL), digits, CPU, tensorboard=tmp_path)
    events = read_events(tmp_path)
    snapshots = steps(events, "weights/1.weight")
    assert len(snapshots) <= 20 and snapshots[0] == 1 and snapshots[-1] == 50
    assert steps(events, "entropy/model") == snapshots
    assert len(steps(events, "loss/train")) == 50


def test_a_run_stopped_early_snapshots_the_last_epoch_reached(digits, tmp_path):
    class Pruned(Exception):
        pass

    def prune_at_7(record):
        if record["epoch"] == 7:
            raise Pruned

    with pytest.raises(Pruned):
        train(TrainConfig(epochs=50, **SMALL), digits, CPU, prune_at_7, tensorboard=tmp_path)
    snapshots = steps(read_events(tmp_path), "weights/1.weight")
    assert snapshots[0] == 1 and snapshots[-1] == 7  # 7 is not a planned epoch of 50
    assert set(snapshots) - {7} <= snapshot_epochs(50)


def test_weights_of_every_layer_and_input_gradients_of_every_linear(digits, tmp_path):
    config = TrainConfig(epochs=1, depth=2, norm="batch", **SMALL)
    model, _ = fit(config, digits, CPU, tensorboard=tmp_path)
    histograms = set(read_events(tmp_path).Tags()["histograms"])
    assert {f"weights/{name}" for name, _ in model.named_parameters()} <= histograms
    assert any(name.startswith("weights/") and ".running" not in name for name in histograms)
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3  # the first layer's input is the probe batch itself
    assert {name for name in histograms if name.startswith("input_grad/")} == {
        f"input_grad/{name}" for name in linears}


def test_input_gradients_are_the_loss_gradient_at_each_linear_input(tmp_path):
    layer = torch.nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    logger = RunLogger(tmp_path, layer, TensorSplit(x, y), build_loss(TrainConfig()), 1, CPU)
    logger.log_epoch({"epoch": 1, "train_loss": 1.0})
    logger.close()
    (logged,) = read_events(tmp_path).Histograms("input_grad/model")
    probe = x.clone().requires_grad_()
    torch.nn.functional.cross_entropy(layer(probe), y).backward()
    assert logged.histogram_value.num == probe.numel()
    assert logged.histogram_value.sum == pytest.approx(float(probe.grad.sum()), abs=1e-6)


def test_random_model_entropy_is_about_log_of_the_classes(digits, tmp_path):
    train(TrainConfig(epochs=5, optimizer="adam", lr=1e-2, **SMALL), digits, CPU,
          tensorboard=tmp_path)
    events = read_events(tmp_path)
    random_model = [e.value for e in events.Scalars("entropy/random_model")]
    assert random_model[0] == pytest.approx(math.log(10), rel=0.05)
    assert len(set(random_model)) == 1  # computed once, logged next to each snapshot
    trained = events.Scalars("entropy/model")
    assert trained[-1].value < trained[0].value < math.log(10) + 1e-6  # learning: more confident


def test_training_is_identical_with_and_without_logging(tmp_path):
    data = load_data(TrainConfig(**SMALL), CPU)
    config = TrainConfig(epochs=4, dropout=0.2, norm="batch", augment="noise", **SMALL)
    plain_model, plain = fit(config, data, CPU)
    logged_model, logged = fit(config, data, CPU, tensorboard=tmp_path)
    assert without_times(logged) == without_times(plain)
    for (name, a), b in zip(plain_model.state_dict().items(), logged_model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(plain_model.parameters(), logged_model.parameters()):
        assert torch.equal(a.grad, b.grad)  # the last step's gradients, not the probe's


def test_a_snapshot_leaves_modes_gradients_and_random_state_alone(digits, tmp_path):
    config = TrainConfig(dropout=0.5, norm="batch")
    model = build_model(config, digits.input_shape, digits.num_classes)
    model[4].eval()  # the dropout in eval mode, the rest (BatchNorm...) in train: both kept
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    logger = RunLogger(tmp_path, model, digits.train, build_loss(config), 1, CPU)
    logger.snapshot(1)
    logger.close()
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model[2].running_mean, torch.zeros_like(model[2].running_mean))  # eval


def test_a_model_drawing_random_numbers_in_eval_mode_leaves_the_random_state_alone(tmp_path):
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + 1e-3 * torch.rand_like(x)

    model = torch.nn.Sequential(Noisy(), torch.nn.Linear(3, 2))
    x, y = torch.randn(8, 3), torch.arange(8) % 2
    logger = RunLogger(tmp_path, model, TensorSplit(x, y), build_loss(TrainConfig()), 1, CPU)
    rng = torch.get_rng_state()
    logger.snapshot(1)
    logger.close()
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_diverged_run_still_raises_diverged_and_logs_up_to_it(digits, tmp_path):
    config = TrainConfig(optimizer="sgd", lr=1e3, epochs=5, **SMALL)
    with pytest.raises(Diverged) as error:
        train(config, digits, CPU, tensorboard=tmp_path)  # NaN weights: histograms skip them
    events = read_events(tmp_path)
    assert steps(events, "loss/train") == list(range(1, error.value.epoch + 1))


def test_the_random_model_is_a_fresh_initialisation_not_the_trained_model(digits, tmp_path):
    config = TrainConfig(epochs=10, optimizer="adam", lr=1e-2, **SMALL)
    model, _ = fit(config, digits, CPU)
    logger = RunLogger(tmp_path, model, digits.train, build_loss(config), 1, CPU)
    logger.close()
    assert logger.random_entropy == pytest.approx(math.log(10), rel=0.05)
    trained = mean_entropy(model(digits.train.x[:256]), digits.train.y[:256])
    assert trained < 0.7 * math.log(10)


def test_a_regression_run_logs_losses_but_no_accuracy_or_entropy(tmp_path):
    x = torch.randn(40, 3)
    y = x.sum(dim=1)
    data = DataSplits(TensorSplit(x, y), TensorSplit(x, y), None, 1, (3,))
    train(TrainConfig(epochs=2, loss="mse", depth=1, width=8), data, CPU, tensorboard=tmp_path)
    tags = read_events(tmp_path).Tags()
    assert {"loss/train", "loss/val", "lr"} <= set(tags["scalars"])
    assert not [t for t in tags["scalars"] if t.startswith(("accuracy/", "entropy/"))]
    assert "input_grad/1" in tags["histograms"]


def test_dataset_splits_are_probed_too(digits, tmp_path):
    as_dataset = DataSplits(
        TensorDataset(digits.train.x, digits.train.y), TensorDataset(digits.val.x, digits.val.y),
        None, digits.num_classes, digits.input_shape,
    )
    train(TrainConfig(epochs=1, **SMALL), as_dataset, CPU, tensorboard=tmp_path)
    assert "entropy/model" in read_events(tmp_path).Tags()["scalars"]


def test_without_the_option_nothing_is_imported_or_written(tmp_path):
    script = (
        "import sys, torch\n"
        "from hpsearch.config import TrainConfig\n"
        "from hpsearch.train import load_data, train\n"
        "config = TrainConfig(epochs=1, train_fraction=0.1)\n"
        "train(config, load_data(config, torch.device('cpu')), torch.device('cpu'))\n"
        "print(sorted(m for m in sys.modules if 'tensorboard' in m))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    assert not any(tmp_path.iterdir())  # no default `runs/` folder either
