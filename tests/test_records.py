"""records.py: every stored name has one typed record, one writer and one reader, and what an
earlier hpsearch stored loads as it was."""

from __future__ import annotations

import math

import optuna
import pytest

from hpsearch import records
from hpsearch.records import (
    Criteria,
    EpochRecord,
    LrRange,
    PhaseChoice,
    Reproduction,
    StudyFacts,
    TestResult,
    TrialFacts,
)

# As hpsearch stored them before records.py existed (copied from a stored MNIST protocol run,
# configurations shortened): a technique phase's choice, a skipped phase's, a test result.
LEGACY_CHOICE = {
    "trial": 1,
    "reason": "trial 1 (stability 0.005931, convergence_epochs 5, best_val_acc 0.9586) after: "
              "stability: best 0.005931; 3 of 3 trials within 0.002; beats the baseline "
              "(trial 0) by 0.000914",
    "steps": ["stability: best 0.005931; 3 of 3 trials within 0.002"],
    "runners_up": [{"trial": 0, "stability": 0.006845, "convergence_epochs": 4.0,
                    "best_val_acc": 0.9502}],
    "kept_baseline": False,
    "config": {"dataset": "mnist", "augment": "crop", "depth": 1, "width": 200, "norm": "batch"},
    "criteria": {"epochs": 40, "best_val_acc": 0.9586, "lr_verdict": None, "peak_epoch": 38},
    "params": {"norm": "batch"},
    "main_criterion": "stability",
    "skipped": False,
    "extra_epochs": 1.0,
    "eliminated": [],
}
LEGACY_SKIPPED = {
    "trial": None, "config": {"width": 200}, "criteria": {"overfits": False},
    "main_criterion": "best_val_acc", "params": {},
    "reason": "skipped: the inherited choice does not overfit", "skipped": True,
    "runners_up": [], "steps": [], "kept_baseline": False,
}
LEGACY_TEST = {"test_loss": 0.1228, "test_acc": 0.965, "trial": 0, "epochs": 160,
               "config": {"epochs": 160}, "when": "2026-12-04T15:31:05+00:00"}
LEGACY_EPOCH = {"epoch": 2, "train_loss": 0.7295, "train_acc": 0.767, "val_loss": 0.5233,
                "val_acc": 0.8261, "lr": 0.006, "epoch_time_s": 0.068}


@pytest.mark.parametrize("stored", [LEGACY_CHOICE, LEGACY_SKIPPED], ids=["chosen", "skipped"])
def test_a_choice_stored_by_an_earlier_version_loads_as_it_was(stored):
    choice = PhaseChoice.from_dict(stored)
    assert {k: v for k, v in choice.to_dict().items() if k in stored} == stored
    assert choice.trial == stored["trial"] and choice.skipped == stored["skipped"]
    assert choice.why == "" and choice.extended is None  # fields it predates: their defaults


def test_keys_a_newer_version_stored_are_kept():
    choice = PhaseChoice.from_dict({**LEGACY_CHOICE, "tomorrow": [1, 2]})
    assert choice.extra == {"tomorrow": [1, 2]}
    assert choice.to_dict()["tomorrow"] == [1, 2]


def test_the_choice_reads_its_main_criterion():
    choice = PhaseChoice.from_dict(LEGACY_CHOICE)
    assert choice.main_value() is None  # stability is not among the stored criteria here
    assert PhaseChoice(trial=3, criteria={"best_val_acc": 0.9},
                       main_criterion="best_val_acc").main_value() == 0.9


def test_a_test_result_and_an_epoch_load_as_they_were():
    result = TestResult.from_dict(LEGACY_TEST)
    assert result.to_dict() == {**LEGACY_TEST, "checkpoint": None}
    assert result.text() == "test accuracy 0.9650, test loss 0.1228"
    assert TestResult.from_dict({"test_loss": None, "trial": 2, "epochs": 3}).text() == (
        "test loss not reported")
    epoch = EpochRecord.from_dict({**LEGACY_EPOCH, "f1": 0.5})
    assert epoch.val_acc == 0.8261 and epoch.extra == {"f1": 0.5}
    assert epoch.to_dict() == {**LEGACY_EPOCH, "f1": 0.5}


