"""Search spaces: the space -> distribution table, conditional sampling, fixed values."""

from __future__ import annotations

import logging
import warnings

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FixedTrial

from hpsearch.errors import SpecError
from hpsearch.spec import SearchSpace, parse_space
from hpsearch.spec.yaml_loader import load_yaml_text
from tests.spec.samples import OPTIMIZER_SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)


REGULARIZER_SPACE = """
regularizer:
  choices: [none, l1, l2, dropout, label_smoothing]
  when:
    l1: {l1: {low: 1.0e-6, high: 1.0e-3, log: true}}
    l2: {weight_decay: {low: 1.0e-5, high: 1.0e-2, log: true}}
    dropout: {dropout: {low: 0.1, high: 0.5}}
    label_smoothing: {label_smoothing: {low: 0.01, high: 0.2}}
"""

NESTED_SPACE = """
optimizer:
  choices: [sgd, adam]
  when:
    sgd:
      lr: {low: 1.0e-2, high: 1.0e-1, log: true}
      scheduler:
        choices: [none, step]
        when:
          step:
            step_size: {low: 5, high: 30}
            gamma: {low: 0.1, high: 0.5}
    adam:
      lr: {low: 1.0e-4, high: 3.0e-3, log: true}
"""

LR_RANGES = {"sgd": (3e-3, 1e-1), "adam": (1e-4, 3e-3), "adamw": (1e-4, 3e-3)}


def space(text: str) -> SearchSpace:
    return parse_space(load_yaml_text(text), "studies/s.yaml")


Float, Int, Cat = FloatDistribution, IntDistribution, CategoricalDistribution

DISTRIBUTION_TABLE = [
    ("log float", "lr: {type: float, low: 1e-4, high: 1e-1, log: true}",
     {"lr": Float(1e-4, 1e-1, log=True)}),
    ("type from float bounds", "model_args.scale: {low: 0.5, high: 2}",
     {"model_args.scale": Float(0.5, 2.0)}),
    ("type from int bounds", "model_args.hidden: {low: 16, high: 256}",
     {"model_args.hidden": Int(16, 256)}),
    ("type from the setting", "warmup_epochs: {low: 0, high: 5}",
     {"warmup_epochs": Float(0.0, 5.0)}),
    ("stepped float", "dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}",
     {"dropout": Float(0.0, 0.5, step=0.1)}),
    ("int with step", "batch_size: {type: int, low: 64, high: 512, step: 64}",
     {"batch_size": Int(64, 512, step=64)}),
    ("log int", "width: {low: 16, high: 1024, log: true}", {"width": Int(16, 1024, log=True)}),
    ("categorical", "optimizer: {choices: [sgd, adam]}", {"optimizer": Cat(["sgd", "adam"])}),
    ("explicit categorical", "norm: {type: categorical, choices: [none, batch, layer]}",
     {"norm": Cat(["none", "batch", "layer"])}),
    ("values list", "batch_size: {values: [64, 128, 256]}", {"batch_size": Cat([64, 128, 256])}),
    ("boolean choices", "nesterov: {choices: [true, false]}",
     {"nesterov": Cat([True, False])}),
    ("fixed values sample nothing", "lr: 0.001\nwidth: {value: 64}", {}),
    ("conditional branches", OPTIMIZER_SPACE, {
        "optimizer": Cat(["sgd", "adam", "adamw"]),
        "lr[sgd]": Float(3e-3, 1e-1, log=True),
        "momentum[sgd]": Float(0.8, 0.99),
        "lr[adam]": Float(1e-4, 3e-3, log=True),
        "lr[adamw]": Float(1e-4, 3e-3, log=True),
        "weight_decay[adamw]": Float(1e-4, 1e-2, log=True),
    }),
    ("selector", REGULARIZER_SPACE, {
        "regularizer": Cat(["none", "l1", "l2", "dropout", "label_smoothing"]),
        "l1[l1]": Float(1e-6, 1e-3, log=True),
        "weight_decay[l2]": Float(1e-5, 1e-2, log=True),
        "dropout[dropout]": Float(0.1, 0.5),
        "label_smoothing[label_smoothing]": Float(0.01, 0.2),
    }),
    ("nested branches", NESTED_SPACE, {
        "optimizer": Cat(["sgd", "adam"]),
        "lr[sgd]": Float(1e-2, 1e-1, log=True),
        "scheduler[sgd]": Cat(["none", "step"]),
        "step_size[sgd/step]": Int(5, 30),
        "gamma[sgd/step]": Float(0.1, 0.5),
        "lr[adam]": Float(1e-4, 3e-3, log=True),
    }),
    ("branch named by a boolean", "nesterov: {choices: [true, false], when: {true: {momentum: "
     "{low: 0.8, high: 0.99}}}}",
     {"nesterov": Cat([True, False]), "momentum[true]": Float(0.8, 0.99)}),
    ("branch named by a number", "batch_size: {choices: [64, 512], when: {512: {lr: {low: 0.1, "
     "high: 0.4}}}}",
     {"batch_size": Cat([64, 512]), "lr[512]": Float(0.1, 0.4)}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in DISTRIBUTION_TABLE],
    ids=[row[0] for row in DISTRIBUTION_TABLE],
)
def test_space_to_distribution_table(text, expected):
    assert space(text).distributions() == expected


