"""A search space narrowed to the settings a model honours."""

from __future__ import annotations

from hpsearch.spec import parse_space
from hpsearch.spec.yaml_loader import load_yaml_text
from tests.conftest import REPO


def phase_space(name: str):
    data = load_yaml_text((REPO / "studies" / f"{name}.yaml").read_text())
    return parse_space(data["space"], f"studies/{name}.yaml")


def test_a_selector_loses_the_choices_whose_branch_reaches_nothing():
    space, dropped = phase_space("regularization").restricted(lambda s: s != "dropout")
    (regularizer,) = space.params
    assert regularizer.choices == ("l1", "l2", "label_smoothing", "noise")
    assert dropped == ["dropout"]


def test_a_settings_choice_stays_while_its_branch_narrows():
    honours = {"optimizer", "weight_decay"}.__contains__
    space, dropped = phase_space("optimizer_options").restricted(honours)
    (optimizer,) = space.params
    assert optimizer.choices == ("sgd", "adam", "adamw", "rmsprop")
    assert [p.name for p in optimizer.branches["sgd"]] == ["weight_decay"]
    assert dropped == ["momentum", "nesterov", "beta1", "beta2"]


def test_nothing_honoured_leaves_nothing_to_search():
    space, dropped = phase_space("scheduler").restricted(lambda s: False)
    assert space.params == () and not space.sampled_settings()
    assert dropped == ["scheduler", "warmup_epochs"]


def test_everything_honoured_changes_nothing():
    original = phase_space("regularization")
    assert original.restricted(lambda s: True) == (original, [])