def test_trial_records_are_written_and_read_through_one_pair_each():
    study = optuna.create_study()
    trial = study.ask()
    records.write_config(trial, {"lr": 0.01})
    records.write_history(trial, [{"epoch": 1, "train_loss": math.nan, "val_acc": 0.5}])
    records.write_criteria(trial, {"best_val_acc": 0.5, "stability": math.inf})
    records.write_fact(trial, records.REASON, "pruned at epoch 1")
    records.write_reproduction(trial, Reproduction(seed=3, device="cpu",
                                                   versions={"torch": "2.14.1"}))
    study.tell(trial, 0.5)
    stored = study.trials[0]
    assert records.read_config(stored) == {"lr": 0.01}
    assert records.read_history(stored) == [EpochRecord(epoch=1, val_acc=0.5)]  # NaN: null
    assert records.read_criteria(stored) == Criteria({"best_val_acc": 0.5, "stability": None})
    assert TrialFacts.of(stored).why() == "pruned at epoch 1"
    assert records.read_reproduction(stored).seed == 3
    assert records.epochs_run(stored) == 1


def test_an_unknown_fact_is_refused():
    with pytest.raises(KeyError, match="`colour` is not a trial fact"):
        records.write_fact(optuna.create_study().ask(), "colour", "blue")


def test_study_records_are_written_and_read_through_one_pair_each():
    study = optuna.create_study()
    assert records.read_choice(study) is None and records.read_test(study) is None
    records.write_choice(study, PhaseChoice.from_dict(LEGACY_CHOICE))
    records.write_test(study, TestResult.from_dict(LEGACY_TEST))
    records.write_lr_range(study, LrRange(low=1e-4, suggested=3e-4, high=1e-3))
    records.describe_study(study, {"epochs": 20}, "studies/x.yaml", "X", "lr")
    records.write_start(study, {"config": {}, "from": [{"study": "setup", "trial": 1}]}, [],
                        None, "augmentation tried")
    assert records.read_choice(study) == PhaseChoice.from_dict(LEGACY_CHOICE)
    assert records.read_test(study).test_acc == 0.965
    assert records.read_lr_range(study).suggested == 3e-4
    facts = StudyFacts.of(study)
    assert (facts.phase, facts.fixed_settings, facts.parents()) == ("lr", {"epochs": 20},
                                                                    ["setup"])
    assert facts.augmentation == "augmentation tried"


def test_a_retry_does_not_take_over_the_failed_run_s_outcome():
    assert {records.ERROR, records.HISTORY, records.CRITERIA, records.REASON} <= set(
        records.NOT_INHERITED_BY_RETRY)
    assert records.CONFIG not in records.NOT_INHERITED_BY_RETRY


def test_a_history_appended_epoch_by_epoch_is_written_as_the_whole_history_is():
    epochs = [{"epoch": 1, "train_loss": math.nan, "val_acc": 0.5},
              {"epoch": 2, "train_loss": 0.25, "val_acc": math.inf}]

    class Kept:  # a writer that keeps each value as given (as Optuna's in-memory storage)
        def __init__(self):
            self.given = []

        def set_user_attr(self, key, value):
            self.given.append((key, value))

    whole, appended, written = Kept(), Kept(), []
    for epoch in range(1, len(epochs) + 1):
        records.write_history(whole, epochs[:epoch])
        records.append_history(appended, written, epochs[epoch - 1])
    assert appended.given == whole.given  # each epoch's write as it was, not grown later
    assert appended.given[-1] == (records.HISTORY, [
        {"epoch": 1, "train_loss": None, "val_acc": 0.5},
        {"epoch": 2, "train_loss": 0.25, "val_acc": None}])
