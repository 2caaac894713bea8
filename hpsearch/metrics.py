"""Objective metrics: a name, its natural direction and how to read it off an epoch history.

A history is the list of per-epoch records the training loop returns (`train_loss`,
`train_acc`, `val_loss`, `val_acc`, `lr`, `epoch_time_s`). A metric reads the history up to
the current epoch, so the same function gives Optuna's intermediate value at every epoch and
the trial's final value at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

History = Sequence[Mapping[str, float]]


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
        # 10-20 epochs [000], read as the mean train loss over the epochs run (area / epochs).
        Metric(
            "train_loss_area",
            "minimize",
            lambda history: sum(r["train_loss"] for r in history) / len(history),
            "mean train loss over the epochs run (early train-loss area)",
        ),
    )
}


def metric_value(name: str, history: History) -> float:
    """The value of metric `name` over `history` (which must not be empty)."""
    return METRICS[name].read(history)
