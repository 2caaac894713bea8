"""The installed phase files made concrete for a user's model (adapt.py)."""

from __future__ import annotations

import pytest

from hpsearch.adapt import adapt, try_augmentation
from hpsearch.config import TrainConfig
from hpsearch.records import PhaseChoice
from hpsearch.spec import load_study_spec
from hpsearch.spec.catalog import bundled_dir
from hpsearch.train.contract import contract_for

FACTORY = '''
import hpsearch

@hpsearch.declare(space={"fc": {"type": "int", "low": 16, "high": 256},
                         "blocks": {"type": "int", "low": 1, "high": 3}})
def cnn(config, input_shape, num_classes, fc=64, blocks=2):
    return None

@hpsearch.declare(space={"fc": {"type": "int", "low": 16, "high": 256}}, honours=["norm"])
def normed(config, input_shape, num_classes, fc=64):
    return None
'''


@pytest.fixture(autouse=True)
def factories(tmp_path, monkeypatch):
    (tmp_path / "hp_adapt.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))


def adapted(phase: str, model: str):
    spec = load_study_spec(bundled_dir() / f"{phase}.yaml")
    config = TrainConfig(model=model)
    return adapt(spec, config, contract_for(config), lambda parent: None)


def test_the_architecture_phase_searches_the_declared_knobs():
    result = adapted("architecture", "hp_adapt:cnn")
    assert result.skip is None
    assert result.spec.space.sampled_settings() == {"model_args.fc", "model_args.blocks"}


def test_batchnorm_does_not_fall_back_to_the_declared_knobs():
    result = adapted("batchnorm", "hp_adapt:cnn")  # its knobs are ranges: a grid would fail
    assert result.skip == ("model `hp_adapt:cnn` honours none of the settings this phase "
                           "searches (norm): nothing to compare")
    assert not result.spec.space.sampled_settings()


def test_batchnorm_searches_norm_for_a_model_that_reads_it():
    result = adapted("batchnorm", "hp_adapt:normed")
    assert result.skip is None and result.spec.space.grid() == {"norm": ["batch", "layer"]}


def test_a_model_family_a_phase_has_no_space_for_skips_it():
    result = adapted("architecture", "torchvision:resnet18")
    assert result.skip == ("no search space for model family `torchvision` (model "
                           "`torchvision:resnet18`): this phase has nothing to search for it")


def test_regularization_drops_what_the_model_does_not_read():
    result = adapted("regularization", "hp_adapt:cnn")
    (regularizer,) = result.spec.space.params
    assert regularizer.choices == ("l1", "l2", "label_smoothing", "noise")
    assert result.not_searched == ["dropout"]


def test_the_setup_phase_still_runs_its_reference_trial_at_the_models_defaults():
    spec = load_study_spec(bundled_dir() / "setup.yaml")
    config = TrainConfig(fit="hp_adapt:cnn")  # a "hook" that reads no lr, augments nothing
    result = adapt(spec, config, contract_for(config), lambda parent: None)
    assert result.skip is None and result.spec.space.grid_size() == 1
    assert result.not_searched == ["lr", "augment"]


def test_a_refinement_around_a_skipped_parent_is_skipped():
    spec = load_study_spec(bundled_dir() / "lr_adam_refine.yaml")
    config = TrainConfig()
    skipped = PhaseChoice(trial=None, skipped=True, reason="skipped: nothing to compare")
    result = adapt(spec, config, contract_for(config), lambda parent: skipped)
    assert result.skip == ("it refines `lr` around study `lr_adam`, which was skipped "
                           "(skipped: nothing to compare)")


def family_choice(model: str, input_shape):
    spec = load_study_spec(bundled_dir() / "architecture.yaml")
    config = TrainConfig(model=model)
    shape = None if input_shape is None else (lambda: input_shape)
    return adapt(spec, config, contract_for(config), lambda parent: None, shape)


def test_the_architecture_phase_chooses_mlp_or_cnn_on_images():
    result = family_choice("mlp", (1, 28, 28))
    (model,) = result.spec.space.params
    assert (model.name, model.choices) == ("model", ("mlp", "cnn"))
    assert {p.name for p in model.branches["mlp"]} == {"depth", "width"}
    # The CNN brings its own Adam rate: the LR phases tuned the MLP's.
    assert {p.name for p in model.branches["cnn"]} == {
        "lr", "conv_blocks", "conv_width", "first_pool", "head"}


@pytest.mark.parametrize("model, shape", [
    ("mlp", (64,)),            # vectors: no CNN
    ("mlp", None),             # `--set model=mlp` pinned the family (preparation passes None)
    ("hp_adapt:cnn", (1, 28, 28)),  # a user's model searches its own knobs
])
def test_no_family_choice(model, shape):
    space = family_choice(model, shape).spec.space
    assert "model" not in space.sampled_settings()


def test_a_family_choice_needs_each_familys_space():
    from hpsearch.errors import SpecError
    from hpsearch.spec import parse_study_spec

    data = {"objective": {"metric": "best_val_acc"},
            "spaces": {"mlp": {"depth": {"values": [1, 2]}}}}
    with pytest.raises(SpecError, match=r"^x\.yaml: families\.1: has no space `spaces\.cnn`"):
        parse_study_spec({**data, "families": ["mlp", "cnn"]}, "x.yaml", name="x")
    with pytest.raises(SpecError, match=r"^x\.yaml: families\.0: unknown or repeated model "):
        parse_study_spec({**data, "families": ["resnet", "mlp"]}, "x.yaml", name="x")
    with pytest.raises(SpecError, match=r"^x\.yaml: families: must list two families or more"):
        parse_study_spec({**data, "families": ["mlp"]}, "x.yaml", name="x")


def splits(per_class: int, shape: tuple[int, ...], classes: int = 10):
    """Stand-in data: `per_class` training samples of each class, inputs of `shape`."""
    import torch

    from hpsearch.train.splits import DataSplits, TensorSplit

    y = torch.arange(classes).repeat(per_class)
    train = TensorSplit(torch.zeros(len(y), *shape), y)
    return DataSplits(train, train, None, classes, shape)


@pytest.mark.parametrize("per_class, shape, tried, line", [
    (300, (1, 28, 28), True, "augmentation tried: 300 training images per class, under 1,000 "
                             "[000]"),
    (5400, (1, 28, 28), False, "augmentation not tried: 5,400 training images per class "
                               "(few: under 1,000)"),
    (300, (64,), False, "augmentation not tried: the inputs are not images"),
])
def test_the_setup_phase_tries_augmentation_only_with_few_images_per_class(
        per_class, shape, tried, line):
    spec = load_study_spec(bundled_dir() / "setup.yaml")
    narrowed, said = try_augmentation(spec, {}, lambda: splits(per_class, shape))
    assert ("augment" in narrowed.space.sampled_settings()) is tried
    assert narrowed.trials == (2 if tried else 1)  # the reference, and it augmented
    assert said == line


def test_set_augment_pins_it_without_loading_the_data():
    spec = load_study_spec(bundled_dir() / "setup.yaml")
    narrowed, said = try_augmentation(spec, {"augment": "none"}, lambda: pytest.fail("loaded"))
    assert "augment" not in narrowed.space.sampled_settings()
    assert said == "augmentation pinned: --set augment=none"


def test_a_phase_without_few_images_per_class_keeps_its_augment_axis():
    spec = load_study_spec(bundled_dir() / "regularization.yaml")
    assert try_augmentation(spec, {}, lambda: pytest.fail("loaded")) == (spec, None)
