"""`spaces:` (one space per model family), model families, and choosing a study's space."""

from __future__ import annotations

import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FixedTrial

from hpsearch.errors import SpecError, UsageError
from hpsearch.spec import (
    MODEL_FAMILIES,
    MissingSpace,
    StudySpec,
    build_sampler,
    parse_study_spec,
)
from hpsearch.spec.yaml_loader import load_yaml_text

OBJECTIVE = "objective: {metric: best_val_acc}\n"
SPACE = "space: {lr: {values: [0.1, 0.01]}}\n"
# PROTOCOL.md phase 3: the architecture knobs differ by model family [000].
ARCHITECTURE = OBJECTIVE + """\
base: {epochs: 20}
sampler: {name: grid}
spaces:
  mlp:
    depth: {values: [2, 3, 4]}
  cnn:
    conv_blocks: {values: [2, 3, 4]}
    conv_width: {values: [32, 48, 64]}   # 64/128/256 -> 32/64/128 or 48/96/192 [000]
    head: mlp
  torchvision:
    batch_size: {values: [64, 128]}
"""
# The architecture phase searches the knobs a user's model declares; other phases do not.
DECLARING = ARCHITECTURE + "  factory: declared\n"


def spec(text: str) -> StudySpec:
    return parse_study_spec(load_yaml_text(text), "studies/s.yaml", "s")


@pytest.mark.parametrize(
    ("model", "family"),
    [("mlp", "mlp"), ("cnn", "cnn"), ("torchvision:resnet18", "torchvision"),
     ("torchvision:vit_b_16", "torchvision"), ("tiny", "factory"),
     ("mypkg.nets:build", "factory"), ("torchvision", "factory"), ("mlp2", "factory")],
)
def test_model_family_table(model, family):
    assert StudySpec.model_family(model) == family
    assert family in MODEL_FAMILIES


def test_every_space_of_spaces_is_parsed_and_none_is_chosen_yet():
    parsed = spec(ARCHITECTURE)
    assert set(parsed.spaces) == {"mlp", "cnn", "torchvision"}
    assert parsed.space is None
    assert parsed.trials is None  # a grid's size depends on the space chosen
    assert parsed.spaces["cnn"].grid_size() == 9


@pytest.mark.parametrize(
    ("model", "grid", "trials"),
    [
        ("mlp", {"depth": [2, 3, 4]}, 3),
        ("cnn", {"conv_blocks": [2, 3, 4], "conv_width": [32, 48, 64]}, 9),
        ("torchvision:resnet18", {"batch_size": [64, 128]}, 2),
    ],
)
def test_with_space_for_picks_the_family_space_and_its_grid_budget(model, grid, trials):
    chosen = spec(ARCHITECTURE).with_space_for(model)
    assert chosen.space.grid() == grid
    assert chosen.trials == trials
    assert build_sampler(chosen)._search_space == grid


def test_a_declared_trials_budget_survives_the_choice():
    assert spec(ARCHITECTURE + "trials: 5\n").with_space_for("cnn").trials == 5


def test_a_non_grid_spaces_study_keeps_the_default_budget():
    text = ARCHITECTURE.replace("sampler: {name: grid}\n", "")
    assert spec(text).trials == 20
    assert spec(text).with_space_for("cnn").trials == 20


def test_fixed_values_use_the_chosen_space():
    chosen = spec(ARCHITECTURE).with_space_for("cnn")
    assert chosen.fixed_values() == {"epochs": 20, "head": "mlp"}
    assert spec(ARCHITECTURE).with_space_for("mlp").fixed_values() == {"epochs": 20}


def test_the_choice_can_be_made_again_for_another_model():
    chosen = spec(ARCHITECTURE).with_space_for("cnn").with_space_for("mlp")
    assert chosen.space.grid() == {"depth": [2, 3, 4]} and chosen.trials == 3


def test_a_single_space_file_uses_its_space_for_every_model():
    parsed = spec(OBJECTIVE + SPACE + "sampler: {name: grid}\n")
    assert parsed.trials == 2
    for model in ("mlp", "cnn", "torchvision:resnet18", "tiny"):
        chosen = parsed.with_space_for(model, {"hidden": {"values": [8]}})
        assert chosen.space == parsed.space and chosen.trials == 2


