"""Selection with tolerances: a table of pools, criteria and the expected choice."""

from __future__ import annotations

import math

import pytest

from hpsearch.protocol.selection import Candidate, Criterion, select, select_over_baseline

ACC = Criterion("best_val_acc", "maximize", 0.005)
LOSS = Criterion("val_loss_at_peak", "minimize")
STABILITY = Criterion("stability", "minimize", 0.001)
SPEED = Criterion("convergence_epochs", "minimize")


def pool(*rows):
    return [Candidate(trial, dict(values)) for trial, values in rows]


CASES = [
    # id, candidates, criteria, expected trial
    ("clear winner", pool((0, {"best_val_acc": 0.95, "val_loss_at_peak": 0.2}),
                          (1, {"best_val_acc": 0.97, "val_loss_at_peak": 0.3})), [ACC, LOSS], 1),
    ("tie within tolerance: loss decides", pool(
        (0, {"best_val_acc": 0.970, "val_loss_at_peak": 0.30}),
        (1, {"best_val_acc": 0.966, "val_loss_at_peak": 0.20}),
        (2, {"best_val_acc": 0.960, "val_loss_at_peak": 0.10})), [ACC, LOSS], 1),
    ("just outside tolerance is not a tie", pool(
        (0, {"best_val_acc": 0.970, "val_loss_at_peak": 0.30}),
        (1, {"best_val_acc": 0.9649, "val_loss_at_peak": 0.10})), [ACC, LOSS], 0),
    ("exact tie on everything: lowest trial number", pool(
        (3, {"best_val_acc": 0.9, "val_loss_at_peak": 0.2}),
        (2, {"best_val_acc": 0.9, "val_loss_at_peak": 0.2})), [ACC, LOSS], 2),
    ("missing and NaN values rank last", pool(
        (0, {"best_val_acc": math.nan}), (1, {}), (2, {"best_val_acc": 0.5})), [ACC], 2),
    ("three criteria: stability, then speed, then accuracy (batchnorm)", pool(
        (0, {"stability": 0.0100, "convergence_epochs": 9, "best_val_acc": 0.97}),
        (1, {"stability": 0.0105, "convergence_epochs": 5, "best_val_acc": 0.96}),
        (2, {"stability": 0.0300, "convergence_epochs": 2, "best_val_acc": 0.99})),
     [STABILITY, SPEED, Criterion("best_val_acc", "maximize")], 1),
    ("remaining tie after all criteria goes to the main one", pool(
        (0, {"best_val_acc": 0.968, "val_loss_at_peak": 0.2}),
        (1, {"best_val_acc": 0.970, "val_loss_at_peak": 0.2})), [ACC, LOSS], 1),
]