def test_suggest_returns_settings_of_the_active_branch_only():
    params = {"optimizer": "sgd", "lr[sgd]": 0.01, "momentum[sgd]": 0.9}
    assert space(OPTIMIZER_SPACE).suggest(FixedTrial(params)) == {
        "optimizer": "sgd", "lr": 0.01, "momentum": 0.9
    }


def test_suggest_includes_fixed_values_and_leaves_selectors_out():
    text = REGULARIZER_SPACE + "epochs: 30\n"
    params = {"regularizer": "l1", "l1[l1]": 1e-4}
    assert space(text).suggest(FixedTrial(params)) == {"l1": 1e-4, "epochs": 30}
    assert space(text).suggest(FixedTrial({"regularizer": "none"})) == {"epochs": 30}


def test_nested_branches_suggest_the_inner_branch():
    params = {"optimizer": "sgd", "lr[sgd]": 0.05, "scheduler[sgd]": "step",
              "step_size[sgd/step]": 10, "gamma[sgd/step]": 0.2}
    assert space(NESTED_SPACE).suggest(FixedTrial(params)) == {
        "optimizer": "sgd", "lr": 0.05, "scheduler": "step", "step_size": 10, "gamma": 0.2
    }


def test_sampled_and_fixed_settings():
    text = REGULARIZER_SPACE + "epochs: 30\nbatch_size: {values: [64, 128]}\n"
    parsed = space(text)
    assert parsed.fixed_values() == {"epochs": 30}
    assert parsed.sampled_settings() == {
        "l1", "weight_decay", "dropout", "label_smoothing", "batch_size"
    }


def test_a_fixed_value_inside_a_branch_is_not_fixed_for_the_study():
    parsed = space("optimizer: {choices: [sgd, adam], when: {sgd: {momentum: 0.9}}}")
    assert parsed.fixed_values() == {}
    assert parsed.sampled_settings() == {"optimizer", "momentum"}


def test_grid_axes_and_size():
    parsed = space("lr: {values: [0.1, 0.01]}\noptimizer: {choices: [sgd, adam, adamw]}\n"
                   "epochs: 5\n")
    assert parsed.grid() == {"lr": [0.1, 0.01], "optimizer": ["sgd", "adam", "adamw"]}
    assert parsed.grid_size() == 6


