"""Protocol criteria: pure functions over one trial's per-epoch history (PROTOCOL.md).

A history is the training loop's list of records, one per epoch, in order: ``{"epoch"
(1-based), "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"}``,
accuracies in 0..1. Regression tasks (MSE/L1 losses) and user training hooks report no
accuracy: their records lack ``train_acc``/``val_acc`` (or a hook reports None), and may carry
extra keys. Seeds are cited in brackets. Shared conventions:

- Nothing raises on NaN/inf (a diverged run) or a short history. Losses to minimise give
  ``inf`` when a value read is not finite (a diverged trial ranks last); undefined values
  (no finite val accuracy) give NaN or None.
- Shape tests (oscillates, underfits, plateaus_too_early, undertrained) need two epochs of
  finite train loss, else False: one point has no shape, and NaN is ``diverges``'s verdict.
- Relative changes of the train loss are taken against ``max(loss, noise_floor * initial
  loss)``: jitter of a loss converged near zero is large relative to itself but invisible on
  the curve a person reads; it is not saw-teeth, a rise or a descent.
- The protocol states its validation criteria in accuracy [000]. A history with a finite
  ``val_acc`` in any epoch is judged on accuracy, exactly as for classification; one without
  (`has_accuracy` False) on the validation loss instead: the peak is the lowest val loss (the
  model a checkpoint keeps), the gap, stability and convergence are read off the loss. A
  missing or None value is an epoch that did not report the key, never an error.
"""

from __future__ import annotations

import inspect
import math
from itertools import accumulate
from typing import Callable, Mapping, Sequence

History = Sequence[Mapping[str, float]]

_TINY = 1e-12  # guards divisions when a loss is exactly 0

# Train accuracy "much above" validation accuracy means overfitting [003]: 5 points.
OVERFIT_ACC_GAP = 0.05
# Without accuracy, the relative loss gap (val - train) / val that counts as overfitting. No
# source gives a loss threshold; this is hpsearch's choice: the train loss is averaged in train
# mode (dropout on, weights still moving) and the val loss in eval mode, so a few % of gap is
# noise, not overfitting, and must not send a run into the regularization phase [000, 003].
OVERFIT_LOSS_GAP = 0.2


def _series(history: History, key: str) -> list[float]:
    """The values of `key`, one per epoch, as floats (NaN where missing or unreadable)."""
    values = []
    for record in history:
        try:
            values.append(float(record.get(key, math.nan)))
        except (TypeError, ValueError):
            values.append(math.nan)
    return values


def _reported(history: History, key: str) -> list[float | None]:
    """Like `_series`, but None where an epoch did not report `key` (absent or None).

    Tells a user hook's "not measured this epoch" from a measured NaN (a diverged run).
    """
    return [None if record.get(key) is None else value
            for record, value in zip(history, _series(history, key))]


