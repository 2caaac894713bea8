"""Acting on `undertrained`: a phase with `train_longer` trains its trials longer, with early
stopping, when the choice it inherits is still improving at its last epoch."""

from __future__ import annotations

import optuna
import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import SpecError
from hpsearch.phases.protocol import run_protocol
from hpsearch.phases.test_set import run_test
from hpsearch.protocol.chain import Inheritance
from hpsearch.protocol.longer import longer_training
from hpsearch.records import PhaseChoice
from hpsearch.runner import run_study
from hpsearch.spec import parse_study_spec
from hpsearch.train import evaluate, fit, load_data
from tests.conftest import REPO

CPU = torch.device("cpu")
RULE = {"factor": 2, "max_epochs": 12, "patience": 4}


def spec_with(rule):
    data = {"objective": {"metric": "best_val_acc"}, "space": {"depth": {"values": [1, 2]}},
            "sampler": {"name": "grid"}, "inherits": ["parent"]}
    return parse_study_spec({**data, **({"train_longer": rule} if rule else {})}, "t.yaml",
                            name="t")


def inheriting(undertrained: bool, epochs_planned: int = 5, epochs_run: int = 5) -> Inheritance:
    choice = PhaseChoice(trial=3, config={"epochs": epochs_planned},
                         criteria={"undertrained": undertrained, "epochs": epochs_run})
    return Inheritance(config={"epochs": epochs_planned},
                       sources=[{"study": "parent", "trial": 3, "reason": ""}],
                       choices={"parent": choice})


def test_an_undertrained_choice_doubles_the_epochs_with_early_stopping():
    longer = longer_training(spec_with(RULE), inheriting(True), epochs=5)
    assert longer.settings() == {"epochs": 10, "patience": 4}
    assert longer.to_dict() == {
        "from": 5, "to": 10, "patience": 4, "still_improving": True,
        "reason": "the inherited choice (parent, trial 3) is undertrained: its train loss "
                  "still fell steeply at its last epoch (5)"}


@pytest.mark.parametrize("rule, choice, epochs", [
    (None, inheriting(True), 5),                 # the phase file does not ask for it
    (RULE, inheriting(False), 5),                # the choice had converged
    (RULE, inheriting(True, 10, 7), 10),         # it stopped early: it met its plateau
    (RULE, inheriting(True, 12, 12), 12),        # already at max_epochs
    (RULE, inheriting(False, 4, 4), 8),          # asked for more than the parent ran
])
def test_no_longer_training(rule, choice, epochs):
    assert longer_training(spec_with(rule), choice, epochs=epochs) is None


def test_a_validation_peak_in_the_last_epochs_also_trains_longer():
    choice = inheriting(False, 40, 40)
    choice.choices["parent"].criteria["peak_epoch"] = 39
    longer = longer_training(spec_with({**RULE, "max_epochs": 80}), choice, epochs=40)
    assert longer.epochs == 80
    assert longer.reason.endswith("was still improving: its validation peak came at epoch 39 "
                                  "of 40")
    choice.choices["parent"].criteria["peak_epoch"] = 30  # it had peaked: no more epochs
    assert longer_training(spec_with({**RULE, "max_epochs": 80}), choice, epochs=40) is None


def test_a_phase_keeps_at_least_the_epochs_its_inherited_choice_ran():
    longer = longer_training(spec_with(RULE), inheriting(False, 8, 8), epochs=4)
    assert (longer.epochs, longer.improving) == (8, False)
    assert longer.line() == "epochs 4 -> 8 (as the inherited choice; early stop after 4)"
    assert longer_training(spec_with(RULE), inheriting(True, 8, 8), epochs=4).epochs == 12


def test_a_chain_stays_within_four_times_the_epochs_asked_for():
    wide = spec_with({**RULE, "max_epochs": 80})
    assert longer_training(wide, inheriting(True, 6, 6), epochs=3).epochs == 12
    assert longer_training(wide, inheriting(True, 12, 12), epochs=3).epochs == 12  # not 24
    assert longer_training(wide, inheriting(True, 40, 40), epochs=20).epochs == 80


def test_the_cap_bounds_the_epochs_and_never_lowers_them():
    assert longer_training(spec_with(RULE), inheriting(True, 8, 8), epochs=8).epochs == 12
    assert longer_training(spec_with(RULE), inheriting(True), epochs=5).epochs == 10


def test_a_bad_train_longer_names_the_field():
    with pytest.raises(SpecError, match=r"t\.yaml: train_longer\.factor"):
        spec_with({"factor": 1, "max_epochs": 12})
    with pytest.raises(SpecError, match=r"t\.yaml: train_longer\.pacience"):
        spec_with({"pacience": 3})


def test_patience_stops_training_and_keeps_the_peak_weights():
    data = load_data(TrainConfig(), CPU)
    # A rate this high makes the validation accuracy peak early and wander after it.
    config = TrainConfig(epochs=40, patience=2, lr=0.05, val_subset=0)
    model, history = fit(config, data, CPU)
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    assert len(history) == best + 1 + 2 < 40  # two epochs without a new peak, then stop
    assert evaluate(model, data.val, config, CPU)[1] == pytest.approx(history[best]["val_acc"])


