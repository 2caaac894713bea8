"""Objective metrics: a name, its natural direction and how to read it off an epoch history.

A history is the list of per-epoch records the training loop returns (`train_loss`,
`train_acc`, `val_loss`, `val_acc`, `lr`, `epoch_time_s`). A metric reads the history up to
the current epoch, so the same function gives Optuna's intermediate value at every epoch and
the trial's final value at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

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


def _last(key: str) -> Callable[[History], float]:
    return lambda history: float(history[-1][key])


def _peak(key: str, pick: Callable) -> Callable[[History], float]:
    return lambda history: float(pick(record[key] for record in history))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("val_acc", "maximize", _last("val_acc"), "validation accuracy at the last epoch"),
        Metric("val_loss", "minimize", _last("val_loss"), "validation loss at the last epoch"),
        Metric("train_loss", "minimize", _last("train_loss"), "train loss at the last epoch"),
        Metric("train_acc", "maximize", _last("train_acc"), "train accuracy at the last epoch"),
        # PROTOCOL.md phase 3 criterion 1: the peak validation accuracy, not the last one [000].
        Metric("best_val_acc", "maximize", _peak("val_acc", max), "peak validation accuracy"),
        Metric("best_val_loss", "minimize", _peak("val_loss", min), "lowest validation loss"),
        # PROTOCOL.md phase 2 main criterion: the train loss that falls fastest over the first
        # 10-20 epochs [000], read as the mean train loss over the first 20 epochs run.
        Metric("train_loss_area", "minimize", criteria.train_loss_area,
               "mean train loss over the first 20 epochs (early train-loss area)"),
        Metric("final_plateau", "minimize", criteria.final_plateau,
               "mean train loss over the last 3 epochs"),
        # Phase 3 architecture tie-break: the lowest validation loss at the peak [000].
        Metric("val_loss_at_peak", "minimize", criteria.val_loss_at_peak,
               "validation loss at the peak-accuracy epoch"),
        # Phase 3 regularization criterion 1: less overfitting [000, 003].
        Metric("overfitting_gap", "minimize", criteria.overfitting_gap,
               "train minus validation accuracy at the peak epoch"),
        # BatchNorm criterion 1 and optimizer criterion 2: stability [000].
        Metric("stability", "minimize", lambda h: _finite_or_inf(criteria.stability(h)),
               "roughness of the validation-accuracy curve (lower is stabler)"),
        # BatchNorm criterion 2: convergence speed [000].
        Metric("convergence_epochs", "minimize",
               lambda h: _finite_or_inf(criteria.convergence_epochs(h)),
               "epochs to reach 95% of the peak validation accuracy"),
    )
}


def metric_value(name: str, history: History) -> float:
    """The value of metric `name` over `history` (which must not be empty)."""
    return METRICS[name].read(history)