def _all_finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(value) for value in values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _scale(value: float, initial: float, noise_floor: float) -> float:
    """The denominator of a relative change: the value itself, never below the noise floor."""
    return max(abs(value), noise_floor * abs(initial), _TINY)


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope of `values` against 0, 1, 2, ... (value units per epoch)."""
    centre, level = (len(values) - 1) / 2, _mean(values)
    covariance = sum((x - centre) * (y - level) for x, y in enumerate(values))
    return covariance / sum((x - centre) ** 2 for x in range(len(values)))


def _shaped_losses(history: History) -> list[float] | None:
    """The train losses if they can carry a shape (>= 2 epochs, all finite), else None."""
    losses = _series(history, "train_loss")
    return losses if len(losses) >= 2 and _all_finite(losses) else None


def _require_epochs(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1 epoch, but got {name}={value}.")


def train_loss_area(history: History, first_k: int = 20) -> float:
    """Mean train loss over the first min(`first_k`, len) epochs; lower falls faster.

    The area under the early train-loss curve per epoch: phase 2's main criterion is the curve
    that "falls fastest over the first 10-20 epochs" [000], hence 20. Compare trials over the
    same epochs. ``inf`` if a value read is not finite.
    """
    _require_epochs("first_k", first_k)
    window = _series(history, "train_loss")[:first_k]
    return _mean(window) if window and _all_finite(window) else math.inf


def final_plateau(history: History, last: int = 3) -> float:
    """Mean train loss over the last `last` epochs (3: one noisy epoch does not decide); inf if NaN.

    Phase 2 wants a final plateau "within a few %" of the competitors' [000].
    """
    _require_epochs("last", last)
    window = _series(history, "train_loss")[-last:]
    return _mean(window) if window and _all_finite(window) else math.inf


def diverges(
    history: History,
    rise_tolerance: float = 0.0,  # the final loss may exceed the epoch-1 loss by this fraction
    trend_tolerance: float = 0.01,  # a rise of 1% of the tail's mean loss per epoch is real
    trend_fraction: float = 0.5,  # the tail: the last half of the curve (3 epochs at least)
    noise_floor: float = 0.01,  # see the module docstring
) -> bool:
    """Whether the train loss diverges: "diverges = LR too high" [000].

    True if a train loss is NaN/inf; or the final loss exceeds the epoch-1 loss by more than
    `rise_tolerance` of it; or the least-squares slope over the tail rises by more than
    `trend_tolerance` of the tail's mean per epoch (an overshoot not yet above the start).
    """
    losses = _series(history, "train_loss")
    if not losses:
        return False
    if not _all_finite(losses):
        return True
    if losses[-1] - losses[0] > rise_tolerance * abs(losses[0]):
        return True
    if len(losses) < 3:
        return False
    tail = losses[-max(3, math.ceil(len(losses) * trend_fraction)) :]
    return _slope(tail) > trend_tolerance * _scale(_mean(tail), losses[0], noise_floor)


def oscillates(
    history: History,
    tolerance: float = 0.05,  # a rise above 5% of the previous epoch's loss is a tooth
    max_rise_fraction: float = 0.2,  # teeth on more than 1 step in 5 make a saw
    min_rises: int = 2,  # one bump is not "dents de scie" (saw-teeth, plural) [000]
    noise_floor: float = 0.01,  # see the module docstring
) -> bool:
    """Whether the train loss has saw-teeth: "chaotic but converging = slightly too high" [000].

    A tooth is an epoch-to-epoch rise larger than `tolerance` relative to the previous loss.
    The curve oscillates with at least `min_rises` teeth that are also more than
    `max_rise_fraction` of its len - 1 steps.
    """
    losses = _shaped_losses(history)
    if losses is None:
        return False
    rises = sum(
        after - before > tolerance * _scale(before, losses[0], noise_floor)
        for before, after in zip(losses, losses[1:])
    )
    return rises >= min_rises and rises > max_rise_fraction * (len(losses) - 1)


def underfits(history: History, min_progress: float = 0.1) -> bool:
    """Whether the train loss made no progress: "falls too slowly ... = too low" [000].

    True when the final train loss is not below the epoch-1 loss by `min_progress` of it (10%:
    it barely moved). A slow but real fall is left to the area, which compares competitors.
    """
    losses = _shaped_losses(history)
    return losses is not None and losses[0] - losses[-1] < min_progress * abs(losses[0])


def _plateau_epoch(losses: Sequence[float], flat_tolerance: float, noise_floor: float) -> int:
    """First 1-based epoch after which the loss never falls more than `flat_tolerance` below it."""
    best_from = list(accumulate(reversed(losses), min))[::-1]
    for index, (loss, best) in enumerate(zip(losses, best_from)):
        if loss - best <= flat_tolerance * _scale(loss, losses[0], noise_floor):
            return index + 1
    return len(losses)  # unreachable: the last epoch always qualifies


def plateaus_too_early(
    history: History,
    flat_tolerance: float = 0.02,  # the rest of the run gains under 2% of the loss: flat
    early_fraction: float = 1 / 3,  # "too early": flat within the first third of the epochs
    max_train_acc: float = 0.9,  # a plateau at 90% train accuracy or more is convergence
    noise_floor: float = 0.01,  # see the module docstring
) -> bool:
    """Whether the train loss "plateaus too early = too low" [000], judged on one curve.

    The plateau epoch is the first after which the train loss never falls more than
    `flat_tolerance` (relative) below its value there. Too early: within the first
    `early_fraction` of the epochs, while the final train accuracy is below `max_train_acc`
    (the train set is not fit). Needs 3 epochs; a NaN final train accuracy gives False, and so
    does a history without accuracy: a loss has no scale that tells a fit train set from a
    stuck one, and an elimination needs evidence (`underfits` still catches a loss that barely
    moves).
    """
    losses = _shaped_losses(history)
    if losses is None or len(losses) < 3:
        return False
    if not _series(history, "train_acc")[-1] < max_train_acc:
        return False
    return _plateau_epoch(losses, flat_tolerance, noise_floor) <= early_fraction * len(losses)


def undertrained(
    history: History,
    steep: float = 0.02,  # 2% per epoch: about a third lower again after 20 more epochs
    last: int = 3,  # the epochs at the end over which the descent is averaged
    noise_floor: float = 0.01,  # see the module docstring
) -> bool:
    """Whether the train loss still falls steeply at the end: undertraining [000].

    True when the mean relative decrease per epoch over the last `last` epochs (fewer in a
    short history) is above `steep`: more epochs would still pay.
    """
    _require_epochs("last", last)
    losses = _shaped_losses(history)
    if losses is None:
        return False
    tail = losses[-(last + 1) :]
    drops = [(a - b) / _scale(a, losses[0], noise_floor) for a, b in zip(tail, tail[1:])]
    return _mean(drops) > steep


_LR_CHECKS: tuple[tuple[str, tuple[Callable[..., bool], ...]], ...] = (
    ("diverged", (diverges,)),
    ("oscillating", (oscillates,)),
    ("underfitting", (underfits, plateaus_too_early)),
    ("undertrained", (undertrained,)),
)


def _threshold_names(check: Callable[..., bool]) -> set[str]:
    return set(list(inspect.signature(check).parameters)[1:])


def lr_verdict(history: History, **thresholds: float) -> str | None:
    """Why an LR-phase trial is eliminated [000], or None for a sound curve.

    Checked in order: "diverged", "oscillating", "underfitting" (no progress, or a plateau too
    early), "undertrained"; the first that holds is the verdict. Overfitting is ignored in the
    LR phases [000]. Each threshold goes by name to every check that takes it (``noise_floor``
    to the four that have one, ``min_progress`` to `underfits`); an unknown name is an error.
    """
    known = set().union(*(_threshold_names(c) for _, checks in _LR_CHECKS for c in checks))
    unknown = sorted(set(thresholds) - known)
    if unknown:
        raise TypeError(f"lr_verdict() got unknown thresholds {unknown}; known: {sorted(known)}.")
    for verdict, checks in _LR_CHECKS:
        for check in checks:
            names = _threshold_names(check)
            if check(history, **{k: v for k, v in thresholds.items() if k in names}):
                return verdict
    return None


def has_accuracy(history: History) -> bool:
    """Whether any epoch has a finite val accuracy: validation is then judged on accuracy.

    False for regression tasks and hooks that report no accuracy; the validation criteria then
    fall back to the val loss (module docstring).
    """
    return any(math.isfinite(accuracy) for accuracy in _series(history, "val_acc"))


def _peak_index(history: History) -> int | None:
    """Index of the peak epoch (the first, on ties); None if there is none.

    The highest finite val accuracy if the history has one; else the lowest finite val loss,
    the model a checkpoint keeps when there is no accuracy to keep the best of.
    """
    if has_accuracy(history):
        values, better = _series(history, "val_acc"), lambda a, b: a > b
    else:
        values, better = _series(history, "val_loss"), lambda a, b: a < b
    best = None
    for index, value in enumerate(values):
        if math.isfinite(value) and (best is None or better(value, values[best])):
            best = index
    return best


def _at_peak(history: History, key: str) -> float:
    """`key` at the peak epoch: the whole validation split's value when the epochs validated
    on a subset (`full_val_acc`, `full_val_loss`: train/validation.py)."""
    index = _peak_index(history)
    if index is None:
        return math.nan
    full = history[index].get(f"full_{key}")
    return float(full) if isinstance(full, (int, float)) else _series(history, key)[index]


def _epoch_of(history: History, index: int) -> int:
    """The record's 1-based epoch number, or its position if it has no usable one."""
    try:
        return int(history[index].get("epoch", index + 1))
    except (TypeError, ValueError, OverflowError):
        return index + 1


