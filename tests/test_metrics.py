"""Objective metrics over classification and loss-only (regression, user hook) histories."""

from __future__ import annotations

import math

import pytest

from hpsearch.errors import UsageError
from hpsearch.metrics import (
    METRICS,
    MetricMissing,
    accuracy_metrics,
    metric_value,
    reported,
    require_metric,
)

ACCURACY = {"val_acc", "train_acc", "best_val_acc"}


def record(epoch, train_loss, val_loss, **extra):
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": 0.1,
            "epoch_time_s": 1.0, **extra}


# lowest val loss 1.0 at epoch 2; there train 0.7: relative gap (1.0 - 0.7) / 1.0 = 0.3
LOSS_ONLY = [record(1, 4.0, 4.2), record(2, 0.7, 1.0), record(3, 0.6, 1.1)]
# a user hook: no accuracy measured (None), an extra key of its own
HOOK = [record(e, t, v, val_acc=None, val_mae=0.5) for e, t, v in ((1, 4.0, 4.2), (2, 0.7, 1.0),
                                                                  (3, 0.6, 1.1))]
CLASSIFICATION = [
    record(1, 2.0, 1.5, train_acc=0.5, val_acc=0.5),
    record(2, 1.0, 0.6, train_acc=0.9, val_acc=0.85),
    record(3, 0.8, 0.7, train_acc=0.95, val_acc=0.8),
]


@pytest.mark.parametrize("history", [LOSS_ONLY, HOOK], ids=["loss_only", "hook"])
@pytest.mark.parametrize(
    "name, expected",
    [
        ("val_acc", math.nan),
        ("train_acc", math.nan),
        ("best_val_acc", math.nan),
        ("val_loss", 1.1),
        ("train_loss", 0.6),
        ("best_val_loss", 1.0),
        ("train_loss_area", pytest.approx(5.3 / 3)),
        ("final_plateau", pytest.approx(5.3 / 3)),
        ("val_loss_at_peak", 1.0),  # the peak is the lowest val loss without accuracy
        ("overfitting_gap", pytest.approx(0.3)),
        ("stability", pytest.approx(3.3)),  # |4.2 - 2 * 1.0 + 1.1| on the val loss
        ("convergence_epochs", 2.0),
    ],
)
def test_metric_values_on_loss_only_histories(history, name, expected):
    value = metric_value(name, history)
    assert isinstance(value, float)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == expected


@pytest.mark.parametrize(
    "name, expected",
    [("val_acc", 0.8), ("train_acc", 0.95), ("best_val_acc", 0.85), ("val_loss", 0.7),
     ("best_val_loss", 0.6), ("val_loss_at_peak", 0.6), ("overfitting_gap", pytest.approx(0.05)),
     ("convergence_epochs", 2.0)],
)
def test_classification_metric_values_are_unchanged(name, expected):
    assert metric_value(name, CLASSIFICATION) == expected


def test_peak_metrics_skip_non_finite_epochs_wherever_they_are():
    # max/min over a NaN depend on its place in the list: only finite values count
    history = [record(1, 2.0, math.nan, val_acc=math.nan), record(2, 1.0, 0.6, val_acc=0.7)]
    assert metric_value("best_val_acc", history) == 0.7
    assert metric_value("best_val_loss", history) == 0.6
    assert math.isnan(metric_value("val_acc", [record(1, 2.0, 1.0, val_acc="n/a")]))


def test_metrics_of_an_empty_history_are_nan_or_inf_not_errors():
    for name in METRICS:
        value = metric_value(name, [])
        assert math.isnan(value) or value == math.inf, name


def test_needs_accuracy_marks_exactly_the_accuracy_metrics():
    assert accuracy_metrics() == ACCURACY
    assert {name for name, metric in METRICS.items() if metric.needs_accuracy} == ACCURACY


@pytest.mark.parametrize("name", sorted(set(METRICS) - ACCURACY))
def test_metrics_that_need_no_accuracy_are_finite_on_a_loss_only_history(name):
    assert math.isfinite(metric_value(name, LOSS_ONLY))
    assert reported(name, LOSS_ONLY)


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_is_reported_by_a_classification_history(name):
    assert reported(name, CLASSIFICATION)


def test_reported_tells_a_missing_key_from_a_genuine_nan():
    assert not reported("val_acc", LOSS_ONLY)
    assert not reported("val_acc", HOOK)  # None in every epoch: never measured
    diverged = [record(1, math.nan, math.nan, train_acc=math.nan, val_acc=math.nan)]
    assert reported("val_acc", diverged)
    assert math.isnan(require_metric("val_acc", diverged))
    assert not reported("val_loss", [])


def test_require_metric_names_the_metric_the_missing_key_and_the_keys_there_are():
    with pytest.raises(MetricMissing) as raised:
        require_metric("best_val_acc", HOOK)
    assert str(raised.value) == (
        "metric `best_val_acc` reads `val_acc`, which the history never reports (its records "
        "have: epoch, train_loss, val_loss, lr, epoch_time_s, val_mae); fix: pick a metric that "
        "needs no accuracy (regression tasks and hooks may report none), e.g. val_loss or "
        "best_val_loss"
    )
    # a KeyError for lookups, a UsageError for the CLI's one-line `error: ...`
    assert isinstance(raised.value, KeyError) and isinstance(raised.value, UsageError)


def test_require_metric_on_a_loss_metric_asks_for_the_key():
    history = [{"epoch": 1, "train_loss": 2.0}]
    with pytest.raises(MetricMissing, match=r"^metric `stability` reads `val_loss`, .*"
                       r"\(its records have: epoch, train_loss\); fix: report `val_loss` in "
                       r"the epoch records$"):
        require_metric("stability", history)
    assert require_metric("train_loss", history) == 2.0
    assert require_metric("best_val_loss", LOSS_ONLY) == 1.0
