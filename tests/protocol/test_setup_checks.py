"""Setup checks (PROTOCOL.md phase 1): digits passes all; each kind of broken data fails one."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.protocol.setup_checks import (
    CheckResult,
    check_disjoint,
    check_initial_loss,
    check_labels,
    check_normalisation,
    check_overfit_one_batch,
    failed,
    format_results,
    run_setup_checks,
)
from hpsearch.train import DataSplits, TensorSplit, load_data, registry

CPU = torch.device("cpu")
DIGITS = TrainConfig()
CUSTOM = TrainConfig(dataset="toy")  # not built in: no index split to check


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_data(DIGITS, CPU)


@pytest.fixture
def models(monkeypatch):
    """An empty model registry for the test: `models("name")(factory)` registers one."""
    monkeypatch.setattr(registry, "_REGISTRY", {"model": {}, "dataset": {}})
    return registry.model


def replaced(data: DataSplits, **splits) -> DataSplits:
    """`data` with some splits swapped (train=..., val=..., test=...)."""
    parts = {"train": data.train, "val": data.val, "test": data.test, **splits}
    return DataSplits(**parts, num_classes=data.num_classes, input_shape=data.input_shape)


def relabelled(split: TensorSplit, fn) -> TensorSplit:
    return TensorSplit(split.x, fn(split.y.clone()))


# --- the whole suite ---------------------------------------------------------------------------


def test_digits_passes_every_check(digits):
    results = run_setup_checks(DIGITS, digits, CPU)
    assert [r.name for r in results] == [
        "labels", "disjoint", "normalisation", "initial_loss", "overfit_one_batch"
    ]
    assert failed(results) == []
    by_name = {r.name: r for r in results}
    assert by_name["labels"].detail == (
        "labels lie in [0, 10) in every split and each of the 10 classes appears in the "
        "training split (the rarest 124 times)"
    )
    assert by_name["disjoint"].detail == (
        "training and validation indices into the 1438 official training samples are disjoint "
        "(1294 and 144); 0.0% of validation and 0.0% of test samples repeat a training sample "
        "exactly (limit 1.0%: real data sets hold a few genuine duplicates)"
    )
    assert by_name["normalisation"].detail.startswith("training mean -0.00, std 1.00 (1 channel)")
    assert by_name["initial_loss"].value == pytest.approx(math.log(10), rel=0.05)
    assert "ln(10) = 2.303" in by_name["initial_loss"].detail
    assert by_name["overfit_one_batch"].value == 1.0
    assert by_name["overfit_one_batch"].detail.startswith(
        "a batch of 32 training samples (10 classes), adam at lr 0.001: accuracy 100.0% "
        "(target 100%) after "
    )


def test_format_results_marks_each_line_and_failed_keeps_order():
    results = [
        CheckResult("labels", True, "fine", 3.0),
        CheckResult("disjoint", False, "leaks", 1.0),
        CheckResult("normalisation", False, "raw pixels", 127.5),
    ]
    assert format_results(results) == [
        "✓ labels: fine", "✗ disjoint: leaks", "✗ normalisation: raw pixels"
    ]
    assert [r.name for r in failed(results)] == ["disjoint", "normalisation"]


def test_checks_leave_the_callers_random_state_alone(digits):
    before = torch.get_rng_state()
    check_initial_loss(DIGITS, digits, CPU)
    check_overfit_one_batch(DIGITS, digits, CPU, steps=10)
    assert torch.equal(torch.get_rng_state(), before)


# --- labels ------------------------------------------------------------------------------------


def test_a_label_out_of_range_fails(digits):
    def one_ten(y):
        y[0] = 10
        return y

    result = check_labels(replaced(digits, val=relabelled(digits.val, one_ten)))
    assert not result.passed and result.value is None
    assert result.detail == (
        "1 validation label(s) lie outside [0, 10) (min 0, max 10); fix: map the labels to "
        "integers 0..9 (or set num_classes to the real number of classes)"
    )


def test_float_labels_fail(digits):
    result = check_labels(replaced(digits, test=TensorSplit(digits.test.x, digits.test.y.float())))
    assert not result.passed
    assert result.detail.startswith(
        "test labels are torch.float32 of shape (359,), not one integer per sample; fix:"
    )


def test_a_class_missing_from_training_fails(digits):
    train = relabelled(digits.train, lambda y: y.masked_fill(y == 3, 4))
    result = check_labels(replaced(digits, train=train))
    assert not result.passed and result.value == 0.0
    assert result.detail.startswith(
        "1 of 10 classes never appear in the training split (3), which usually means a broken "
        "split or label mapping; fix:"
    )


def test_labels_of_a_plain_dataset_are_not_checked(digits):
    train = TensorDataset(digits.train.x)  # no labels at hand without reading every sample
    result = check_labels(replaced(digits, train=train))
    assert result.passed and result.value is None
    assert result.detail == (
        "training labels not checked: the training split is a Dataset without `targets`"
    )


# --- disjoint ----------------------------------------------------------------------------------


def test_validation_that_repeats_training_fails_with_share_one(digits):
    result = check_disjoint(replaced(digits, val=digits.train), CUSTOM)
    assert not result.passed and result.value == 1.0
    assert result.detail == (
        "100.0% of validation and 0.0% of test samples repeat a training sample exactly "
        "(limit 1.0%: real data sets hold a few genuine duplicates); fix: build validation and "
        "test from samples not used for training, and drop exact duplicates"
    )


def test_a_few_genuine_duplicates_pass(digits):
    x = digits.val.x.clone()
    x[0] = digits.train.x[5]  # 1 of 144 validation samples: 0.7%, under the 1% limit
    result = check_disjoint(replaced(digits, val=TensorSplit(x, digits.val.y)), CUSTOM)
    assert result.passed and result.value == pytest.approx(1 / 144)
    assert result.detail.startswith("0.7% of validation and 0.0% of test samples repeat")


def test_only_exact_repeats_count_and_negative_zero_equals_zero():
    x = torch.zeros(4, 3)
    near = TensorSplit(torch.nextafter(x, torch.ones(())), torch.zeros(4, dtype=torch.long))
    signed = TensorSplit(-x, torch.zeros(4, dtype=torch.long))
    data = DataSplits(TensorSplit(x, torch.zeros(4, dtype=torch.long)), near, signed, 1, (3,))
    result = check_disjoint(data, CUSTOM)
    assert result.detail.startswith("0.0% of validation and 100.0% of test samples")


def test_a_builtin_split_of_another_config_is_noted_not_failed(digits):
    result = check_disjoint(digits, TrainConfig(val_fraction=0.5))
    assert result.passed
    assert result.detail.startswith(
        "index split not checked: the data hold 1294 training and 144 validation samples, "
        "not the 719 and 719 this config carves; 0.0% of validation"
    )


def test_dataset_splits_skip_the_duplicate_check(digits):
    train = TensorDataset(digits.train.x, digits.train.y)
    result = check_disjoint(replaced(digits, train=train), CUSTOM)
    assert result.passed and result.value is None
    assert result.detail == (
        "exact duplicates not checked: the training split is a Dataset (hashing it would read "
        "every sample)"
    )


# --- normalisation -----------------------------------------------------------------------------


def raw_pixels(n: int) -> TensorSplit:
    """Half the pixels 0, half 255: mean 127.5 and std 127.5 exactly."""
    x = torch.tensor([0.0, 255.0]).repeat(n * 2).reshape(n, 1, 2, 2)
    return TensorSplit(x, torch.arange(n) % 2)


def test_raw_pixels_fail_normalisation():
    data = DataSplits(raw_pixels(8), raw_pixels(4), None, 2, (1, 2, 2))
    result = check_normalisation(data)
    assert not result.passed and result.value == 127.5
    assert result.detail == (
        "training mean 127.50, std 127.50 (1 channel); validation mean 127.50, std 127.50 "
        "(1 channel); every value finite; want |mean| <= 0.1 and std in [0.5, 2], all finite; "
        "fix: subtract the training split's per-channel mean and divide by its std, in every split"
    )


def test_a_non_finite_validation_value_fails(digits):
    x = digits.val.x.clone()
    x[3, 0, 2, 2] = math.nan
    result = check_normalisation(replaced(digits, val=TensorSplit(x, digits.val.y)))
    assert not result.passed
    assert "; 1 non-finite values in validation; want |mean|" in result.detail


def test_each_image_channel_is_judged_on_its_own():
    x = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x[:, 2] = x[:, 2] * 10 + 5  # the third channel left raw
    data = DataSplits(TensorSplit(x, torch.arange(64) % 2), TensorSplit(x, torch.arange(64) % 2),
                      None, 2, (3, 4, 4))
    result = check_normalisation(data)
    assert not result.passed and result.value == pytest.approx(5, abs=0.3)
    channels = r"training mean -?0\.\d\d\.\.[45]\.\d\d, std 0\.\d\d\.\.\d+\.\d\d \(3 channels\)"
    assert re.match(channels, result.detail)


def test_standardised_features_with_a_constant_one_pass():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    x = (x - x.mean(0)) / x.std(0, unbiased=False)
    x[:, 0] = 0.0  # a feature constant in training, standardised to 0
    split = TensorSplit(x, torch.arange(200) % 2)
    result = check_normalisation(DataSplits(split, split, None, 2, (6,)))
    assert result.passed
    assert result.detail.startswith("training mean 0.00, std 0.91 (1 channel)")


def test_dataset_splits_normalise_themselves(digits):
    result = check_normalisation(replaced(digits, train=TensorDataset(digits.train.x)))
    assert result.passed and result.value is None
    assert result.detail == (
        "not checked: the training split is a Dataset, which normalises its samples itself"
    )


# --- initial loss ------------------------------------------------------------------------------


def test_a_huge_output_bias_fails_the_initial_loss(digits, models):
    @models("hot")
    def hot(config, input_shape, num_classes):
        net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        with torch.no_grad():
            net[1].bias[0] = 50.0  # every sample predicted class 0 with certainty
        return net

    result = check_initial_loss(TrainConfig(model="hot"), digits, CPU)
    assert not result.passed and result.value > 40
    assert re.fullmatch(
        r"untrained validation cross-entropy \d+\.\d{3} vs ln\(10\) = 2\.303 \(allowed ±25%\) "
        r"over 144 samples; fix: look for an output layer with a large scale or bias, or "
        r"outputs that are not logits \(softmax already applied\), or mismatched labels",
        result.detail,
    )


def test_a_nan_initial_loss_fails_and_stores_as_strict_json(digits, models):
    class NanLogits(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 10), math.nan)

    models("nan")(lambda config, input_shape, num_classes: NanLogits())
    result = check_initial_loss(TrainConfig(model="nan"), digits, CPU)
    assert not result.passed and result.value is None
    assert result.detail.startswith("untrained validation cross-entropy nan vs ln(10) = 2.303")
    json.dumps(dataclasses.asdict(result), allow_nan=False)


def test_initial_loss_is_not_run_on_out_of_range_labels(digits):
    val = relabelled(digits.val, lambda y: y + 5)
    result = check_initial_loss(DIGITS, replaced(digits, val=val), CPU)
    assert not result.passed and result.value is None
    outside = int((val.y >= 10).sum())
    assert result.detail == (
        f"not run: {outside} validation label(s) lie outside [0, 10) (min 5, max 14); "
        f"fix the labels first"
    )


# --- overfit one batch -------------------------------------------------------------------------


class ConstantLogits(nn.Module):
    """Outputs a learned bias whatever the input: it cannot fit a batch with mixed labels."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        return self.bias.expand(len(x), -1)