def peak_val_acc(history: History) -> float:
    """The peak validation accuracy, phases 3-4 criterion 1 [000]; NaN if none is finite.

    NaN without accuracy (a regression task): the loss-based peak has no accuracy to report.
    """
    return _at_peak(history, "val_acc") if has_accuracy(history) else math.nan


def peak_epoch(history: History) -> int | None:
    """The 1-based epoch of the peak (the first, on ties); None if undefined.

    The peak val accuracy; without accuracy, the lowest val loss.
    """
    index = _peak_index(history)
    return None if index is None else _epoch_of(history, index)


def val_loss_at_peak(history: History) -> float:
    """The val loss at the peak epoch, phase 3 criterion 2 [000]; NaN if undefined.

    Without accuracy the peak is the lowest val loss, so this is that lowest val loss.
    """
    return _at_peak(history, "val_loss")


def overfitting_gap(history: History) -> float:
    """The generalization gap at the peak epoch, in accuracy units or relative; NaN if undefined.

    With accuracy: train_acc - val_acc (0..1), NaN if the peak epoch has no train accuracy.
    Without: the relative loss gap (val_loss - train_loss) / |val_loss|, unitless like an
    accuracy gap so that one threshold holds whatever the loss's scale (an MSE in m² or in
    mm²); the denominator is kept away from 0 by 1e-12.
    At the peak, because that is the model a checkpoint keeps and phase 3 compares; the final
    gap only grows with extra epochs. Well above 0 = overfitting, add regularization; below 0
    (train under validation) = underfitting, weaken it [003].
    """
    if gap_kind(history) == "accuracy":
        return _at_peak(history, "train_acc") - _at_peak(history, "val_acc")
    val_loss, train_loss = _at_peak(history, "val_loss"), _at_peak(history, "train_loss")
    return (val_loss - train_loss) / max(abs(val_loss), _TINY)


