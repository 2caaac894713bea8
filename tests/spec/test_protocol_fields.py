"""Study-file protocol fields: eliminate, selection, precondition, baseline, keep_tolerance."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError, UsageError
from hpsearch.metrics import METRICS
from hpsearch.protocol import criteria
from hpsearch.spec import (
    ELIMINATION_REASONS,
    PRECONDITIONS,
    StudySpec,
    parse_study_spec,
)
from hpsearch.spec.yaml_loader import load_yaml_text

OBJECTIVE = "objective: {metric: best_val_acc}\n"
SPACE = "space: {lr: {low: 1e-4, high: 1e-1, log: true}}\n"
METRIC_NAMES = ", ".join(METRICS)


def spec(text: str) -> StudySpec:
    return parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")


def test_protocol_fields_default_to_a_plain_study():
    parsed = spec(OBJECTIVE + SPACE)
    assert parsed.eliminate == []
    assert parsed.precondition == "none"
    assert parsed.baseline is False
    assert parsed.keep_tolerance == 0.0


def plain(selection):
    """The criteria as (name, direction, tolerance): their words are tested apart."""
    return [(s.criterion, s.direction, s.tolerance) for s in selection]


def test_selection_defaults_to_the_objective_metrics_with_no_tolerance():
    parsed = spec("objective: {metric: [best_val_acc, stability]}\npruner: {name: none}\n" + SPACE)
    assert plain(parsed.selection) == [("best_val_acc", "maximize", 0.0),
                                       ("stability", "minimize", 0.0)]


def test_selection_default_follows_an_explicit_objective_direction():
    parsed = spec("objective: {metric: val_loss, direction: maximize}\n" + SPACE)
    assert plain(parsed.selection) == [("val_loss", "maximize", 0.0)]


def test_each_criterion_carries_its_words_and_whether_it_is_an_accuracy():
    parsed = spec(OBJECTIVE + SPACE + "selection: [{criterion: best_val_acc, tolerance: 0.005},"
                  " {criterion: val_loss_at_peak}]\n")
    assert [(s.label, s.accuracy) for s in parsed.selection] == [
        ("peak validation accuracy", True), ("validation loss at the peak-accuracy epoch", False)]


def test_the_architecture_phase_reads_as_written():
    text = OBJECTIVE + SPACE + (
        "phase: architecture\n"
        "inherits: [lr_adam_refine]\n"
        "eliminate: [diverged, oscillating, underfitting]\n"
        "selection:\n"
        "  - {criterion: best_val_acc, tolerance: 0.005}\n"
        "  - {criterion: val_loss_at_peak}\n"
        "precondition: overfits\n"
        "baseline: true\n"
        "keep_tolerance: 0.002\n"
    )
    parsed = spec(text)
    assert parsed.eliminate == ["diverged", "oscillating", "underfitting"]
    assert plain(parsed.selection) == [("best_val_acc", "maximize", 0.005),
                                       ("val_loss_at_peak", "minimize", 0.0)]
    assert (parsed.precondition, parsed.baseline, parsed.keep_tolerance) == (
        "overfits", True, 0.002
    )


def test_the_first_criterion_need_not_be_the_objective_metric():
    parsed = spec(OBJECTIVE + SPACE + "selection: [{criterion: overfitting_gap, "
                  "direction: maximize, tolerance: 1}]\n")
    assert plain(parsed.selection) == [("overfitting_gap", "maximize", 1.0)]


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_is_a_valid_criterion(name):
    parsed = spec(OBJECTIVE + SPACE + f"selection: [{{criterion: {name}}}]\n")
    assert parsed.selection[0].direction == METRICS[name].direction


def test_elimination_reasons_are_the_lr_verdicts():
    assert ELIMINATION_REASONS == tuple(name for name, _ in criteria._LR_CHECKS)


@pytest.mark.parametrize("name", PRECONDITIONS)
def test_every_precondition_loads(name):
    assert spec(OBJECTIVE + SPACE + f"precondition: {name}\n").precondition == name


PROTOCOL_ERRORS = [
    ("eliminate: [diverge]",
     "eliminate.0: unknown elimination reason `diverge`; fix: did you mean diverged? use one "
     "of: diverged, oscillating, underfitting, undertrained"),
    ("eliminate: [diverged, overfitting]",
     "eliminate.1: unknown elimination reason `overfitting`; fix: did you mean underfitting? "
     "use one of: diverged, oscillating, underfitting, undertrained"),
    ("eliminate: [diverged, diverged]",
     "eliminate.1: duplicate reason (got 'diverged'); fix: list each reason once"),
    ("eliminate: diverged",
     "eliminate: must be a list (got 'diverged'); fix: write a list for `eliminate`"),
    ("selection: [{criterion: best_val_accc}]",
     "selection.0.criterion: unknown criterion `best_val_accc`; fix: did you mean "
     f"best_val_acc, val_acc, best_val_loss? use one of: {METRIC_NAMES}"),
    ("selection: [{criterion: best_val_acc, tolerance: -0.1}]",
     "selection.0.tolerance: must be >= 0.0 (got -0.1); fix: use a value >= 0.0"),
    ("selection: [{criterion: best_val_acc, tolerance: lots}]",
     "selection.0.tolerance: must be a number (got 'lots'); fix: write a number for "
     "`tolerance`"),
    ("selection: [{criterion: best_val_acc, tolerence: 0.01}]",
     "selection.0.tolerence: unknown key `tolerence`; fix: did you mean tolerance? use one "
     "of: criterion, direction, tolerance"),
    ("selection: [{criterion: val_acc, direction: up}]",
     "selection.0.direction: unknown direction `up`; fix: use one of: maximize, minimize"),
    ("selection: [{tolerance: 0.01}]",
     "selection.0.criterion: is required; fix: add `criterion:`"),
    ("selection: [{criterion: val_acc}, {criterion: val_acc}]",
     "selection.1.criterion: duplicate criterion (got 'val_acc'); fix: list each criterion "
     "once"),
    ("selection: [best_val_acc]",
     "selection.0: must be a mapping (got 'best_val_acc'); fix: write it like {criterion: "
     "best_val_acc, tolerance: 0.005}"),
    ("selection: best_val_acc",
     "selection: must be a list (got 'best_val_acc'); fix: write a list for `selection`"),
    ("selection: []",
     "selection: must not be empty (got []); fix: list at least one criterion, or leave "
     "`selection` out to select on the objective"),
    ("precondition: overfit",
     "precondition: unknown precondition `overfit`; fix: did you mean overfits? use one of: "
     "none, overfits, sound, improving"),
    ("baseline: 1",
     "baseline: must be true or false (got 1); fix: write true or false for `baseline`"),
    ("keep_tolerance: -0.01",
     "keep_tolerance: must be >= 0.0 (got -0.01); fix: use a value >= 0.0"),
    ("keep_tolerance: .inf",
     "keep_tolerance: must be a finite number (got inf); fix: write a finite number for "
     "`keep_tolerance`"),
]


@pytest.mark.parametrize(
    ("line", "message"), PROTOCOL_ERRORS, ids=[m.split(": ")[0] for _, m in PROTOCOL_ERRORS]
)
def test_protocol_field_errors(line, message):
    with pytest.raises(SpecError) as caught:
        spec(OBJECTIVE + SPACE + line + "\n")
    assert str(caught.value) == f"studies/s.yaml: {message}"


def test_follow_fixes_the_inherited_choice_and_searches_only_its_branch():
    text = ("objective: {metric: val_acc}\nfollow: [optimizer]\nspace:\n  optimizer:\n"
            "    choices: [sgd, adam]\n    when:\n      sgd: {momentum: {low: 0.8, high: 0.99}}\n"
            "      adam: {beta1: {low: 0.8, high: 0.95}}\n")
    spec = parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")
    assert spec.follow == ["optimizer"]
    followed = spec.following({"optimizer": "adam"})
    assert list(followed.space.distributions()) == ["beta1[adam]"]
    assert followed.space.sampled_settings() == {"beta1"}
    with pytest.raises(UsageError) as caught:
        spec.following({"optimizer": "rmsprop"})
    assert str(caught.value) == (
        "studies/s.yaml: space.optimizer: follows the inherited optimizer, which has no choice "
        "here (choices: ['sgd', 'adam']) (got 'rmsprop'); fix: add 'rmsprop' to its choices")


def test_follow_names_must_be_settings():
    text = "objective: {metric: val_acc}\nfollow: [optimiser]\nspace: {lr: 0.1}\n"
    with pytest.raises(SpecError) as caught:
        parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")
    assert str(caught.value).startswith("studies/s.yaml: follow.0: unknown setting `optimiser`; fix: did you mean optimizer, optimizer_args?")


def test_peak_kept_within_reads_as_written_and_defaults_to_no_bound():
    assert spec(OBJECTIVE + SPACE).peak_kept_within is None
    parsed = spec(OBJECTIVE + SPACE + "baseline: true\npeak_kept_within: 0.002\n")
    assert parsed.peak_kept_within == 0.002


def test_peak_kept_within_without_a_baseline_is_refused_with_the_fix():
    with pytest.raises(SpecError) as raised:
        spec(OBJECTIVE + SPACE + "peak_kept_within: 0.002\n")
    message = str(raised.value)
    assert "studies/s.yaml" in message and "peak_kept_within" in message
    assert "needs a baseline trial" in message and "baseline: true" in message


def test_a_negative_peak_kept_within_is_refused():
    with pytest.raises(UsageError, match="peak_kept_within"):
        spec(OBJECTIVE + SPACE + "baseline: true\npeak_kept_within: -0.1\n")