DECLARED = {
    "hidden": {"type": "int", "low": 16, "high": 256},
    "act": {"choices": ["relu", "gelu"], "when": {"gelu": {"scale": {"low": 0.5, "high": 2.0}}}},
}


def test_a_factory_model_uses_the_knobs_it_declares_as_model_args():
    text = DECLARING.replace("sampler: {name: grid}\n", "")
    chosen = spec(text).with_space_for("tiny", DECLARED)
    assert chosen.space.distributions() == {
        "model_args.hidden": IntDistribution(16, 256),
        "model_args.act": CategoricalDistribution(["relu", "gelu"]),
        "model_args.scale[gelu]": FloatDistribution(0.5, 2.0),
    }
    trial = FixedTrial({"model_args.hidden": 64, "model_args.act": "gelu",
                        "model_args.scale[gelu]": 1.5})
    assert chosen.space.suggest(trial) == {
        "model_args.hidden": 64, "model_args.act": "gelu", "model_args.scale": 1.5
    }


def test_a_written_factory_space_is_searched_as_written():
    text = ARCHITECTURE + "  factory:\n    model_args.hidden: {values: [8, 16]}\n"
    chosen = spec(text).with_space_for("mypkg.nets:build", DECLARED)
    assert chosen.space.grid() == {"model_args.hidden": [8, 16]}


def test_declared_knobs_are_searched_only_where_the_file_asks_for_them():
    with pytest.raises(MissingSpace) as caught:  # a batchnorm-like phase: no `declared`
        spec(ARCHITECTURE).with_space_for("tiny", DECLARED)
    assert caught.value.reason == "no search space for model family `factory` (model `tiny`)"


def test_asking_for_declared_knobs_of_a_model_that_declares_none():
    with pytest.raises(MissingSpace) as caught:
        spec(DECLARING).with_space_for("mypkg.nets:build", None)
    assert caught.value.reason == "model `mypkg.nets:build` declares no architecture knobs to search"


def test_a_declared_grid_sets_the_grid_budget():
    chosen = spec(DECLARING).with_space_for("tiny", {"hidden": {"values": [8, 16, 32]}})
    assert chosen.trials == 3


CHOICE_ERRORS = [
    ("cnn", None, OBJECTIVE + "spaces: {mlp: {depth: {values: [2, 3]}}}\n",
     "studies/s.yaml: spaces: no search space for model family `cnn` (model `cnn`); fix: add "
     "`spaces.cnn`; this study has spaces for: mlp"),
    ("tiny", None, ARCHITECTURE,
     "studies/s.yaml: spaces: no search space for model family `factory` (model `tiny`); fix: "
     "add `spaces.factory` (or `spaces.factory: declared` to search the knobs the model "
     "declares); this study has spaces for: mlp, cnn, torchvision"),
    ("tiny", {"hidden": {"low": 256, "high": 16}}, DECLARING,
     "studies/s.yaml: model `tiny`: search_space.hidden.low: must be <= high = 16 (got 256); "
     "fix: swap low and high"),
    ("tiny", {"hidden": {"low": 16, "high": 256}}, DECLARING,
     "studies/s.yaml: model `tiny`: search_space.hidden: the grid sampler cannot search a "
     "range; fix: use sampler tpe or random, or write the parameter as `values: [...]`"),
    ("tiny", {"hidden": 64}, DECLARING.replace("base: {epochs: 20}",
                                               "base: {model_args.hidden: 32}"),
     "studies/s.yaml: model `tiny`: search_space.hidden: `model_args.hidden` is also set in "
     "base; fix: set it in base or in space, not both"),
    ("tiny", ["hidden"], DECLARING,
     "studies/s.yaml: model `tiny`: search_space: must be a mapping (got ['hidden']); fix: "
     "write it like {lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}"),
]