def gap_kind(history: History) -> str:
    """`accuracy` when the peak epoch has both accuracies, else `loss`: a run that logs a
    validation accuracy but no train accuracy (a LightningModule, a hook) still has a gap."""
    both = all(math.isfinite(_at_peak(history, key)) for key in ("train_acc", "val_acc"))
    return "accuracy" if both else "loss"


def overfits(history: History, gap: float | None = None) -> bool:
    """Whether train is "much above" validation at the peak [003]: regularization comes in [000].

    The gap must exceed `gap`; by default `OVERFIT_ACC_GAP` (5 accuracy points [003]) with
    accuracy, `OVERFIT_LOSS_GAP` (a relative loss gap of 20%, hpsearch's choice) without. An
    undefined gap gives False.
    """
    if gap is None:
        gap = OVERFIT_ACC_GAP if gap_kind(history) == "accuracy" else OVERFIT_LOSS_GAP
    return overfitting_gap(history) > gap


def stability(history: History, key: str | None = None, skip: int = 3) -> float:
    """Roughness of a curve, lower is stabler: mean |second difference| after `skip` epochs.

    Phases 3-4 break ties on curve stability [000]. The second difference ``v[t+1] - 2 v[t] +
    v[t-1]`` ignores a steady trend and measures the zig-zag, in the key's units per epoch²:
    accuracy (0..1) for val_acc, the loss's own units for val_loss. `key` defaults to val_acc
    when the history has accuracy, else val_loss. The first epochs, the fast rise from chance,
    bend by learning, not noise: they are skipped (fewer in a short history). Only triples of
    consecutive epochs that all report the key count (a hook may skip some epochs). NaN under
    3 epochs or with no such triple; inf if a reported value is not finite.
    """
    if key is None:
        key = "val_acc" if has_accuracy(history) else "val_loss"
    values = _reported(history, key)
    window = values[min(skip, max(0, len(values) - 3)) :]
    if len(window) < 3:
        return math.nan
    if not _all_finite([value for value in window if value is not None]):
        return math.inf
    bends = [
        abs(a - 2 * b + c)
        for a, b, c in zip(window, window[1:], window[2:])
        if a is not None and b is not None and c is not None
    ]
    return _mean(bends) if bends else math.nan


def convergence_epochs(history: History, fraction: float = 0.95) -> int | None:
    """The first epoch that has arrived at `fraction` of the way to the peak; None if undefined.

    Convergence speed, the BatchNorm criterion 2 [000]; 95% counts as arrived. With accuracy:
    the first val accuracy >= `fraction` * the peak. Without: the first val loss that has made
    `fraction` of its total fall, (first - loss) >= `fraction` * (first - lowest), with
    ``first`` the first finite val loss; that epoch itself if the loss never fell (the fall is
    0, nothing left to converge). The loss needs the fall, not a fraction of the minimum: a
    loss has no zero point to scale by (an MSE falls towards the noise level, not 0).
    """
    if has_accuracy(history):
        peak = peak_val_acc(history)
        values = _series(history, "val_acc")
        arrived = [value >= fraction * peak for value in values]
    else:
        values = _series(history, "val_loss")
        finite = [value for value in values if math.isfinite(value)]
        if not finite:
            return None
        first, lowest = finite[0], min(finite)
        arrived = [
            math.isfinite(value) and first - value >= fraction * (first - lowest)
            for value in values
        ]
    index = next((i for i, done in enumerate(arrived) if done), None)  # None: fraction above 1
    return None if index is None else _epoch_of(history, index)


def _none_if_not_finite(value: float | int | bool | str | None) -> float | int | bool | str | None:
    """None in place of NaN/inf: not every JSON backend stores them."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def all_criteria(history: History) -> dict[str, float | int | bool | str | None]:
    """Every criterion at default thresholds, JSON-ready (NaN/inf as None), for trial attributes."""
    values = {
        "epochs": len(history),
        "train_loss_area": train_loss_area(history),
        "final_plateau": final_plateau(history),
        "diverges": diverges(history),
        "oscillates": oscillates(history),
        "underfits": underfits(history),
        "plateaus_too_early": plateaus_too_early(history),
        "undertrained": undertrained(history),
        "lr_verdict": lr_verdict(history),
        "peak_val_acc": peak_val_acc(history),
        "peak_epoch": peak_epoch(history),
        "val_loss_at_peak": val_loss_at_peak(history),
        "overfitting_gap": overfitting_gap(history),
        "overfitting_gap_kind": gap_kind(history),
        "overfits": overfits(history),
        "stability": stability(history),
        "convergence_epochs": convergence_epochs(history),
    }
    return {name: _none_if_not_finite(value) for name, value in values.items()}