SPACE_ERRORS = [
    ("lr: {low: 0.1}", "space.lr.high: is required; fix: give both low and high"),
    ("lr: {low: 0.1, high: 1.0, log: 1}",
     "space.lr.log: must be true or false (got 1); fix: write true or false for `log`"),
    ("lr: {}", "space.lr: is not a parameter (got {}); fix: write {type: float, low: ..., "
     "high: ...}, {choices: [...]}, {values: [...]} or {value: ...}"),
    ("optimizer: {type: float, choices: [sgd]}",
     "space.optimizer.type: does not go with a list of choices (got 'float'); fix: remove "
     "`type` to search the listed choices, or give low and high for a range"),
    ("batch_size: {values: []}",
     "space.batch_size.values: must not be empty (got []); fix: list at least one choice"),
    ("batch_size: {values: [64], when: {64: {}}}",
     "space.batch_size.when: unknown key `when`; fix: use one of: values"),
    ("model_args.sizes: {choices: [[1, 2], [3]]}",
     "space.model_args.sizes.choices.0: must be a string, a number, true/false or null "
     "(got [1, 2]); fix: write a string, a number, true/false or null for `0`"),
    ("regularizer: {choices: [l1, l2]}", "space.regularizer: unknown setting `regularizer`; "
     "fix: run `hpsearch settings` to list them"),
    ("widht: 64", "space.widht: unknown setting `widht`; fix: did you mean width?"),
    ("batch: {values: [64]}", "space.batch: unknown setting `batch`; fix: did you mean "
     "batch_size?"),
    ("a: {choices: [x, y], when: {x: {lr: 0.1}}}\nb: {choices: [x], when: {x: {lr: 0.2}}}",
     "space.b.when.x.lr: `lr` is also set at space.a.when.x.lr; fix: set it in one place only, "
     "or in each branch instead"),
    ("optimizer: {choices: [sgd], when: {sgd: {optimizer: sgd}}}",
     "space.optimizer.when.sgd.optimizer: `optimizer` is also set at space.optimizer; fix: set "
     "it in one place only, or in each branch instead"),
    ("optimizer: {choices: [sgd], when: {sgd: {lr: {low: 0.1, high: 0.01}}}}",
     "space.optimizer.when.sgd.lr.low: must be <= high = 0.01 (got 0.1); fix: swap low and "
     "high"),
    ("optimizer: {choices: [sgd], when: [sgd]}",
     "space.optimizer.when: must be a mapping (got ['sgd']); fix: write it like {sgd: "
     "{momentum: {low: 0.8, high: 0.99}}}"),
]


@pytest.mark.parametrize(
    ("text", "message"), SPACE_ERRORS, ids=[m.split(": ")[0] for _, m in SPACE_ERRORS]
)
def test_space_errors(text, message):
    with pytest.raises(SpecError) as caught:
        space(text)
    assert str(caught.value) == f"studies/s.yaml: {message}"


def test_the_same_setting_in_exclusive_branches_is_fine():
    parsed = space("regularizer: {choices: [a, b], when: {a: {lr: 0.1}, b: {lr: 0.2}}}")
    assert parsed.suggest(FixedTrial({"regularizer": "b"})) == {"lr": 0.2}


def _run(parsed: SearchSpace, sampler: optuna.samplers.BaseSampler, n_trials: int = 30):
    """Optimize a toy objective; return each trial's suggested settings and its params."""
    seen: list[tuple[dict, dict]] = []

    def objective(trial: optuna.Trial) -> float:
        settings = parsed.suggest(trial)
        seen.append((settings, dict(trial.params)))
        return sum(v for v in settings.values() if isinstance(v, float))

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return seen


def _tpe(group: bool = True) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=0, multivariate=True, group=group,
                                          n_startup_trials=10)


def test_tpe_samples_each_optimizer_branch_with_its_own_ranges():
    seen = _run(space(OPTIMIZER_SPACE), _tpe())
    assert {s["optimizer"] for s, _ in seen} == {"sgd", "adam", "adamw"}
    for settings, params in seen:
        choice = settings["optimizer"]
        assert ("momentum" in settings) == (choice == "sgd")
        assert ("weight_decay" in settings) == (choice == "adamw")
        low, high = LR_RANGES[choice]
        assert low <= settings["lr"] <= high
        assert f"lr[{choice}]" in params and "lr" not in params


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _independent_calls(sampler: optuna.samplers.BaseSampler, after_trial: int) -> list[str]:
    """Spy on the sampler: names sampled independently once the startup trials are done."""
    calls: list[str] = []
    original = sampler.sample_independent

    def spy(study, trial, name, distribution):
        if trial.number >= after_trial:
            calls.append(name)
        return original(study, trial, name, distribution)

    sampler.sample_independent = spy
    return calls