def test_a_model_that_ignores_its_input_cannot_overfit_one_batch(digits, models):
    models("constant")(lambda config, input_shape, num_classes: ConstantLogits(num_classes))
    config = TrainConfig(model="constant")
    initial = check_initial_loss(config, digits, CPU)
    assert initial.passed and initial.value == pytest.approx(math.log(10))  # zero bias: ln K

    result = check_overfit_one_batch(config, digits, CPU)
    assert not result.passed and result.value <= 0.25  # the commonest class of the batch
    assert re.fullmatch(
        r"a batch of 32 training samples \(10 classes\), adam at lr 0\.001: accuracy only "
        r"\d+\.\d% \(target 100%\) after 300 steps, loss \d\.\d+; a model that cannot "
        r"memorise one batch has a bug in the data, model or loss wiring \[004\]; fix: .*",
        result.detail,
    )


def test_the_batch_is_drawn_at_random_not_the_first_samples():
    # Training data sorted by class: the first 32 samples are all class 0, which a constant
    # output would fit; a random draw holds both classes.
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    y = (torch.arange(200) >= 100).long()
    split = TensorSplit(x, y)
    result = check_overfit_one_batch(TrainConfig(), DataSplits(split, split, None, 2, (4,)), CPU)
    assert result.detail.startswith("a batch of 32 training samples (2 classes)")