def test_the_protocol_trains_longer_after_an_undertrained_choice(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    outcomes = run_protocol(studies_dir=REPO / "studies", storage=url, overrides={"epochs": 3},
                            start="lr_adam", stop="architecture", trials_scale=0.15)
    parent = optuna.load_study(study_name="lr_adam_refine", storage=url).user_attrs["selection"]
    assert parent["criteria"]["undertrained"]  # 3 epochs on digits: still falling steeply
    architecture = optuna.load_study(study_name="architecture", storage=url)
    assert architecture.user_attrs["train_longer"]["to"] == 6
    for trial in architecture.trials:
        assert trial.user_attrs["config"]["epochs"] == 6
        assert trial.user_attrs["config"]["patience"] == 10
    assert outcomes[-1].line.startswith(
        "epochs 3 -> 6 (still improving; early stop after 10); chose trial")
    assert optuna.load_study(study_name="lr_adam_refine", storage=url).user_attrs.get(
        "train_longer") is None  # the LR phases read the first epochs: they never extend


def test_the_final_phase_runs_only_while_the_choice_still_improves():
    from hpsearch.protocol.chain import precondition_failure

    assert precondition_failure("improving", inheriting(True, 20, 20)) is None
    done = inheriting(False, 40, 40)
    done.choices["parent"].criteria["peak_epoch"] = 25
    assert precondition_failure("improving", done) == (
        "the inherited choice was no longer improving at its end (validation peak at epoch 25 "
        "of 40, train loss not falling steeply): more epochs would not pay")


def final_after_lr_adam(tmp_path):
    """The installed final phase, inheriting lr_adam instead of the scheduler phase."""
    folder = tmp_path / "studies"
    folder.mkdir()
    text = (REPO / "studies" / "final.yaml").read_text()
    (folder / "final.yaml").write_text(text.replace("inherits: [scheduler]", "inherits: [lr_adam]"))
    return folder


def test_the_final_phase_trains_the_choice_longer_and_the_test_phase_tests_it(tmp_path):
    # The installed final phase, after a 3-epoch lr_adam whose choice still improves.
    folder = final_after_lr_adam(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    run_study("lr_adam", storage=url, studies_dir=REPO / "studies", overrides={"epochs": 3})
    parent = optuna.load_study(study_name="lr_adam", storage=url).user_attrs["selection"]
    assert parent["criteria"]["undertrained"]
    summary = run_study("final", storage=url, studies_dir=folder, overrides={"epochs": 3})
    assert summary.skipped is None and summary.longer.startswith("epochs 3 -> 6")
    (trial,) = optuna.load_study(study_name="final", storage=url).trials
    assert trial.user_attrs["config"]["epochs"] == 6 and trial.user_attrs["baseline"]
    assert run_test("final", url).config["epochs"] == 6  # the test trains the longer run


def test_the_final_phase_is_skipped_once_the_choice_stopped_improving(tmp_path):
    folder = final_after_lr_adam(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    stops_early = {"epochs": 40, "patience": 3}  # digits peaks well before 40 epochs
    run_study("lr_adam", storage=url, studies_dir=REPO / "studies", overrides=stops_early)
    parent = optuna.load_study(study_name="lr_adam", storage=url).user_attrs["selection"]
    assert parent["criteria"]["epochs"] < 40
    summary = run_study("final", storage=url, studies_dir=folder, overrides=stops_early)
    assert summary.skipped.startswith("the inherited choice was no longer improving at its end")
    assert optuna.load_study(study_name="final", storage=url).trials == []


def test_a_skipped_phase_passes_on_the_epochs_its_parent_trained():
    """`--set epochs=4` with a parent trained longer (16): the test phase retrains what the
    parent chose, not a 4-epoch run of it."""
    from hpsearch.protocol.chain import skipped_choice

    kept = {"artifact_id": "a1", "store": "/s", "trial": 2, "file": "f.pt", "bytes": 1}
    parent = PhaseChoice(trial=2, config={"epochs": 16, "patience": 10, "lr": 0.01},
                         checkpoint=kept)
    inheritance = Inheritance(config={"epochs": 16, "patience": 10, "lr": 0.01},
                              sources=[{"study": "scheduler", "trial": 2, "reason": ""}],
                              choices={"scheduler": parent})
    skipped = skipped_choice("no longer improving", inheritance,
                             {"epochs": 4, "patience": 0, "lr": 0.01, "device": "cpu"})
    assert skipped.config == {"epochs": 16, "patience": 10, "lr": 0.01, "device": "cpu"}
    assert skipped.skipped and skipped.reason == "skipped: no longer improving"
    assert skipped.checkpoint == kept  # the same configuration: the parent's model is its
    asked_more = skipped_choice("x", inheritance, {"epochs": 40, "patience": 0, "lr": 0.01})
    assert asked_more.config["epochs"] == 40 and asked_more.checkpoint is None
