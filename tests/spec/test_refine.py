"""`refine` nodes: parsing, resolution around a parent study's choice, grids; `replace`."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FixedTrial

from hpsearch.errors import SpecError
from hpsearch.spec import (
    Refinement,
    SearchSpace,
    build_sampler,
    parse_space,
    parse_study_spec,
)
from hpsearch.spec.yaml_loader import load_yaml_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

ADAM_REFINE = "lr: {refine: lr_adam, factors: [0.5, 1, 2]}\n"
BRANCH_REFINE = """
optimizer:
  choices: [sgd, adam]
  when:
    sgd: {lr: {refine: lr_sgd, factors: [0.666667, 1, 1.666667]}, momentum: 0.9}
    adam: {lr: {refine: lr_adam, factors: [0.5, 1, 2]}}
"""
CHOSEN = {("lr_adam", "lr"): 1e-3, ("lr_sgd", "lr"): 3e-2, ("arch", "epochs"): 10}


def space(text: str) -> SearchSpace:
    return parse_space(load_yaml_text(text), "studies/s.yaml")


def chosen(parent: str, setting: str) -> float:
    return CHOSEN[(parent, setting)]


def test_refinements_lists_every_refine_node_in_file_order():
    assert space(ADAM_REFINE + "epochs: {refine: arch, factors: [1, 2]}\n").refinements() == [
        Refinement(setting="lr", parent="lr_adam", factors=(0.5, 1, 2)),
        Refinement(setting="epochs", parent="arch", factors=(1, 2)),
    ]


def test_refinements_include_those_inside_branches():
    assert space(BRANCH_REFINE).refinements() == [
        Refinement(setting="lr", parent="lr_sgd", factors=(0.666667, 1, 1.666667)),
        Refinement(setting="lr", parent="lr_adam", factors=(0.5, 1, 2)),
    ]


def test_a_space_without_refine_nodes_has_no_refinements():
    assert space("lr: {values: [0.1, 0.01]}\n").refinements() == []


def test_adam_1e_3_refines_to_exactly_5e_4_1e_3_2e_3():
    # PROTOCOL.md phase 2: refine 1e-3 -> [5e-4, 1e-3, 2e-3] [000]; 1e-3 * 0.5 is
    # 0.0005000000000000001 in floating point, hence the rounding to 6 significant digits.
    resolved = space(ADAM_REFINE).resolve_refinements(chosen)
    assert resolved.grid() == {"lr": [0.0005, 0.001, 0.002]}
    assert resolved.refinements() == []


def test_resolution_asks_for_the_parent_study_and_the_setting():
    asked = []
    space(ADAM_REFINE).resolve_refinements(lambda parent, name: asked.append((parent, name))
                                           or 1e-3)
    assert asked == [("lr_adam", "lr")]


def test_an_int_setting_refines_to_rounded_integers():
    resolved = space("epochs: {refine: arch, factors: [0.5, 1, 1.25, 2]}\n")
    assert resolved.resolve_refinements(chosen).grid() == {"epochs": [5, 10, 13, 20]}


def test_integers_equal_after_rounding_are_listed_once():
    resolved = space("epochs: {refine: arch, factors: [0.5, 1, 1.4, 2]}\n")
    assert resolved.resolve_refinements(lambda p, s: 1).grid() == {"epochs": [1, 2]}


@pytest.mark.parametrize(("value", "expected"), [(64, [32, 64, 128]), (0.1, [0.05, 0.1, 0.2])])
def test_a_model_args_entry_takes_the_type_of_the_chosen_value(value, expected):
    resolved = space("model_args.hidden: {refine: arch, factors: [0.5, 1, 2]}\n")
    values = resolved.resolve_refinements(lambda p, s: value).grid()["model_args.hidden"]
    assert values == expected and [type(v) for v in values] == [type(value)] * 3


def test_a_refine_inside_a_branch_resolves_under_its_branch_name():
    resolved = space(BRANCH_REFINE).resolve_refinements(chosen)
    assert resolved.distributions() == {
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
        "lr[sgd]": CategoricalDistribution([0.02, 0.03, 0.05]),  # 3e-2 -> [2e-2, 3e-2, 5e-2]
        "lr[adam]": CategoricalDistribution([0.0005, 0.001, 0.002]),
    }
    trial = FixedTrial({"optimizer": "sgd", "lr[sgd]": 0.05})
    assert resolved.suggest(trial) == {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}


def test_the_resolved_space_leaves_the_original_unresolved():
    parsed = space(ADAM_REFINE)
    parsed.resolve_refinements(chosen)
    assert parsed.refinements() == [Refinement("lr", "lr_adam", (0.5, 1, 2))]


UNRESOLVED = (
    "studies/s.yaml: space.lr: `lr` refines the value study `lr_adam` chose, which is not "
    "resolved yet; fix: resolve refinements first (SearchSpace.resolve_refinements) once "
    "study `lr_adam` has run"
)


@pytest.mark.parametrize(
    "use",
    [lambda s: s.suggest(FixedTrial({"lr": 0.001})), lambda s: s.distributions(),
     lambda s: s.grid()],
    ids=["suggest", "distributions", "grid"],
)
def test_an_unresolved_refine_cannot_be_sampled(use):
    with pytest.raises(SpecError) as caught:
        use(space(ADAM_REFINE))
    assert str(caught.value) == UNRESOLVED


def test_an_unresolved_refine_counts_one_grid_point_per_factor():
    assert space(ADAM_REFINE + "batch_size: {values: [64, 128]}\n").grid_size() == 6


def test_a_parent_that_chose_no_number_is_an_error():
    with pytest.raises(SpecError) as caught:
        space(ADAM_REFINE).resolve_refinements(lambda p, s: "adam")
    assert str(caught.value) == (
        "studies/s.yaml: space.lr: study `lr_adam` chose no number for `lr` (got 'adam'); fix: "
        "run study `lr_adam` first, or search `lr` without `refine`"
    )


def test_a_setting_the_parent_left_unset_or_at_zero_stays_so():
    # A refinement tunes the strength of what was chosen: no weight decay stays none.
    text = ("weight_decay: {refine: reg, factors: [0.5, 1, 2]}\n"
            "dropout: {refine: reg, factors: [0.5, 1, 1.5]}\n")
    chosen = {"weight_decay": None, "dropout": 0.0}
    resolved = space(text).resolve_refinements(lambda parent, setting: chosen[setting])
    assert [p.choices for p in resolved.params] == [(None,), (0.0,)]


GRID_STUDY = (
    "objective: {metric: train_loss_area}\nsampler: {name: grid, seed: 0}\n"
    "pruner: {name: none}\nspace: {lr: {refine: lr_adam, factors: [0.5, 1, 2]}}\n"
)


def grid_spec(text: str = GRID_STUDY):
    return parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")


def test_a_grid_over_a_refine_defaults_to_one_trial_per_factor():
    assert grid_spec().trials == 3


def test_grid_sampler_runs_every_point_of_a_resolved_refine():
    spec = grid_spec()
    spec = spec.with_space(spec.space.resolve_refinements(chosen))
    study = optuna.create_study(sampler=build_sampler(spec))
    study.optimize(lambda trial: spec.space.suggest(trial)["lr"], n_trials=spec.trials)
    assert sorted(t.params["lr"] for t in study.trials) == [0.0005, 0.001, 0.002]


def test_a_grid_budget_follows_the_values_left_after_rounding():
    text = GRID_STUDY.replace("lr: {refine: lr_adam, factors: [0.5, 1, 2]}",
                              "epochs: {refine: arch, factors: [0.5, 1, 1.4, 2]}")
    spec = grid_spec(text)
    assert spec.trials == 4
    assert spec.with_space(spec.space.resolve_refinements(lambda p, s: 1)).trials == 2
    assert grid_spec(text + "trials: 7\n").with_space(spec.space).trials == 7


REFINE_ERRORS = [
    ("lr: {refine: lr_adam, factors: []}",
     "space.lr.factors: must not be empty (got []); fix: list the factors to multiply the "
     "chosen value by, e.g. factors: [0.5, 1, 2]"),
    ("lr: {refine: lr_adam}",
     "space.lr.factors: is required; fix: list the factors to multiply the chosen value by, "
     "e.g. factors: [0.5, 1, 2]"),
    ("lr: {refine: lr_adam, factors: [0.5, 0, 2]}",
     "space.lr.factors.1: must be > 0 (got 0); fix: use positive factors: each multiplies the "
     "chosen value"),
    ("lr: {refine: lr_adam, factors: [-1]}",
     "space.lr.factors.0: must be > 0 (got -1); fix: use positive factors: each multiplies the "
     "chosen value"),
    ("lr: {refine: lr_adam, factors: [1, two]}",
     "space.lr.factors.1: must be a number (got 'two'); fix: write a number for `1`"),
    ("lr: {refine: lr_adam, factors: [1, 1.0]}",
     "space.lr.factors.1: duplicate factor (got 1.0); fix: list each factor once"),
    ("lr: {refine: lr_adam, factors: 2}",
     "space.lr.factors: must be a list (got 2); fix: write a list for `factors`"),
    ("lr: {refine: 3, factors: [1]}",
     "space.lr.refine: must be a study name (got 3); fix: write a study name for `refine`"),
    ("lr: {refine: lr_adam, factors: [1], log: true}",
     "space.lr.log: unknown key `log`; fix: use one of: refine, factors"),
    ("optimizer: {refine: optimizer, factors: [1]}",
     "space.optimizer: `optimizer` is a text setting, not a number; fix: refine a float or int "
     "setting, or search this one with `choices: [...]`"),
    ("nesterov: {refine: optimizer, factors: [1]}",
     "space.nesterov: `nesterov` is a true/false setting, not a number; fix: refine a float or "
     "int setting, or search this one with `choices: [...]`"),
    ("lrr: {refine: lr_adam, factors: [1]}",
     "space.lrr: unknown setting `lrr`; fix: did you mean lr?"),
    ("optimizer: {choices: [sgd], when: {sgd: {lr: {refine: lr_sgd, factors: [0]}}}}",
     "space.optimizer.when.sgd.lr.factors.0: must be > 0 (got 0); fix: use positive factors: "
     "each multiplies the chosen value"),
]


@pytest.mark.parametrize(
    ("text", "message"), REFINE_ERRORS, ids=[m.split(" ")[0] for _, m in REFINE_ERRORS]
)
def test_refine_errors(text, message):
    with pytest.raises(SpecError) as caught:
        space(text)
    assert str(caught.value) == f"studies/s.yaml: {message}"


def test_replace_swaps_a_top_level_parameter_in_place():
    parsed = space("lr: {low: 1e-4, high: 1e-1, log: true}\nbatch_size: {values: [64, 128]}\n")
    replaced = parsed.replace("lr", {"values": [1e-4, 1e-3, 1e-2]})
    assert replaced.grid() == {"lr": [1e-4, 1e-3, 1e-2], "batch_size": [64, 128]}
    assert parsed.distributions()["lr"] == FloatDistribution(1e-4, 1e-1, log=True)


def test_replace_applies_a_recorded_lr_finder_range_to_a_refine():
    replaced = space(ADAM_REFINE).replace("lr", {"type": "float", "low": 2e-4, "high": 5e-3,
                                                 "log": True})
    assert replaced.refinements() == []
    assert replaced.distributions() == {"lr": FloatDistribution(2e-4, 5e-3, log=True)}


def test_replace_adds_a_parameter_the_space_lacks():
    replaced = space("batch_size: {values: [64, 128]}\n").replace("lr", {"values": [0.1]})
    assert replaced.grid() == {"batch_size": [64, 128], "lr": [0.1]}


REPLACE_ERRORS = [
    ("lr: 0.1", {"type": "float", "low": 1.0, "high": 0.1},
     "space.lr.low: must be <= high = 0.1 (got 1.0); fix: swap low and high"),
    ("lr: 0.1", {"values": []},
     "space.lr.values: must not be empty (got []); fix: list at least one choice"),
    ("optimizer: {choices: [sgd], when: {sgd: {lr: 0.1}}}", {"values": [0.1]},
     "space.lr: `lr` is also set at space.optimizer.when.sgd.lr; fix: set it in one place "
     "only, or in each branch instead"),
]


@pytest.mark.parametrize(("text", "raw", "message"), REPLACE_ERRORS,
                         ids=["bounds", "empty", "set twice"])
def test_replace_errors_name_the_space_field(text, raw, message):
    with pytest.raises(SpecError) as caught:
        space(text).replace("lr", raw)
    assert str(caught.value) == f"studies/s.yaml: {message}"


def test_factor_one_is_the_chosen_value_unrounded():
    # A sampled rate: the grid must hold the parent's configuration exactly (its baseline
    # trial sits on it), while the other points are rounded to 6 significant digits.
    resolved = space(ADAM_REFINE).resolve_refinements(lambda p, s: 0.0027992477820297642)
    assert resolved.params[0].choices == (0.00139962, 0.0027992477820297642, 0.0055985)
