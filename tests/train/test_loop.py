"""The training loop: learning, reproducibility, divergence, hooks, augmentation, devices."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train import (
    DataSplits,
    Diverged,
    TensorSplit,
    evaluate,
    fit,
    load_data,
    resolve_device,
    train,
)
from hpsearch.train.augment import random_flip, random_translate
from hpsearch.train.loop import batch_bounds, data_loader

CPU = torch.device("cpu")
RECORD_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"}


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data(TrainConfig(), CPU)


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "epoch_time_s"} for record in history]


def test_digits_training_learns_well_above_chance(digits):
    history = train(TrainConfig(epochs=10, optimizer="adam", lr=1e-3), digits, CPU)
    assert [r["epoch"] for r in history] == list(range(1, 11))
    assert history[-1]["val_acc"] > 0.8  # chance: 0.1
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[0]["train_loss"] == pytest.approx(math.log(10), rel=0.15)  # about log(K) [004]


def test_records_hold_floats_and_fractions(digits):
    (record,) = train(TrainConfig(epochs=1), digits, CPU)
    assert set(record) == RECORD_KEYS and isinstance(record["epoch"], int)
    assert all(isinstance(record[k], float) for k in RECORD_KEYS - {"epoch"})
    assert 0 <= record["train_acc"] <= 1 and 0 <= record["val_acc"] <= 1 and record["epoch_time_s"] > 0


def test_record_lr_is_the_last_batch_rate(digits):
    config = TrainConfig(epochs=2, scheduler="step", step_size=1, gamma=0.5, lr=0.01)
    assert [r["lr"] for r in train(config, digits, CPU)] == pytest.approx([0.01, 0.005])


def test_same_seed_gives_the_same_history_on_cpu(digits):
    config = TrainConfig(epochs=3, dropout=0.1, augment="noise")
    assert without_times(train(config, digits, CPU)) == without_times(train(config, digits, CPU))
    other = train(TrainConfig(epochs=3, dropout=0.1, augment="noise", seed=1), digits, CPU)
    assert without_times(other) != without_times(train(config, digits, CPU))


def test_a_huge_sgd_learning_rate_diverges(digits):
    calls = []
    with pytest.raises(Diverged) as error:
        train(TrainConfig(optimizer="sgd", lr=1e3, epochs=5), digits, CPU, on_epoch=calls.append)
    assert error.value.epoch == len(error.value.history)
    assert not math.isfinite(error.value.history[-1]["train_loss"])
    assert len(calls) == error.value.epoch - 1  # no on_epoch for the diverged epoch


def test_on_epoch_sees_each_record_and_its_exceptions_propagate(digits):
    class Pruned(Exception):
        pass

    seen = []

    def on_epoch(record):
        seen.append(record)
        if record["epoch"] == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train(TrainConfig(epochs=5), digits, CPU, on_epoch=on_epoch)
    assert [r["epoch"] for r in seen] == [1, 2]


def test_l1_penalty_is_part_of_the_reported_train_loss(digits):
    # lr=0: the weights stay at their (seeded, identical) initial values, so only L1 differs.
    plain = train(TrainConfig(epochs=1, lr=0.0), digits, CPU)[0]
    penalised = train(TrainConfig(epochs=1, lr=0.0, l1=1e-3), digits, CPU)[0]
    assert penalised["train_loss"] > plain["train_loss"] + 1e-3
    assert penalised["val_loss"] == pytest.approx(plain["val_loss"])  # validation: plain CE


def test_fit_returns_the_trained_model(digits):
    model, history = fit(TrainConfig(epochs=2), digits, CPU)
    assert evaluate(model, digits.val, TrainConfig(), CPU) == pytest.approx(
        (history[-1]["val_loss"], history[-1]["val_acc"]), rel=1e-5)
    assert not model.training  # left in eval mode by the last evaluation


@pytest.mark.parametrize("augment", ["flip", "crop", "flip_crop"])
def test_image_augmentations_train(digits, augment):
    history = train(TrainConfig(epochs=2, augment=augment, grad_clip=1.0), digits, CPU)
    assert all(math.isfinite(r["train_loss"]) for r in history)


def test_image_augmentation_on_vectors_is_a_config_error():
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    data = DataSplits(TensorSplit(x, y), TensorSplit(x, y), None, 2, (4,))
    with pytest.raises(ConfigError, match="augment=flip needs image inputs"):
        train(TrainConfig(augment="flip"), data, CPU)


def test_flip_mirrors_whole_images_only():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2 * 1, 3, 4, 5).repeat(8, 1, 1, 1)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_translation_moves_each_image_by_at_most_two_pixels():
    x = torch.zeros(64, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0  # one lit pixel in the middle
    out = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # shifts differ per image


def test_batches_cover_every_sample_and_never_leave_one_alone():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]  # BatchNorm cannot train on one sample
    assert batch_bounds(1, 4) == [(0, 1)]


def test_batch_norm_trains_with_an_odd_sized_last_batch():
    x, y = torch.randn(11, 6), torch.arange(11) % 3
    data = DataSplits(TensorSplit(x, y), TensorSplit(x, y), None, 3, (6,))
    assert len(train(TrainConfig(epochs=1, batch_size=5, norm="batch"), data, CPU)) == 1


def test_dataset_splits_stream_through_a_data_loader(digits):
    as_dataset = DataSplits(
        TensorDataset(digits.train.x, digits.train.y), TensorDataset(digits.val.x, digits.val.y),
        None, digits.num_classes, digits.input_shape,
    )
    history = train(TrainConfig(epochs=5, augment="noise"), as_dataset, CPU)
    assert history[-1]["val_acc"] > 0.5


def test_evaluate_counts_every_sample():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] * 3000)  # several eval batches
    y = torch.tensor([0, 1, 1] * 3000)
    loss, acc = evaluate(model, TensorSplit(x, y), TrainConfig(), CPU)
    assert acc == pytest.approx(2 / 3)
    expected = (2 * math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 3
    assert loss == pytest.approx(expected, rel=1e-5)


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"^device `gpu0` is not a device; fix: use auto, cpu, cuda or cuda:N$"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as error:
        resolve_device("cuda")
    assert str(error.value) == "device `cuda`: CUDA is not available here; fix: use device=auto or device=cpu"


def test_a_dataset_split_streams_with_the_loading_settings():
    split = TensorDataset(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long))
    config = TrainConfig(num_workers=2, pin_memory=True, persistent_workers=True, batch_size=4)
    loader = data_loader(split, config, torch.device("cpu"), shuffle=None)
    assert (loader.num_workers, loader.persistent_workers, loader.batch_size) == (2, True, 4)
    assert loader.pin_memory is False  # pinning only helps copies to CUDA
    solo = data_loader(split, TrainConfig(persistent_workers=True), torch.device("cpu"), None)
    assert solo.persistent_workers is False  # needs workers


def test_loading_settings_do_not_change_a_studys_fixed_settings():
    fixed = TrainConfig(num_workers=4, pin_memory=True).fixed_settings()
    assert {"num_workers", "pin_memory", "persistent_workers"}.isdisjoint(fixed)
