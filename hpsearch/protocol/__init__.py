"""The tuning protocol as code: criteria over a trial's epoch history (PROTOCOL.md)."""

from hpsearch.protocol.criteria import (
    all_criteria,
    convergence_epochs,
    diverges,
    final_plateau,
    lr_verdict,
    oscillates,
    overfits,
    overfitting_gap,
    peak_epoch,
    peak_val_acc,
    plateaus_too_early,
    stability,
    train_loss_area,
    underfits,
    undertrained,
    val_loss_at_peak,
)

__all__ = [
    "all_criteria",
    "convergence_epochs",
    "diverges",
    "final_plateau",
    "lr_verdict",
    "oscillates",
    "overfits",
    "overfitting_gap",
    "peak_epoch",
    "peak_val_acc",
    "plateaus_too_early",
    "stability",
    "train_loss_area",
    "undertrained",
    "underfits",
    "val_loss_at_peak",
]
