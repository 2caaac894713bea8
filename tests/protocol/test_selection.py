"""Selection with tolerances: a table of pools, criteria and the expected choice."""

from __future__ import annotations

import math

import pytest

from hpsearch.protocol.selection import Candidate, Criterion, keep_or_baseline, select

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


def test_technique_that_gains_too_little_keeps_the_baseline():
    candidates = [Candidate(0, {"best_val_acc": 0.960}, baseline=True),
                  Candidate(1, {"best_val_acc": 0.962})]
    choice = keep_or_baseline(select(candidates, [ACC]), candidates, ACC, keep_tolerance=0.005)
    assert choice.trial == 0 and choice.kept_baseline
    assert choice.reason == ("baseline kept (trial 0): the best technique, trial 1, gains 0.002 "
                             "on best_val_acc, not more than the tolerance 0.005")


def test_technique_that_beats_the_baseline_is_kept():
    candidates = [Candidate(0, {"best_val_acc": 0.950}, baseline=True),
                  Candidate(1, {"best_val_acc": 0.970})]
    choice = keep_or_baseline(select(candidates, [ACC]), candidates, ACC, keep_tolerance=0.005)
    assert choice.trial == 1 and not choice.kept_baseline
    assert choice.reason.endswith("; beats the baseline (trial 0) by 0.02")


def test_select_needs_candidates():
    with pytest.raises(ValueError):
        select([], [ACC])
