"""Samplers and pruners: the Optuna classes and arguments a study file asks for."""

from __future__ import annotations

import warnings

import optuna
import pytest

from hpsearch.spec import StudySpec, build_pruner, build_sampler, parse_study_spec
from hpsearch.spec.yaml_loader import load_yaml_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVE = "objective: {metric: val_acc}\n"
RANGE_SPACE = "space: {lr: {low: 1e-4, high: 1e-1, log: true}}\n"
GRID_SPACE = "space:\n  lr: {values: [0.1, 0.03, 0.01]}\n  optimizer: {choices: [sgd, adam]}\n"
GRID_SPACE += "  epochs: 5\n"


def spec(text: str) -> StudySpec:
    return parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")


def sampler_for(lines: str, space: str = RANGE_SPACE) -> optuna.samplers.BaseSampler:
    return build_sampler(spec(OBJECTIVE + space + lines))


def pruner_for(lines: str) -> optuna.pruners.BasePruner:
    return build_pruner(spec(OBJECTIVE + RANGE_SPACE + lines))


def test_default_sampler_is_grouped_multivariate_tpe_with_constant_liar():
    sampler = sampler_for("")
    assert type(sampler) is optuna.samplers.TPESampler
    assert sampler._multivariate is True and sampler._group is True
    assert sampler._constant_liar is True and sampler._n_startup_trials == 10


def test_tpe_arguments_are_passed_on():
    sampler = sampler_for("sampler: {name: tpe, n_startup_trials: 4, group: false, "
                          "constant_liar: false, seed: 3}\n")
    assert sampler._n_startup_trials == 4 and sampler._group is False
    assert sampler._constant_liar is False


def test_building_tpe_emits_no_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler_for("")
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(
    ("lines", "cls"),
    [
        ("sampler: {name: random, seed: 1}\n", optuna.samplers.RandomSampler),
        ("sampler: {name: cmaes, seed: 1}\n", optuna.samplers.CmaEsSampler),
        ("sampler: {name: gp, seed: 1}\n", optuna.samplers.GPSampler),
    ],
)
def test_other_samplers_are_built_with_their_class(lines, cls):
    assert type(sampler_for(lines)) is cls


def test_cmaes_and_gp_keep_optunas_startup_defaults():
    assert spec(OBJECTIVE + RANGE_SPACE + "sampler: {name: cmaes}\n").sampler.args == {
        "n_startup_trials": 1
    }
    gp = sampler_for("sampler: {name: gp, n_startup_trials: 3}\n")
    assert gp._n_startup_trials == 3


def test_seeded_samplers_repeat_their_draws():
    def draws() -> list[float]:
        study = optuna.create_study(sampler=sampler_for("sampler: {name: random, seed: 7}\n"))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        return [t.params["x"] for t in study.trials]

    assert draws() == draws()


def test_grid_search_space_is_the_values_lists():
    sampler = sampler_for("sampler: {name: grid, seed: 0}\n", GRID_SPACE)
    assert type(sampler) is optuna.samplers.GridSampler
    assert sampler._search_space == {"lr": [0.1, 0.03, 0.01], "optimizer": ["sgd", "adam"]}


def test_a_grid_study_runs_every_point_once_in_grid_size_trials():
    study_spec = spec(OBJECTIVE + GRID_SPACE + "sampler: {name: grid}\n")
    assert study_spec.space.grid_size() == 6 and study_spec.trials == 6
    study = optuna.create_study(sampler=build_sampler(study_spec))
    points = []
    study.optimize(lambda t: points.append(study_spec.space.suggest(t)) or 0.0,
                   n_trials=study_spec.trials)
    assert sorted((p["lr"], p["optimizer"]) for p in points) == sorted(
        (lr, opt) for lr in (0.1, 0.03, 0.01) for opt in ("sgd", "adam")
    )
    assert all(p["epochs"] == 5 for p in points)


def test_median_pruner_arguments():
    pruner = pruner_for("pruner: {name: median, n_warmup_steps: 5}\n")
    assert type(pruner) is optuna.pruners.MedianPruner
    assert (pruner._n_warmup_steps, pruner._n_startup_trials, pruner._percentile) == (5, 5, 50.0)


def test_default_pruner_is_optunas_median():
    pruner = pruner_for("")
    assert type(pruner) is optuna.pruners.MedianPruner
    assert (pruner._n_startup_trials, pruner._n_warmup_steps, pruner._interval_steps) == (5, 0, 1)


def test_percentile_pruner_arguments():
    pruner = pruner_for("pruner: {name: percentile, percentile: 25, n_min_trials: 3}\n")
    assert type(pruner) is optuna.pruners.PercentilePruner
    assert (pruner._percentile, pruner._n_min_trials) == (25.0, 3)


def test_successive_halving_pruner_arguments():
    pruner = pruner_for("pruner: {name: successive_halving, min_resource: 2, "
                        "reduction_factor: 3}\n")
    assert type(pruner) is optuna.pruners.SuccessiveHalvingPruner
    assert (pruner._min_resource, pruner._reduction_factor) == (2, 3)
    assert pruner_for("pruner: {name: successive_halving}\n")._min_resource is None  # auto


def test_hyperband_pruner_arguments():
    pruner = pruner_for("pruner: {name: hyperband, min_resource: 2, max_resource: 20}\n")
    assert type(pruner) is optuna.pruners.HyperbandPruner
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (2, 20, 3)
    assert pruner_for("pruner: {name: hyperband}\n")._max_resource == "auto"


def test_threshold_pruner_arguments():
    pruner = pruner_for("pruner: {name: threshold, lower: 0.2, n_warmup_steps: 2}\n")
    assert type(pruner) is optuna.pruners.ThresholdPruner
    assert (pruner._lower, pruner._upper, pruner._n_warmup_steps) == (0.2, float("inf"), 2)


def test_pruner_none_is_optunas_nop_pruner():
    assert type(pruner_for("pruner: {name: none}\n")) is optuna.pruners.NopPruner


def test_multi_objective_study_gets_no_pruner_and_tpe():
    study_spec = spec("objective: {metric: [val_acc, val_loss]}\n" + RANGE_SPACE)
    assert type(build_pruner(study_spec)) is optuna.pruners.NopPruner
    assert type(build_sampler(study_spec)) is optuna.samplers.TPESampler