@pytest.mark.parametrize(
    ("model", "declared", "text", "message"), CHOICE_ERRORS,
    ids=["missing family", "missing factory", "bad declared", "declared range on a grid",
         "declared knob in base", "declared not a mapping"],
)
def test_choosing_a_space_errors(model, declared, text, message):
    with pytest.raises(SpecError) as caught:
        spec(text).with_space_for(model, declared)
    assert str(caught.value) == message


@pytest.mark.parametrize("use", [lambda s: s.fixed_values(), build_sampler,
                                 lambda s: s.chosen_space()],
                         ids=["fixed_values", "build_sampler", "chosen_space"])
def test_a_spaces_study_must_choose_before_use(use):
    with pytest.raises(UsageError) as caught:
        use(spec(ARCHITECTURE))
    assert str(caught.value) == (
        "studies/s.yaml: spaces: no search space chosen yet; fix: call with_space_for(model) "
        "first: the space depends on the model family"
    )


def test_with_space_recomputes_a_grid_budget_and_checks_base():
    parsed = spec(OBJECTIVE + SPACE + "sampler: {name: grid}\nbase: {epochs: 5}\n")
    wider = parsed.with_space(parsed.space.replace("lr", {"values": [0.1, 0.03, 0.01]}))
    assert wider.trials == 3 and parsed.trials == 2
    with pytest.raises(SpecError) as caught:
        parsed.with_space(parsed.space.replace("epochs", {"values": [5, 10]}))
    assert str(caught.value) == (
        "studies/s.yaml: space.epochs: `epochs` is also set in base; fix: set it in base or in "
        "space, not both"
    )


SPACES_ERRORS = [
    (SPACE + "spaces: {mlp: {depth: 2}}\n",
     "spaces: cannot be combined with `space`; fix: keep `space` for one space for every "
     "model, or `spaces` for one per model family"),
    ("",
     "space: is required; fix: add `space: {lr: {type: float, low: 1.0e-4, high: 1.0e-1, "
     "log: true}}`"),
    ("spaces: {mlp: {depth: 2}, cnnn: {depth: 2}}\n",
     "spaces.cnnn: unknown model family `cnnn`; fix: did you mean cnn? use one of: mlp, cnn, "
     "torchvision, factory"),
    ("spaces: {}\n",
     "spaces: must not be empty (got {}); fix: give a space for at least one of: mlp, cnn, "
     "torchvision, factory"),
    ("spaces: [mlp]\n",
     "spaces: must be a mapping (got ['mlp']); fix: write it like {mlp: {width: {values: "
     "[64, 128]}}, cnn: {depth: {values: [2, 3, 4]}}}"),
    ("spaces: {mlp: {depth: 2}, cnn: {conv_blocks: {values: [2, 3]}, conv_blockz: 3}}\n",
     "spaces.cnn.conv_blockz: unknown setting `conv_blockz`; fix: did you mean conv_blocks, "
     "conv_norm?"),
    ("spaces: {cnn: {conv_blocks: {low: 4, high: 2}}}\n",
     "spaces.cnn.conv_blocks.low: must be <= high = 2 (got 4); fix: swap low and high"),
    ("spaces: {mlp: {depth: {values: [2]}}, cnn: {lr: {low: 0.01, high: 0.1}}}\n"
     "sampler: {name: grid}\n",
     "spaces.cnn.lr: the grid sampler cannot search a range; fix: use sampler tpe or random, "
     "or write the parameter as `values: [...]`"),
    ("spaces: {cnn: {epochs: {values: [5, 10]}}}\nbase: {epochs: 3}\n",
     "spaces.cnn.epochs: `epochs` is also set in base; fix: set it in base or in space, not "
     "both"),
    ("spaces: {mlp: {lr: {refine: lr_adam, factors: [0.5, 0]}}}\n",
     "spaces.mlp.lr.factors.1: must be > 0 (got 0); fix: use positive factors: each "
     "multiplies the chosen value"),
]


@pytest.mark.parametrize(
    ("text", "message"), SPACES_ERRORS, ids=[m.split(": ")[0] for _, m in SPACES_ERRORS]
)
def test_spaces_errors(text, message):
    with pytest.raises(SpecError) as caught:
        spec(OBJECTIVE + text)
    assert str(caught.value) == f"studies/s.yaml: {message}"
