"""Criteria over synthetic epoch histories: one curve per diagnosis of PROTOCOL.md phase 2."""

from __future__ import annotations

import json
import math

import pytest

from hpsearch.protocol import (
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
from hpsearch.protocol.chain import Inheritance, precondition_failure
from hpsearch.records import PhaseChoice

EPOCHS = 40
ELIMINATORY = (diverges, oscillates, underfits, plateaus_too_early, undertrained)


def curve(train_loss, train_acc=None, val_acc=None, val_loss=None):
    """A history from the given per-epoch series; missing series are filled with constants."""
    n = len(train_loss)
    train_acc = train_acc or [0.95] * n
    val_acc = val_acc or [0.9] * n
    val_loss = val_loss or [0.5] * n
    return [
        {
            "epoch": i + 1,
            "train_loss": train_loss[i],
            "train_acc": train_acc[i],
            "val_loss": val_loss[i],
            "val_acc": val_acc[i],
            "lr": 0.1,
            "epoch_time_s": 1.0,
        }
        for i in range(n)
    ]


def decay(start=2.3, floor=0.1, tau=4.0, epochs=EPOCHS):
    """floor + (start - floor) * exp(-(epoch - 1) / tau): a loss falling to a plateau."""
    return [floor + (start - floor) * math.exp(-e / tau) for e in range(epochs)]


def rise(start=0.1, top=0.99, tau=4.0, epochs=EPOCHS):
    """An accuracy rising from `start` to `top`."""
    return [top - (top - start) * math.exp(-e / tau) for e in range(epochs)]


GOOD = curve(decay(), train_acc=rise(), val_acc=rise(top=0.97))
NAN = curve([2.3, 1.5, math.nan, math.nan], val_acc=[0.3, 0.5, math.nan, math.nan])
ABOVE_INITIAL = curve([2.3, 1.5, 2.0, 3.0, 5.0])
# falls, then climbs back: final still under epoch 1, but the last half rises
OVERSHOOT = curve([2.3, 1.0, 0.5, 0.4, 0.5, 0.7, 0.9, 1.2])
# decaying loss with alternating +-15% teeth: chaotic but converging
SAW_TOOTH = curve([v * (1.15 if e % 2 else 0.85) for e, v in enumerate(decay(tau=6, floor=0.3))])
NO_PROGRESS = curve([2.30 - 0.01 * e for e in range(EPOCHS // 2)] + [2.10] * (EPOCHS // 2))
EARLY_PLATEAU = curve([2.3, 1.9, 1.6, 1.5] + [1.5] * (EPOCHS - 4), train_acc=[0.5] * EPOCHS)
STILL_FALLING = curve(decay(tau=10, floor=0.0, epochs=20))


def test_good_curve_is_sound_and_flagged_by_no_eliminatory_criterion():
    assert lr_verdict(GOOD) is None
    assert [check.__name__ for check in ELIMINATORY if check(GOOD)] == []


@pytest.mark.parametrize(
    "history, verdict",
    [
        (NAN, "diverged"),
        (ABOVE_INITIAL, "diverged"),
        (OVERSHOOT, "diverged"),
        (SAW_TOOTH, "oscillating"),
        (NO_PROGRESS, "underfitting"),
        (EARLY_PLATEAU, "underfitting"),
        (STILL_FALLING, "undertrained"),
    ],
    ids=["nan", "above_initial", "overshoot", "saw_tooth", "no_progress", "early_plateau", "falling"],
)
def test_lr_verdict_names_the_reason_for_elimination(history, verdict):
    assert lr_verdict(history) == verdict


def test_diverges_on_nan_inf_rise_and_rising_trend():
    assert diverges(NAN)
    assert diverges(curve([2.3, math.inf]))
    assert diverges(ABOVE_INITIAL)
    assert diverges(OVERSHOOT)
    assert not diverges(SAW_TOOTH)


def test_diverges_rise_tolerance_allows_a_final_loss_slightly_above_the_initial():
    history = curve([2.0, 2.1])
    assert diverges(history)
    assert not diverges(history, rise_tolerance=0.1)


def test_oscillates_counts_teeth_not_a_single_bump():
    assert oscillates(SAW_TOOTH)
    one_bump = curve([2.0, 1.5, 1.2, 1.4, 1.0, 0.9, 0.8, 0.7, 0.65, 0.6])
    assert not oscillates(one_bump)
    assert oscillates(one_bump, min_rises=1, max_rise_fraction=0.1)


def test_oscillates_ignores_jitter_of_a_loss_converged_near_zero():
    jitter = [2.3, 0.5, 0.05] + [0.001 * (1.5 if e % 2 else 1.0) for e in range(20)]
    assert not oscillates(curve(jitter))
    assert oscillates(curve(jitter), noise_floor=0.0)


def test_underfits_when_the_loss_barely_moves():
    assert underfits(NO_PROGRESS)
    assert not underfits(EARLY_PLATEAU)  # it fell 35%: a plateau, not a standstill
    assert not underfits(NO_PROGRESS, min_progress=0.05)


def test_plateaus_too_early_only_while_the_train_set_is_not_fit():
    assert plateaus_too_early(EARLY_PLATEAU)
    fitted = curve([2.3, 1.9, 1.6, 1.5] + [1.5] * (EPOCHS - 4), train_acc=[0.95] * EPOCHS)
    assert not plateaus_too_early(fitted)
    assert not plateaus_too_early(STILL_FALLING)


def test_undertrained_when_still_falling_steeply_at_the_end():
    assert undertrained(STILL_FALLING)  # exp(-1/10): 9.5% lower every epoch
    assert not undertrained(STILL_FALLING, steep=0.1)
    assert not undertrained(GOOD)


def test_train_loss_area_is_smaller_for_a_faster_fall():
    fast, slow = curve(decay(tau=2)), curve(decay(tau=8))
    assert train_loss_area(fast) < train_loss_area(slow)


def test_train_loss_area_is_the_mean_of_the_first_k_epochs():
    history = curve([4.0, 2.0, 1.0, 1.0, 100.0])
    assert train_loss_area(history, first_k=4) == 2.0
    assert train_loss_area(history[:2]) == 3.0
    assert train_loss_area(NAN) == math.inf


def test_final_plateau_is_the_mean_of_the_last_epochs():
    assert final_plateau(curve([9.0, 3.0, 2.0, 1.0])) == 2.0
    assert final_plateau(curve([9.0, 3.0, 2.0, 1.0]), last=2) == 1.5
    assert final_plateau(NAN) == math.inf


def test_window_of_zero_epochs_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match=r"^`last` must be at least 1 epoch, but got last=0\.$"):
        final_plateau(GOOD, last=0)


def test_peak_is_the_first_highest_val_accuracy_and_its_epoch_and_val_loss():
    history = curve(
        [2.0, 1.0, 0.8, 0.7, 0.6],
        train_acc=[0.5, 0.7, 0.9, 0.95, 0.99],
        val_acc=[0.5, 0.81, 0.85, 0.85, 0.8],
        val_loss=[1.5, 0.9, 0.6, 0.55, 0.7],
    )
    assert peak_val_acc(history) == 0.85
    assert peak_epoch(history) == 3
    assert val_loss_at_peak(history) == 0.6
    assert overfitting_gap(history) == pytest.approx(0.05)
    assert convergence_epochs(history) == 2  # 0.81 >= 0.95 * 0.85 = 0.8075


def test_overfits_when_train_accuracy_is_well_above_validation_at_the_peak():
    history = curve([1.0, 0.5], train_acc=[0.9, 1.0], val_acc=[0.6, 0.8])
    assert overfitting_gap(history) == pytest.approx(0.2)
    assert overfits(history)
    assert not overfits(history, gap=0.25)
    underfit = curve([1.0, 0.5], train_acc=[0.6, 0.7], val_acc=[0.7, 0.8])
    assert overfitting_gap(underfit) == pytest.approx(-0.1)
    assert not overfits(underfit)


def test_stability_is_rougher_for_a_noisy_validation_curve():
    smooth = rise()
    noisy = [acc + (0.02 if e % 2 else -0.02) for e, acc in enumerate(smooth)]
    assert stability(curve(decay(), val_acc=noisy)) > stability(curve(decay(), val_acc=smooth))


def test_stability_is_the_mean_absolute_second_difference_after_skipped_epochs():
    val_acc = [0.1, 0.5, 0.7, 0.8, 0.9, 0.8, 0.9]
    history = curve([1.0] * 7, val_acc=val_acc)
    # after 3 epochs: 0.8, 0.9, 0.8, 0.9 -> second differences -0.2, +0.2
    assert stability(history) == pytest.approx(0.2)
    assert stability(curve([1.0, 1.0, 1.0], val_acc=[0.1, 0.2, 0.3])) == pytest.approx(0.0)
    assert math.isnan(stability(curve([1.0, 1.0])))


def test_convergence_epochs_is_the_first_epoch_at_95_percent_of_the_peak():
    history = curve([1.0] * 5, val_acc=[0.2, 0.5, 0.9, 0.96, 1.0])
    assert convergence_epochs(history) == 4
    assert convergence_epochs(history, fraction=0.5) == 2


def test_all_criteria_is_json_ready_on_a_diverged_run():
    criteria = all_criteria(NAN)
    json.dumps(criteria, allow_nan=False)
    assert criteria["diverges"] is True
    assert criteria["lr_verdict"] == "diverged"
    assert criteria["train_loss_area"] is None
    assert criteria["peak_epoch"] == 2


def test_all_criteria_of_a_good_run():
    criteria = all_criteria(GOOD)
    json.dumps(criteria, allow_nan=False)
    assert criteria["epochs"] == EPOCHS
    assert criteria["lr_verdict"] is None
    assert criteria["peak_epoch"] == EPOCHS
    assert criteria["overfits"] is False


@pytest.mark.parametrize(
    "history",
    [[], curve([2.3]), curve([math.nan], val_acc=[math.nan]), curve([2.3, 2.0])],
    ids=["empty", "one_epoch", "one_nan_epoch", "two_epochs"],
)
def test_short_histories_do_not_raise(history):
    criteria = all_criteria(history)
    json.dumps(criteria, allow_nan=False)
    assert criteria["oscillates"] is False
    assert criteria["plateaus_too_early"] is False


def test_one_finite_epoch_has_no_shape_to_eliminate():
    history = curve([2.3])
    assert lr_verdict(history) is None
    assert train_loss_area(history) == 2.3
    assert peak_epoch(history) == 1


def test_lr_verdict_passes_thresholds_by_name_and_rejects_unknown_ones():
    assert lr_verdict(NO_PROGRESS, min_progress=0.05) is None
    assert lr_verdict(STILL_FALLING, steep=0.1) is None
    with pytest.raises(TypeError, match=r"unknown thresholds \['gap'\]"):
        lr_verdict(GOOD, gap=0.05)


# Loss-only histories: regression tasks (MSE/L1) and user hooks report no accuracy keys.


def loss_curve(train_loss, val_loss, **extra):
    """A loss-only history, as a regression task records it; `extra` adds per-epoch series."""
    return [
        {
            "epoch": i + 1,
            "train_loss": train_loss[i],
            "val_loss": val_loss[i],
            "lr": 0.1,
            "epoch_time_s": 1.0,
            **{key: values[i] for key, values in extra.items()},
        }
        for i in range(len(train_loss))
    ]


# lowest val loss 1.0 at epoch 4; there train 0.7: relative gap (1.0 - 0.7) / 1.0 = 0.3
REGRESSION = loss_curve([4.0, 2.0, 1.0, 0.7, 0.6], [4.2, 2.5, 1.2, 1.0, 1.1])
# a hook's extra key and val_acc None in every epoch are the same as no accuracy
HOOK = loss_curve([4.0, 2.0, 1.0, 0.7, 0.6], [4.2, 2.5, 1.2, 1.0, 1.1],
                  val_mae=[1.9, 1.4, 0.9, 0.8, 0.85], val_acc=[None] * 5, train_acc=[None] * 5)
NO_FALL = loss_curve([1.0, 0.9, 0.8], [1.0, 1.2, 1.5])  # the val loss never fell
NOT_OVERFIT = loss_curve([4.0, 2.0, 1.1], [4.2, 2.5, 1.2])  # gap (1.2 - 1.1) / 1.2 = 0.083


@pytest.mark.parametrize("history", [REGRESSION, HOOK], ids=["loss_only", "hook"])
@pytest.mark.parametrize(
    "criterion, expected",
    [
        (peak_epoch, 4),
        (val_loss_at_peak, 1.0),
        (overfitting_gap, pytest.approx(0.3)),
        (overfits, True),
        # window after 3 skipped epochs (2 in 5 epochs): 1.2, 1.0, 1.1 -> |1.2 - 2 + 1.1|
        (stability, pytest.approx(0.3)),
        # fall 4.2 -> 1.0 = 3.2; 95% of it: val loss <= 1.16, first at epoch 4 (1.2 is 94%)
        (convergence_epochs, 4),
        (train_loss_area, pytest.approx(1.66)),
        (lr_verdict, "undertrained"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_loss_only_criteria_fall_back_to_the_val_loss(history, criterion, expected):
    assert criterion(history) == expected


def test_loss_only_peak_val_acc_stays_nan():
    assert math.isnan(peak_val_acc(REGRESSION))
    assert math.isnan(peak_val_acc(HOOK))


@pytest.mark.parametrize(
    "criterion, expected",
    [
        (peak_epoch, 1),
        (convergence_epochs, 1),  # nothing fell, nothing left to converge
        (overfitting_gap, pytest.approx(0.0)),  # (1.0 - 1.0) / 1.0 at epoch 1
        (overfits, False),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_loss_only_criteria_when_the_val_loss_never_fell(criterion, expected):
    assert criterion(NO_FALL) == expected


def test_loss_only_overfits_above_the_relative_loss_threshold_only():
    assert overfitting_gap(NOT_OVERFIT) == pytest.approx(0.1 / 1.2)
    assert not overfits(NOT_OVERFIT)  # 8% is train/eval-mode noise, not overfitting
    assert overfits(NOT_OVERFIT, gap=0.05)
    assert not overfits(REGRESSION, gap=0.35)


def test_loss_only_gap_survives_a_val_loss_of_zero():
    assert overfitting_gap(loss_curve([0.0], [0.0])) == 0.0
    assert overfitting_gap(loss_curve([1e-3], [0.0])) < 0  # train above val: no overfitting
    assert not overfits(loss_curve([1e-3], [0.0]))


def test_loss_only_convergence_is_the_first_epoch_past_the_fraction_of_the_fall():
    assert convergence_epochs(REGRESSION, fraction=0.5) == 2  # 4.2 - 2.5 = 1.7 >= 1.6
    assert convergence_epochs(REGRESSION, fraction=1.0) == 4
    # the fall is measured from the first finite val loss
    history = loss_curve([2.0, 1.0, 0.5], [None, 3.0, 1.0])
    assert convergence_epochs(history) == 3


def test_loss_only_stability_is_rougher_for_a_noisy_val_loss():
    smooth = decay(start=3.0, floor=1.0)
    noisy = [loss * (1.05 if e % 2 else 0.95) for e, loss in enumerate(smooth)]
    assert stability(loss_curve(decay(), noisy)) > stability(loss_curve(decay(), smooth))
    assert stability(REGRESSION, key="train_loss") == pytest.approx(0.2)  # 1.0, 0.7, 0.6


def test_loss_only_plateau_is_not_judged_without_a_train_accuracy():
    # a loss has no scale that tells a fit train set from a stuck one: no elimination
    history = loss_curve([2.3, 1.9, 1.6, 1.5] + [1.5] * (EPOCHS - 4), [1.6] * EPOCHS)
    assert not plateaus_too_early(history)
    assert not underfits(history)  # it fell 35%


@pytest.mark.parametrize(
    "history",
    [
        REGRESSION,
        HOOK,
        [],
        loss_curve([2.3], [2.4]),
        loss_curve([math.nan, math.nan], [math.nan, math.nan]),
        loss_curve([2.3, 1.0, 0.5], [None, None, None]),
        [{"epoch": 1}, {"epoch": 2, "train_loss": None}],
    ],
    ids=["loss_only", "hook", "empty", "one_epoch", "all_nan", "no_val_loss", "no_losses"],
)
def test_loss_only_all_criteria_keeps_its_keys_and_does_not_raise(history):
    criteria = all_criteria(history)
    json.dumps(criteria, allow_nan=False)
    assert list(criteria) == list(all_criteria(GOOD))
    assert criteria["peak_val_acc"] is None


def test_loss_only_all_criteria_without_any_val_loss_is_undefined():
    criteria = all_criteria(loss_curve([2.3, 1.0, 0.5], [None, None, None]))
    assert criteria["peak_epoch"] is None
    assert criteria["val_loss_at_peak"] is None
    assert criteria["overfitting_gap"] is None and criteria["overfits"] is False
    assert criteria["stability"] is None and criteria["convergence_epochs"] is None


# Mixed: a hook that measures accuracy only in some epochs (val_acc None in the others).
MIXED = curve(
    [2.0, 1.0, 0.8, 0.7, 0.6],
    train_acc=[0.5, 0.7, None, 0.9, 0.95],
    val_acc=[None, 0.6, None, 0.8, 0.7],
    val_loss=[1.5, 0.9, 0.4, 0.55, 0.7],  # lowest at epoch 3: ignored, there is an accuracy
)


@pytest.mark.parametrize(
    "criterion, expected",
    [
        (peak_val_acc, 0.8),
        (peak_epoch, 4),
        (val_loss_at_peak, 0.55),
        (overfitting_gap, pytest.approx(0.1)),
        (overfits, True),
        (convergence_epochs, 4),  # 0.95 * 0.8 = 0.76
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_mixed_history_is_judged_on_the_epochs_that_report_accuracy(criterion, expected):
    assert criterion(MIXED) == expected


def test_without_a_train_accuracy_at_the_peak_the_gap_is_the_loss_gap():
    # A LightningModule that logs val_acc but no train accuracy: its losses still tell.
    history = curve([1.0, 0.3], train_acc=[0.9, None], val_acc=[0.6, 0.8], val_loss=[1.0, 0.5])
    assert overfitting_gap(history) == pytest.approx((0.5 - 0.3) / 0.5)
    assert overfits(history)  # 0.4 > the relative loss threshold 0.2
    criteria = all_criteria(history)
    assert criteria["overfitting_gap_kind"] == "loss" and criteria["peak_val_acc"] == 0.8


def test_mixed_history_stability_uses_only_fully_reported_triples():
    # after 3 epochs: 0.8, 0.9, 0.8, None, 0.8, 0.9, 0.8 -> two full triples, 0.2 each
    val_acc = [0.1, 0.5, 0.7, 0.8, 0.9, 0.8, None, 0.8, 0.9, 0.8]
    assert stability(curve([1.0] * 10, val_acc=val_acc)) == pytest.approx(0.2)
    assert math.isnan(stability(MIXED))  # epochs 3-5: None, 0.8, 0.7, no full triple
    # a reported NaN is a diverged value, not a skipped epoch
    diverged = curve([1.0] * 6, val_acc=[0.1, 0.5, 0.7, 0.8, None, math.nan])
    assert stability(diverged) == math.inf


def test_all_criteria_of_a_mixed_history_is_json_ready():
    criteria = all_criteria(MIXED)
    json.dumps(criteria, allow_nan=False)
    assert criteria["peak_epoch"] == 4 and criteria["overfits"] is True


# Classification results unchanged: values of all_criteria before loss-only histories existed.
PEAK_HISTORY = curve(
    [2.0, 1.0, 0.8, 0.7, 0.6],
    train_acc=[0.5, 0.7, 0.9, 0.95, 0.99],
    val_acc=[0.5, 0.81, 0.85, 0.85, 0.8],
    val_loss=[1.5, 0.9, 0.6, 0.55, 0.7],  # lowest at epoch 4: ignored, the peak is accuracy's
)


@pytest.mark.parametrize(
    "history, expected",
    [
        (GOOD, {"peak_val_acc": 0.9699492836425542, "peak_epoch": 40, "val_loss_at_peak": 0.5,
                "overfitting_gap": 0.019998834106725316, "overfits": False,
                "stability": 0.0025968394951706155, "convergence_epochs": 13}),
        (PEAK_HISTORY, {"peak_val_acc": 0.85, "peak_epoch": 3, "val_loss_at_peak": 0.6,
                        "overfitting_gap": 0.05, "overfits": True, "stability": 0.05,
                        "convergence_epochs": 2}),
        (NAN, {"peak_val_acc": 0.5, "peak_epoch": 2, "val_loss_at_peak": 0.5,
               "overfitting_gap": 0.45, "overfits": True, "stability": None,
               "convergence_epochs": 2}),
    ],
    ids=["good", "peak", "nan"],
)
def test_classification_criteria_are_unchanged(history, expected):
    criteria = all_criteria(history)
    assert {key: criteria[key] for key in expected} == pytest.approx(expected)


def test_precondition_overfits_follows_the_trial_verdict_and_names_its_threshold():
    def inherited(history):
        # the criteria a phase stores with its choice, as `trial_criteria` writes them
        choice = PhaseChoice(trial=0, criteria=all_criteria(history))
        return Inheritance(sources=[{"study": "parent"}], choices={"parent": choice})

    assert precondition_failure("overfits", inherited(REGRESSION)) is None
    assert precondition_failure("overfits", inherited(NOT_OVERFIT)) == (
        "the inherited choice does not overfit (relative val-train loss gap 0.083 <= 0.2); "
        "regularization applies only when overfitting [003]"
    )
    assert precondition_failure("overfits", inherited(PEAK_HISTORY)) is None
    assert precondition_failure("overfits", inherited(GOOD)) == (
        "the inherited choice does not overfit (train-val accuracy gap 0.020 <= 0.05); "
        "regularization applies only when overfitting [003]"
    )
    no_train_metrics = [{"epoch": 1, "val_loss": 1.0, "val_acc": 0.5}]
    assert precondition_failure("overfits", inherited(no_train_metrics)) == (
        "the inherited choice's overfitting gap is unknown (its runs report no train loss or "
        "accuracy at the peak); regularization applies only when overfitting [003]"
    )