def test_grouped_tpe_models_every_branch_without_independent_fallback():
    sampler = _tpe(group=True)
    calls = _independent_calls(sampler, after_trial=10)
    recorder = _Recorder()
    logging.getLogger("optuna").addHandler(recorder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _run(space(OPTIMIZER_SPACE), sampler)
    finally:
        logging.getLogger("optuna").removeHandler(recorder)
    assert calls == []
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in recorder.records] == []


def test_without_group_tpe_falls_back_to_independent_sampling():
    # Why `group: true` is the default: the plain multivariate TPE only models the params
    # every trial shares, so branch parameters are sampled one by one.
    sampler = _tpe(group=False)
    calls = _independent_calls(sampler, after_trial=10)
    _run(space(OPTIMIZER_SPACE), sampler)
    assert calls and set(calls) <= {"lr[sgd]", "momentum[sgd]", "lr[adam]", "lr[adamw]",
                                     "weight_decay[adamw]"}


def test_regularizer_selector_sets_only_the_chosen_strength():
    strengths = {"l1", "weight_decay", "dropout", "label_smoothing"}
    seen = _run(space(REGULARIZER_SPACE), _tpe(), n_trials=40)
    choices = {params["regularizer"] for _, params in seen}
    assert choices == {"none", "l1", "l2", "dropout", "label_smoothing"}
    for settings, params in seen:
        assert "regularizer" not in settings
        chosen = params["regularizer"]
        expected = {"none": set(), "l1": {"l1"}, "l2": {"weight_decay"},
                    "dropout": {"dropout"}, "label_smoothing": {"label_smoothing"}}[chosen]
        assert set(settings) & strengths == expected


def test_nested_branches_sample_with_a_real_study():
    seen = _run(space(NESTED_SPACE), _tpe(), n_trials=30)
    for settings, params in seen:
        if settings["optimizer"] == "adam":
            assert set(settings) == {"optimizer", "lr"}
        elif settings["scheduler"] == "step":
            assert 5 <= settings["step_size"] <= 30 and 0.1 <= settings["gamma"] <= 0.5
            assert {"step_size[sgd/step]", "gamma[sgd/step]"} <= set(params)
        else:
            assert set(settings) == {"optimizer", "lr", "scheduler"}
    assert {s.get("scheduler") for s, _ in seen} == {None, "none", "step"}


COORDINATE_SPACE = """
lr: {values: [0.0005, 0.001, 0.002]}
width: {type: int, low: 50, high: 400, step: 50}
optimizer:
  choices: [sgd, adam]
  when:
    sgd: {momentum: {low: 0.8, high: 0.99}}
"""


def test_coordinates_place_a_configuration_in_the_space_along_its_branch():
    config = {"lr": 0.001, "width": 100, "optimizer": "sgd", "momentum": 0.9, "epochs": 20}
    assert space(COORDINATE_SPACE).coordinates(config) == {
        "lr": 0.001, "width": 100, "optimizer": "sgd", "momentum[sgd]": 0.9}
    adam = {"lr": 0.001, "width": 100, "optimizer": "adam", "momentum": 0.9}
    assert space(COORDINATE_SPACE).coordinates(adam) == {
        "lr": 0.001, "width": 100, "optimizer": "adam"}  # sgd's momentum is not on its path


@pytest.mark.parametrize("change", [
    {"lr": 0.003},  # not one of the values
    {"width": 125},  # off the step
    {"width": 800},  # out of the range
    {"momentum": 0.5},  # out of the active branch's range
    {"optimizer": "adamw"},  # no such choice
])
def test_no_coordinates_for_a_configuration_outside_the_space(change):
    config = {"lr": 0.001, "width": 100, "optimizer": "sgd", "momentum": 0.9, **change}
    assert space(COORDINATE_SPACE).coordinates(config) is None


def test_no_coordinates_through_a_selector():
    # `regularizer` is no setting: no configuration records which branch it took
    config = {"l1": 0.0, "weight_decay": None, "dropout": 0.0, "label_smoothing": 0.0}
    assert space(REGULARIZER_SPACE).coordinates(config) is None
