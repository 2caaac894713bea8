"""Study files: loading, defaults, and the exact message of every broken rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.errors import SpecError, UsageError
from hpsearch.metrics import METRICS
from hpsearch.spec import (
    StudySpec,
    find_study_file,
    list_study_files,
    load_study_spec,
)
from hpsearch.spec.catalog import bundled_dir
from tests.spec.samples import OPTIMIZER_STUDY

OBJECTIVE = "objective: {metric: val_acc}\n"
SPACE = "space: {lr: {low: 1e-4, high: 1e-1, log: true}}\n"
METRIC_NAMES = ", ".join(METRICS)


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write `studies/NAME.yaml` under a temporary working directory; return its path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()

    def _write(text: str, name: str = "bad") -> Path:
        path = Path("studies") / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def load_text(write, text: str) -> StudySpec:
    return load_study_spec(write(text, "study"))


BAD_STUDIES = [
    (
        "unknown top-level key",
        OBJECTIVE + SPACE + "trails: 30\n",
        "trails: unknown key `trails`; fix: did you mean trials? use one of: description, "
        "phase, inherits, inherits_if_run, base, objective, eliminate, selection, precondition, "
        "baseline, keep_tolerance, peak_kept_within, follow, train_longer, few_images_per_class, sampler, pruner, "
        "trials, space, spaces, families",
    ),
    (
        "few_images_per_class without an augment axis",
        OBJECTIVE + SPACE + "few_images_per_class: 1000\n",
        "few_images_per_class: needs an `augment` axis in `space` (got 1000); fix: add "
        "`augment: {values: [none, crop]}` to `space`, or drop the field",
    ),
    (
        "unknown key inside a range",
        OBJECTIVE + "space: {lr: {low: 1e-4, high: 1e-1, lg: true}}\n",
        "space.lr.lg: unknown key `lg`; fix: did you mean log? use one of: type, low, high, "
        "log, step",
    ),
    (
        "trials not a number",
        OBJECTIVE + SPACE + "trials: many\n",
        "trials: must be an integer (got 'many'); fix: write an integer for `trials`",
    ),
    (
        "trials below one",
        OBJECTIVE + SPACE + "trials: 0\n",
        "trials: must be >= 1 (got 0); fix: use a value >= 1",
    ),
    (
        "bound not a number",
        OBJECTIVE + "space: {lr: {low: abc, high: 1e-1}}\n",
        "space.lr.low: must be a number (got 'abc'); fix: write a number for `low`",
    ),
    (
        "low above high",
        OBJECTIVE + "space: {lr: {low: 0.1, high: 0.01}}\n",
        "space.lr.low: must be <= high = 0.01 (got 0.1); fix: swap low and high",
    ),
    (
        "log with low zero",
        OBJECTIVE + "space: {lr: {low: 0, high: 0.1, log: true}}\n",
        "space.lr.low: must be > 0 with log: true (got 0); fix: use a positive low, or set "
        "log: false",
    ),
    (
        "log with a step",
        OBJECTIVE + "space: {lr: {low: 0.1, high: 1.0, step: 0.1, log: true}}\n",
        "space.lr.step: cannot be combined with log: true (got 0.1); fix: remove step, or set "
        "log: false",
    ),
    (
        "negative step",
        OBJECTIVE + "space: {batch_size: {low: 64, high: 512, step: -64}}\n",
        "space.batch_size.step: must be > 0 (got -64); fix: use a positive step, or remove it",
    ),
    (
        "empty choices",
        OBJECTIVE + "space: {optimizer: {choices: []}}\n",
        "space.optimizer.choices: must not be empty (got []); fix: list at least one choice",
    ),
    (
        "duplicate choice",
        OBJECTIVE + "space: {batch_size: {values: [64, 128, 64]}}\n",
        "space.batch_size.values.2: duplicate choice (got 64); fix: list each choice once",
    ),
    (
        "choice that is no valid value of the setting",
        OBJECTIVE + "space: {optimizer: {choices: [sgd, adamm]}}\n",
        "space.optimizer.choices.1: `optimizer` must be one of sgd, adam, adamw, rmsprop or an "
        "import path package.module:name (got 'adamm'); fix: did you mean adam, adamw? pick one",
    ),
    (
        "when branch naming no choice",
        OBJECTIVE + "space: {optimizer: {choices: [sgd, adam], when: {sgdd: {momentum: 0.9}}}}\n",
        "space.optimizer.when.sgdd: unknown choice `sgdd` for `optimizer`; fix: did you mean "
        "sgd? use one of: sgd, adam",
    ),
    (
        "unknown metric",
        "objective: {metric: val_accuracy}\n" + SPACE,
        f"objective.metric: unknown metric `val_accuracy`; fix: did you mean val_acc? use one "
        f"of: {METRIC_NAMES}",
    ),
    (
        "unknown direction",
        "objective: {metric: val_acc, direction: up}\n" + SPACE,
        "objective.direction: unknown direction `up`; fix: use one of: maximize, minimize",
    ),
    (
        "directions and metrics of different lengths",
        "objective: {metric: [val_acc, val_loss], direction: maximize}\n" + SPACE,
        "objective.direction: gives 1 direction(s) for 2 metric(s); fix: give one direction per "
        "metric, or leave `direction` out for their natural ones",
    ),
    (
        "unknown sampler",
        OBJECTIVE + SPACE + "sampler: {name: bayes}\n",
        "sampler.name: unknown sampler `bayes`; fix: did you mean cmaes? use one of: tpe, "
        "random, grid, cmaes, gp",
    ),
    (
        "unknown sampler argument",
        OBJECTIVE + SPACE + "sampler: {name: random, n_startup_trials: 5}\n",
        "sampler.n_startup_trials: unknown argument `n_startup_trials` for sampler `random`; "
        "fix: use one of: name, seed",
    ),
    (
        "group without multivariate",
        OBJECTIVE + SPACE + "sampler: {name: tpe, multivariate: false}\n",
        "sampler: group: true needs multivariate: true; fix: set multivariate: true or "
        "group: false",
    ),
    (
        "unknown pruner",
        OBJECTIVE + SPACE + "pruner: {name: medain}\n",
        "pruner.name: unknown pruner `medain`; fix: did you mean median? use one of: none, "
        "median, percentile, successive_halving, hyperband, threshold",
    ),
    (
        "unknown pruner argument",
        OBJECTIVE + SPACE + "pruner: {name: median, n_warmup_step: 5}\n",
        "pruner.n_warmup_step: unknown argument `n_warmup_step` for pruner `median`; fix: did "
        "you mean n_warmup_steps? use one of: name, n_startup_trials, n_warmup_steps, "
        "interval_steps, n_min_trials",
    ),
    (
        "percentile missing",
        OBJECTIVE + SPACE + "pruner: {name: percentile}\n",
        "pruner.percentile: is required; fix: add `percentile:`",
    ),
    (
        "percentile above 100",
        OBJECTIVE + SPACE + "pruner: {name: percentile, percentile: 120}\n",
        "pruner.percentile: must be <= 100.0 (got 120); fix: use a value <= 100.0",
    ),
    (
        "successive halving min_resource",
        OBJECTIVE + SPACE + "pruner: {name: successive_halving, min_resource: 0}\n",
        'pruner.min_resource: must be "auto" or an integer >= 1 (got 0); fix: write "auto" or '
        "a whole number of steps (epochs)",
    ),
    (
        "threshold without bounds",
        OBJECTIVE + SPACE + "pruner: {name: threshold}\n",
        "pruner: needs lower or upper; fix: give the worst acceptable value as `lower` "
        "(maximize) or `upper` (minimize)",
    ),
    (
        "invalid YAML",
        OBJECTIVE + "space:\n  lr: {low: 1\n  x: 2\n",
        "invalid YAML: expected ',' or '}', but got ':' (line 4, column 4); fix: check "
        "indentation, colons and quotes there",
    ),
    (
        "duplicate YAML key",
        OBJECTIVE + SPACE + "trials: 3\ntrials: 4\n",
        "invalid YAML: duplicate key `trials` on line 4; fix: keep one of the repeated keys",
    ),
    ("empty file", "# nothing yet\n", "is empty; fix: write at least `objective:` and `space:`"),
    (
        "not a mapping",
        "- lr\n",
        "must be a mapping of study keys (got ['lr']); fix: write at least `objective:` and "
        "`space:`",
    ),
    (
        "space missing",
        OBJECTIVE,
        "space: is required; fix: add `space: {lr: {type: float, low: 1.0e-4, high: 1.0e-1, "
        "log: true}}`",
    ),
    (
        "unknown parameter name",
        OBJECTIVE + "space: {lrr: {low: 1e-4, high: 1e-1}}\n",
        "space.lrr: unknown setting `lrr`; fix: did you mean lr?",
    ),
    (
        "selector named like a setting",
        OBJECTIVE + "space: {optimzer: {choices: [sgd], when: {sgd: {momentum: 0.9}}}}\n",
        "space.optimzer: unknown setting `optimzer`; fix: did you mean optimizer? a selector "
        "(a choice that is no setting) needs a name unlike any setting",
    ),
    (
        "float range for an int setting",
        OBJECTIVE + "space: {epochs: {type: float, low: 5, high: 50}}\n",
        "space.epochs.type: `epochs` is an int setting (got 'float'); fix: use type: int",
    ),
    (
        "fractional bound for an int setting",
        OBJECTIVE + "space: {epochs: {low: 5.5, high: 50}}\n",
        "space.epochs.low: must be an integer (got 5.5); fix: write an integer for `low`",
    ),
    (
        "range for a true/false setting",
        OBJECTIVE + "space: {nesterov: {low: 0, high: 1}}\n",
        "space.nesterov: `nesterov` is a true/false setting, not a number; fix: search it with "
        "`choices: [...]`, or fix it with `value: ...`",
    ),
    (
        "unknown parameter type",
        OBJECTIVE + "space: {lr: {type: floot, low: 0.1, high: 1.0}}\n",
        "space.lr.type: unknown parameter type `floot`; fix: did you mean float? use one of: "
        "float, int, categorical",
    ),
    (
        "fixed value of the wrong type",
        OBJECTIVE + "space: {lr: fast}\n",
        "space.lr: `lr` must be a number (got 'fast'); fix: write a number for `lr`",
    ),
    (
        "bare list",
        OBJECTIVE + "space: {lr: [0.1, 0.01]}\n",
        "space.lr: a bare list is ambiguous (got [0.1, 0.01]); fix: write `{values: [...]}` to "
        "search these values, or `{value: [...]}` to fix a list",
    ),
    (
        "setting twice on one path",
        OBJECTIVE + "space:\n  lr: 0.1\n  optimizer:\n    choices: [sgd]\n"
        "    when: {sgd: {lr: {low: 0.01, high: 1.0}}}\n",
        "space.optimizer.when.sgd.lr: `lr` is also set at space.lr; fix: set it in one place "
        "only, or in each branch instead",
    ),
    (
        "base unknown setting",
        OBJECTIVE + SPACE + "base: {epoch: 3}\n",
        "base.epoch: unknown setting `epoch`; fix: did you mean epochs, depth?",
    ),
    (
        "base wrong type",
        OBJECTIVE + SPACE + "base: {epochs: ten}\n",
        "base.epochs: `epochs` must be an integer (got 'ten'); fix: write an integer for "
        "`epochs`",
    ),
    (
        "base factory without module",
        OBJECTIVE + SPACE + "base: {model: {factory: build_net}}\n",
        'base.model.factory: must be an import path "module:function" (got \'build_net\'); '
        'fix: write e.g. factory: "mypkg.nets:build"',
    ),
    (
        "base and space set the same setting",
        OBJECTIVE + SPACE + "base: {lr: 0.1}\n",
        "space.lr: `lr` is also set in base; fix: set it in base or in space, not both",
    ),
    (
        "grid sampler with a range",
        OBJECTIVE + SPACE + "sampler: {name: grid}\n",
        "space.lr: the grid sampler cannot search a range; fix: use sampler tpe or random, or "
        "write the parameter as `values: [...]`",
    ),
    (
        "grid sampler with a range and a trial budget",
        OBJECTIVE + "space: {lr: {low: 0.01, high: 0.1}}\nsampler: {name: grid}\ntrials: 5\n",
        "space.lr: the grid sampler cannot search a range; fix: use sampler tpe or random, or "
        "write the parameter as `values: [...]`",
    ),
    (
        "grid sampler with when branches",
        OBJECTIVE + "sampler: {name: grid}\n"
        "space: {optimizer: {choices: [sgd, adam], when: {sgd: {momentum: 0.9}}}}\n",
        "space.optimizer: the grid sampler cannot search `when` branches; fix: use sampler tpe "
        "or random, or write the parameter as `values: [...]`",
    ),
    (
        "multi-objective with a pruner",
        "objective: {metric: [val_acc, val_loss]}\n" + SPACE + "pruner: {name: median}\n",
        "pruner.name: Optuna cannot prune a study with several metrics (got 'median'); fix: "
        "use `pruner: {name: none}`, or one metric",
    ),
    (
        "multi-objective with CMA-ES",
        "objective: {metric: [val_acc, val_loss]}\n" + SPACE + "sampler: {name: cmaes}\n",
        "sampler.name: CMA-ES optimizes a single metric (got 'cmaes'); fix: use sampler tpe, "
        "random or gp, or one metric",
    ),
    (
        "inherits not a list",
        OBJECTIVE + SPACE + "inherits: optimizer\n",
        "inherits: must be a list (got 'optimizer'); fix: write a list for `inherits`",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [case[1:] for case in BAD_STUDIES], ids=[case[0] for case in BAD_STUDIES]
)
def test_a_broken_rule_is_one_spec_error_with_file_field_value_and_fix(write, text, message):
    path = write(text)
    with pytest.raises(SpecError) as caught:
        load_study_spec(path)
    assert str(caught.value) == f"studies/bad.yaml: {message}"


def test_spec_error_carries_its_parts(write):
    with pytest.raises(SpecError) as caught:
        load_study_spec(write(OBJECTIVE + SPACE + "trials: many\n"))
    err = caught.value
    assert (err.file, err.field, err.value) == ("studies/bad.yaml", "trials", "many")
    assert err.exit_code == 2


def test_a_missing_file_is_a_spec_error(write):
    with pytest.raises(SpecError, match=r"^studies/nope\.yaml: cannot read the file"):
        load_study_spec("studies/nope.yaml")


def test_the_optimizer_study_loads_into_typed_objects(write):
    spec = load_study_spec(write(OPTIMIZER_STUDY, "optimizer"))
    assert spec.name == "optimizer"
    assert spec.path == Path("studies/optimizer.yaml")
    assert spec.description == "Optimizer and its learning rate (PROTOCOL.md phase 4)"
    assert spec.phase == "optimizer"
    assert spec.base == {"model": "mlp", "dataset": "digits", "epochs": 20, "batch_size": 300}
    assert (spec.objective.metrics, spec.objective.directions) == (["val_acc"], ["maximize"])
    assert (spec.sampler.name, spec.sampler.seed) == ("tpe", 0)
    assert spec.pruner.name == "median" and spec.pruner.args["n_warmup_steps"] == 5
    assert spec.trials == 30
    assert spec.space.sampled_settings() == {"optimizer", "lr", "momentum", "weight_decay"}
    assert spec.inherits == []


def test_only_objective_and_space_are_required(write):
    spec = load_text(write, OBJECTIVE + SPACE)
    assert (spec.description, spec.phase, spec.base, spec.inherits) == ("", None, {}, [])
    assert spec.trials == 20
    assert spec.sampler.name == "tpe" and spec.sampler.seed is None
    assert spec.sampler.args == {
        "n_startup_trials": 10, "multivariate": True, "group": True, "constant_liar": True
    }
    assert spec.pruner.name == "median"
    assert spec.pruner.args == {
        "n_startup_trials": 5, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1
    }


def test_empty_sections_mean_their_defaults(write):
    spec = load_text(write, OBJECTIVE + SPACE + "base:\n  # epochs: 3\nsampler:\npruner:\n")
    assert (spec.base, spec.sampler.name, spec.pruner.name) == ({}, "tpe", "median")


def test_numbers_are_read_as_people_write_them(write):
    spec = load_text(write, OBJECTIVE + SPACE)
    distribution = spec.space.distributions()["lr"]
    assert (distribution.low, distribution.high) == (1e-4, 1e-1)


def test_directions_default_to_each_metrics_natural_one(write):
    spec = load_text(write, "objective: {metric: [val_acc, val_loss]}\n" + SPACE)
    assert spec.objective.directions == ["maximize", "minimize"]


def test_several_metrics_without_a_pruner_get_none(write):
    spec = load_text(write, "objective: {metric: [val_acc, val_loss]}\n" + SPACE)
    assert spec.pruner.name == "none"


def test_a_grid_study_defaults_to_one_trial_per_grid_point(write):
    grid = "sampler: {name: grid}\nspace:\n  lr: {values: [0.1, 0.01]}\n"
    grid += "  batch_size: {values: [64, 128, 256]}\n"
    assert load_text(write, OBJECTIVE + grid).trials == 6
    assert load_text(write, OBJECTIVE + grid + "trials: 4\n").trials == 4


def test_inherits_is_a_list_of_study_names(write):
    spec = load_text(write, OBJECTIVE + SPACE + "inherits: [lr_adam, optimizer]\n")
    assert spec.inherits == ["lr_adam", "optimizer"]


def test_model_and_data_factories_expand_to_two_settings(write):
    base = (
        "base:\n"
        "  model_args.layers: 3\n"
        '  model: {factory: "mypkg.nets:build", args: {hidden: 64}}\n'
        '  data: {factory: "mypkg.data:load"}\n'
    )
    spec = load_text(write, OBJECTIVE + SPACE + base)
    assert spec.base == {
        "model": "mypkg.nets:build",
        "model_args": {"hidden": 64},
        "dataset": "mypkg.data:load",
        "dataset_args": {},
        "model_args.layers": 3,  # after the whole dict, so it is applied on top of it
    }
    assert list(spec.base)[-1] == "model_args.layers"


def test_a_plain_model_name_is_a_normal_setting(write):
    assert load_text(write, OBJECTIVE + SPACE + "base: {model: cnn}\n").base == {"model": "cnn"}


def test_model_factory_and_model_args_together_are_refused(write):
    base = 'base: {model: {factory: "m:f"}, model_args: {hidden: 3}}\n'
    with pytest.raises(SpecError) as caught:
        load_study_spec(write(OBJECTIVE + SPACE + base))
    assert str(caught.value) == (
        "studies/bad.yaml: base.model_args: `model_args` is also set by base.model; "
        "fix: set it in one place only"
    )


def test_fixed_values_merge_base_and_the_spaces_fixed_settings(write):
    text = OBJECTIVE + "base: {epochs: 5, model: mlp}\nspace:\n  width: 64\n  depth: {value: 2}\n"
    text += "  lr: {low: 0.01, high: 0.1}\n"
    spec = load_text(write, text)
    assert spec.fixed_values() == {"epochs": 5, "model": "mlp", "width": 64, "depth": 2}
    assert spec.space.sampled_settings() == {"lr"}


def test_find_study_file_by_name_yml_or_path(write, tmp_path):
    write(OBJECTIVE + SPACE, "optimizer")
    Path("studies/lr.yml").write_text(OBJECTIVE + SPACE)
    studies = Path("studies")
    assert find_study_file("optimizer", studies) == studies / "optimizer.yaml"
    assert find_study_file("lr", studies) == studies / "lr.yml"
    by_path = find_study_file("studies/optimizer.yaml", Path("elsewhere"))
    assert by_path == studies / "optimizer.yaml"
    assert list_study_files(studies) == [studies / "lr.yml", studies / "optimizer.yaml"]


def test_an_unknown_study_lists_yours_and_the_installed_ones(write):
    write(OBJECTIVE + SPACE, "my_search")
    with pytest.raises(UsageError) as caught:
        find_study_file("my_serch", Path("studies"))
    installed = [p.stem for p in list_study_files(bundled_dir())]
    assert str(caught.value) == (
        "studies: no study file `my_serch`; fix: did you mean my_search? available studies: "
        + ", ".join(sorted([*installed, "my_search"]))
    )


def test_an_empty_folder_still_finds_the_installed_phases(tmp_path):
    assert list_study_files(tmp_path / "missing") == []
    assert find_study_file("lr_adam", tmp_path) == bundled_dir() / "lr_adam.yaml"
    with pytest.raises(UsageError, match=r"no study file `x`; fix: available studies: architecture"):
        find_study_file("x", tmp_path)


def test_a_missing_studies_dir_is_refused(tmp_path):
    with pytest.raises(UsageError) as caught:
        find_study_file("lr_adam", tmp_path / "nowhere")
    assert str(caught.value) == (
        f"{tmp_path / 'nowhere'}: no such folder of study files; fix: create it, or pass an "
        "existing --studies-dir (or set HPSEARCH_STUDIES_DIR)"
    )
