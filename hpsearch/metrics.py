"""Objective metrics: a name, its natural direction and how to read it off an epoch history.

A history is the list of per-epoch records the training loop returns (`train_loss`,
`train_acc`, `val_loss`, `val_acc`, `lr`, `epoch_time_s`). A metric reads the history up to
the current epoch, so the same function gives Optuna's intermediate value at every epoch and
the trial's final value at the end.

Regression tasks and user training hooks report no accuracy (no `train_acc`/`val_acc` keys,
or None). A metric never raises on that: it gives NaN, so pruning and reporting go on. The
accuracy metrics (`accuracy_metrics`) mean nothing there and an objective should refuse them;
the protocol criteria fall back to the loss (criteria.py). `reported` / `require_metric` tell
a history that never has the metric's keys from a genuine NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from hpsearch.errors import UsageError
from hpsearch.protocol import criteria

History = Sequence[Mapping[str, float]]


def _finite_or_inf(value: float | int | None) -> float:
    """Criteria that are undefined on a short curve (None, NaN) rank last when minimised."""
    return float("inf") if value is None or value != value else float(value)


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # "maximize" | "minimize"
    read: Callable[[History], float]
    description: str
    # The record keys it reads: none of them in the history means "not reported", not NaN.
    # Metrics that fall back to the loss without accuracy name the loss keys only.
    keys: tuple[str, ...] = ()
    # Undefined without accuracy (a regression task): an objective on it must be refused.
    needs_accuracy: bool = False


def _value(record: Mapping[str, float], key: str) -> float:
    """`record[key]` as a float; NaN when absent, None or not a number (never raises)."""
    try:
        return float(record.get(key, math.nan))
    except (TypeError, ValueError):
        return math.nan


def _last(key: str) -> Callable[[History], float]:
    return lambda history: _value(history[-1], key) if history else math.nan


def _peak(key: str, pick: Callable) -> Callable[[History], float]:
    """The best finite value of `key` (the best checkpoint); NaN if there is none.

    Only finite values count: max/min over a NaN depend on where it sits in the list.
    """

    def read(history: History) -> float:
        values = [v for v in (_value(record, key) for record in history) if math.isfinite(v)]
        return float(pick(values)) if values else math.nan

    return read


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("val_acc", "maximize", _last("val_acc"), "validation accuracy at the last epoch",
               keys=("val_acc",), needs_accuracy=True),
        Metric("val_loss", "minimize", _last("val_loss"), "validation loss at the last epoch",
               keys=("val_loss",)),
        Metric("train_loss", "minimize", _last("train_loss"), "train loss at the last epoch",
               keys=("train_loss",)),
        Metric("train_acc", "maximize", _last("train_acc"), "train accuracy at the last epoch",
               keys=("train_acc",), needs_accuracy=True),
        # PROTOCOL.md phase 3 criterion 1: the peak validation accuracy, not the last one [000].
        # With per-epoch validation on a subset, the peak epoch's whole-split accuracy.
        Metric("best_val_acc", "maximize", criteria.peak_val_acc, "peak validation accuracy",
               keys=("val_acc",), needs_accuracy=True),
        Metric("best_val_loss", "minimize", _peak("val_loss", min), "lowest validation loss",
               keys=("val_loss",)),
        # PROTOCOL.md phase 2 main criterion: the train loss that falls fastest over the first
        # 10-20 epochs [000], read as the mean train loss over the first 20 epochs run.
        Metric("train_loss_area", "minimize", criteria.train_loss_area,
               "mean train loss over the first 20 epochs (early train-loss area)",
               keys=("train_loss",)),
        Metric("final_plateau", "minimize", criteria.final_plateau,
               "mean train loss over the last 3 epochs", keys=("train_loss",)),
        # Phase 3 architecture tie-break: the lowest validation loss at the peak [000].
        Metric("val_loss_at_peak", "minimize", criteria.val_loss_at_peak,
               "validation loss at the peak-accuracy epoch (the lowest one without accuracy)",
               keys=("val_loss",)),
        # Phase 3 regularization criterion 1: less overfitting [000, 003].
        Metric("overfitting_gap", "minimize", criteria.overfitting_gap,
               "train minus validation accuracy at the peak epoch "
               "(relative val-train loss gap without accuracy)",
               keys=("train_loss", "val_loss")),
        # BatchNorm criterion 1 and optimizer criterion 2: stability [000].
        Metric("stability", "minimize", lambda h: _finite_or_inf(criteria.stability(h)),
               "roughness of the validation-accuracy curve (of the validation loss without "
               "accuracy; lower is stabler)", keys=("val_loss",)),
        # BatchNorm criterion 2: convergence speed [000].
        Metric("convergence_epochs", "minimize",
               lambda h: _finite_or_inf(criteria.convergence_epochs(h)),
               "epochs to reach 95% of the peak validation accuracy "
               "(95% of the validation loss's fall without accuracy)", keys=("val_loss",)),
    )
}


def accuracy_metrics() -> frozenset[str]:
    """The metric names that need accuracy: refuse them as an objective on a regression task."""
    return frozenset(name for name, metric in METRICS.items() if metric.needs_accuracy)


class MetricMissing(UsageError, KeyError):
    """The history never reports a key a metric reads (an accuracy metric on regression).

    A KeyError, for callers that look metrics up; a UsageError, because the fix is the
    study's choice of metric: the CLI shows it as one `error: ...` line.
    """

    __str__ = Exception.__str__  # KeyError's would quote the message


def _reported_keys(history: History) -> list[str]:
    """The keys some record of `history` carries with a value, in first-seen order."""
    keys: dict[str, None] = {}
    for record in history:
        keys.update((key, None) for key, value in record.items() if value is not None)
    return list(keys)


def reported(name: str, history: History) -> bool:
    """Whether `history` reports every key metric `name` reads, in at least one epoch each.

    A reported NaN (a diverged run) counts as reported; an absent or None key does not.
    """
    present = set(_reported_keys(history))
    return all(key in present for key in METRICS[name].keys)


def require_metric(name: str, history: History) -> float:
    """`metric_value(name, history)`, or MetricMissing if the history never reports its keys."""
    if not reported(name, history):
        metric = METRICS[name]
        has = _reported_keys(history)
        missing = ", ".join(f"`{key}`" for key in metric.keys if key not in has)
        fix = (
            "pick a metric that needs no accuracy (regression tasks and hooks may report "
            "none), e.g. val_loss or best_val_loss"
            if metric.needs_accuracy
            else f"report {missing} in the epoch records"
        )
        raise MetricMissing(
            f"metric `{name}` reads {missing}, which the history never reports "
            f"(its records have: {', '.join(has) or 'nothing'}); fix: {fix}"
        )
    return metric_value(name, history)


def metric_value(name: str, history: History) -> float:
    """The value of metric `name` over `history`: NaN when undefined or not reported.

    Never raises on a missing key (pruning reports it every epoch); `require_metric` does.
    """
    return METRICS[name].read(history)