@pytest.mark.parametrize("candidates, criteria, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_selection_table(candidates, criteria, expected):
    assert select(candidates, criteria).trial == expected


def test_choice_explains_itself_and_lists_runners_up():
    candidates = CASES[1][1]
    choice = select(candidates, [ACC, LOSS])
    assert choice.steps == [
        "best_val_acc: best 0.97; 2 of 3 trials within 0.005",
        "val_loss_at_peak: best 0.2; 1 of 2 trials within 0",
    ]
    assert choice.reason.startswith("trial 1 (best_val_acc 0.966, val_loss_at_peak 0.2) after: ")
    assert [r["trial"] for r in choice.runners_up] == [0, 2]
    assert choice.runners_up[0] == {"trial": 0, "best_val_acc": 0.970, "val_loss_at_peak": 0.30}


GAP = Criterion("overfitting_gap", "minimize", 0.01)


def test_technique_that_gains_too_little_keeps_the_baseline():
    candidates = [Candidate(0, {"best_val_acc": 0.960}, baseline=True),
                  Candidate(1, {"best_val_acc": 0.962})]
    choice = select_over_baseline(candidates, [ACC], keep_tolerance=0.005)
    assert choice.trial == 0 and choice.kept_baseline
    assert choice.reason == ("baseline kept (trial 0): the best technique, trial 1, gains 0.002 "
                             "on best_val_acc, not more than the tolerance 0.005")
    assert [r["trial"] for r in choice.runners_up] == [1]
    assert choice.why == ("no technique improves the best_val_acc by more than 0.005 over the "
                          "baseline (trial 0): the best technique, trial 1, moves it by +0.002; "
                          "the baseline is kept")


def test_technique_that_beats_the_baseline_is_kept():
    candidates = [Candidate(0, {"best_val_acc": 0.950}, baseline=True),
                  Candidate(1, {"best_val_acc": 0.970})]
    choice = select_over_baseline(candidates, [ACC], keep_tolerance=0.005)
    assert choice.trial == 1 and not choice.kept_baseline
    assert choice.reason.endswith("; beats the baseline (trial 0) by 0.02")


def test_a_tie_breaker_ranks_only_the_techniques_that_gain():
    """Fashion-MNIST's regularization phase: the smallest gap among every trial within 0.5
    points was a dropout that gained nothing, which threw out the ones that did."""
    candidates = [Candidate(0, {"best_val_acc": 0.8458, "overfitting_gap": 0.120}, baseline=True),
                  Candidate(2, {"best_val_acc": 0.8494, "overfitting_gap": 0.083}),
                  Candidate(7, {"best_val_acc": 0.8481, "overfitting_gap": 0.054}),
                  Candidate(11, {"best_val_acc": 0.8455, "overfitting_gap": 0.040})]
    assert select(candidates, [ACC, GAP]).trial == 11  # the old rule's pick: gains nothing
    peak = Criterion("best_val_acc", "maximize", 0.005, "peak validation accuracy", accuracy=True)
    choice = select_over_baseline(candidates, [peak, GAP], keep_tolerance=0.002)
    assert choice.trial == 7 and not choice.kept_baseline
    assert choice.steps[0] == ("2 of 3 completed techniques beat the baseline (trial 0) by more "
                               "than 0.002 on best_val_acc")
    assert choice.why.startswith("2 of 3 completed techniques improve the peak validation "
                                 "accuracy of the baseline (trial 0) by more than 0.2 points; ")
    assert choice.why.endswith("it beats the baseline by +0.23 points")
    assert [r["trial"] for r in choice.runners_up] == [2, 0, 11]  # every other trial


def test_the_baseline_can_still_win_the_tie_breakers_against_techniques_that_gain():
    candidates = [Candidate(0, {"best_val_acc": 0.960, "overfitting_gap": 0.01}, baseline=True),
                  Candidate(1, {"best_val_acc": 0.964, "overfitting_gap": 0.09})]
    choice = select_over_baseline(candidates, [ACC, GAP], keep_tolerance=0.002)
    assert choice.trial == 0 and choice.kept_baseline
    assert choice.reason.startswith("baseline kept: trial 0")
    assert choice.why.endswith("the baseline is kept")


def test_without_a_baseline_trial_the_plain_selection_decides():
    candidates = [Candidate(1, {"best_val_acc": 0.950}), Candidate(2, {"best_val_acc": 0.970})]
    choice = select_over_baseline(candidates, [ACC], keep_tolerance=0.005)
    assert choice.trial == 2 and not choice.kept_baseline


def test_a_baseline_alone_is_kept_and_says_no_technique_completed():
    choice = select_over_baseline([Candidate(0, {"best_val_acc": 0.9}, baseline=True)], [ACC],
                                  keep_tolerance=0.002)
    assert choice.trial == 0 and choice.kept_baseline
    assert choice.reason == "baseline kept (trial 0): no technique completed"


STABLE = Criterion("stability", "minimize", 0.002)


def test_a_technique_more_stable_but_less_accurate_keeps_the_baseline():
    """BatchNorm's third criterion, "validation accuracy kept or improved" [000], is a
    condition: Fashion-MNIST's BatchNorm was steadier and 0.45 points lower at its peak."""
    candidates = [Candidate(0, {"stability": 0.0118, "best_val_acc": 0.8481}, baseline=True),
                  Candidate(1, {"stability": 0.0092, "best_val_acc": 0.8436}),
                  Candidate(2, {"stability": 0.0131, "best_val_acc": 0.8457})]
    assert select_over_baseline(candidates, [STABLE, ACC], keep_tolerance=0.0).trial == 1
    choice = select_over_baseline(candidates, [STABLE, ACC], keep_tolerance=0.0,
                                  peak_kept_within=0.002)
    assert choice.trial == 0 and choice.kept_baseline
    assert choice.reason == ("baseline kept (trial 0): the best technique, trial 1, gains "
                             "0.0026 on stability but loses 0.0045 best_val_acc, more than the "
                             "0.002 it may")
    assert choice.why.startswith("the technique that improves the stability most, trial 1 "
                                 "(by +0.0026), loses 0.45 points of peak validation accuracy")


def test_a_technique_within_the_peak_bound_still_wins_on_its_main_criterion():
    candidates = [Candidate(0, {"stability": 0.0049, "best_val_acc": 0.9675}, baseline=True),
                  Candidate(1, {"stability": 0.0038, "best_val_acc": 0.9660}),
                  Candidate(2, {"stability": 0.0060, "best_val_acc": 0.9713})]
    choice = select_over_baseline(candidates, [STABLE, ACC], keep_tolerance=0.0,
                                  peak_kept_within=0.002)
    assert choice.trial == 1 and not choice.kept_baseline  # 0.15 points lower: kept
    assert choice.steps[0] == ("1 of 2 completed techniques beat the baseline (trial 0) by more "
                               "than 0 on "
                               "stability and keep their best_val_acc to within 0.002 of it")


def test_select_needs_candidates():
    with pytest.raises(ValueError):
        select([], [ACC])