def test_overfit_uses_at_most_the_configured_batch_size(digits):
    result = check_overfit_one_batch(TrainConfig(batch_size=8), digits, CPU)
    assert result.passed and result.detail.startswith("a batch of 8 training samples")


# --- other losses and trainers -------------------------------------------------------------


def _regression_data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    return DataSplits(TensorSplit(x[:300], y[:300]), TensorSplit(x[300:], y[300:]), None, 1, (4,))


def test_a_regression_task_checks_what_applies_and_memorises_on_the_loss():
    config = TrainConfig(dataset="toy", loss="mse", depth=1, width=32)
    results = {r.name: r for r in run_setup_checks(config, _regression_data(), CPU)}
    assert results["labels"].detail == "not checked: loss `mse` takes no class labels"
    assert results["initial_loss"].detail.startswith("not checked: no expected initial value")
    memorised = results["overfit_one_batch"]
    assert memorised.passed and "(target 5% of the start)" in memorised.detail
    assert all(r.passed for r in results.values())


def test_nll_expects_ln_k_of_log_probabilities(digits, models):
    @registry.model("log_softmax_linear")
    def build(config, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes), nn.LogSoftmax(dim=1))

    result = check_initial_loss(TrainConfig(model="log_softmax_linear", loss="nll"), digits, CPU)
    assert result.passed and result.detail.startswith("untrained validation NLL ")


def test_a_fit_hook_run_skips_the_model_checks(digits):
    results = run_setup_checks(TrainConfig(fit="pkg.mod:fit"), digits, CPU)
    assert [r.passed for r in results] == [True] * 5
    assert results[3].detail == "not checked: the fit hook trains the model itself"
