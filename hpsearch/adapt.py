"""A study file made concrete for one model, and the checks of a request against it.

One study file serves every model: `spaces:` gives one space per model family and
`factory: declared` the knobs a user's model declares (only the architecture phase asks for
them); a protocol phase then searches only the settings the model honours
(train/contract.py) and is skipped, with the reason stored, when nothing of its search is
left. A user's own study (no `phase:`) that searches what its model ignores is refused
instead: the trials would differ in name only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, SpecError, UsageError
from hpsearch.metrics import METRICS
from hpsearch.records import PhaseChoice
from hpsearch.spec import MissingSpace, SearchSpace, StudySpec
from hpsearch.spec._params import walk
from hpsearch.spec._refine import MAX_EDGE_STEPS
from hpsearch.train.contract import Contract, contract_for
from hpsearch.train.losses import CUSTOM, REGRESSION, task_of
from hpsearch.train.registry import declared_space, resolve_factory
from hpsearch.train.splits import DataSplits, TensorSplit

Chosen = Callable[[str], PhaseChoice | None]  # parent study name -> its stored choice


@dataclass
class Adapted:
    """The spec for this model, or why the phase has nothing to do for it."""

    spec: StudySpec
    skip: str | None = None
    not_searched: list[str] = field(default_factory=list)  # settings the model ignores
    augmentation: str | None = None  # whether the `augment` axis is tried, and why


def adapt(
    spec: StudySpec, config: TrainConfig, contract: Contract, chosen: Chosen,
    input_shape: Callable[[], tuple[int, ...]] | None = None,
) -> Adapted:
    """The space for `config.model`, narrowed to what it honours (protocol phases) or checked
    against it (the user's studies), refinements resolved around the parents' choices.

    A file with `families: [mlp, cnn]` chooses the family too when the model is one of them
    and the inputs are images (`input_shape()`: C, H, W): the protocol's first source tunes
    CNNs [000]. Both are hpsearch's own models, each honouring its own knobs."""
    if spec.choosing_family(config.model) and input_shape is not None \
            and len(input_shape()) == 3:
        return Adapted(spec.with_space(spec.family_space))
    try:
        spec = spec.with_space_for(config.model, _declared(spec, config.model))
    except MissingSpace as missing:
        if spec.phase is None:
            raise
        return Adapted(spec.with_space(SearchSpace((), spec.file)), f"{missing.reason}: "
                       "this phase has nothing to search for it")
    if spec.follow:
        spec = spec.following(config.to_dict())
    adapted = (_narrowed(spec, contract) if spec.phase
               else Adapted(_checked(spec, contract, config)))
    if adapted.skip is None and adapted.spec.space.refinements():
        return _refined(adapted, chosen)
    return adapted


def _declared(spec: StudySpec, model: str) -> dict | None:
    """The knobs the model declares, looked up only when the study asks for them."""
    if not spec.uses_declared or StudySpec.model_family(model) != "factory":
        return None
    return declared_space(resolve_factory(model, "model", f"{spec.file}: base.model"))


def _narrowed(spec: StudySpec, contract: Contract) -> Adapted:
    space, dropped = spec.space.restricted(contract.honoured)
    narrowed = spec.with_space(space)
    if dropped and not space.sampled_settings() and _compares(spec):
        return Adapted(narrowed, f"{contract.subject} honours none of the settings this phase "
                       f"searches ({', '.join(dropped)}): nothing to compare", dropped)
    return Adapted(narrowed, None, dropped)


def _compares(spec: StudySpec) -> bool:
    """True when the file's search compares configurations. The setup phase's reference
    trial (and any one-point grid) still runs, at the model's own defaults."""
    one_point = spec.sampler.name == "grid" and spec.space.grid_size() == 1
    return spec.phase != "setup" and not one_point


def _checked(spec: StudySpec, contract: Contract, config: TrainConfig) -> StudySpec:
    _check_params(spec.space.params, contract, config, spec.file)
    for key in spec.base:
        if not contract.honoured(key):
            raise SpecError(spec.file, f"base.{key}", contract.refusal(key))
    return spec


def _check_params(params, contract: Contract, config: TrainConfig, file: str) -> None:
    """Every node honoured; the branches of a `model` choice by the model they pick (a flat
    search over MLP or CNN gives the CNN's knobs under `when: {cnn: ...}`)."""
    for param in params:
        if not getattr(param, "selector", False) and not contract.honoured(param.name):
            raise SpecError(file, param.field, contract.refusal(param.name))
        for choice, branch in getattr(param, "branches", {}).items():
            picked = contract
            if param.name == "model":
                picked = contract_for(replace(config, model=choice), f"{file}: {param.field}")
            _check_params(branch, picked, config, file)


def _refined(adapted: Adapted, chosen: Chosen) -> Adapted:
    spec = adapted.spec
    for refinement in spec.space.refinements():
        choice = chosen(refinement.parent)
        if choice is not None and choice.skipped:
            adapted.skip = (f"it refines `{refinement.setting}` around study "
                            f"`{refinement.parent}`, which was skipped ({choice.reason})")
            return adapted

    def value(parent: str, setting: str) -> Any:
        choice = chosen(parent)
        if choice is None or setting not in choice.config:
            raise UsageError(
                f"{spec.path}: space.{setting}: refines `{parent}`, which has no chosen trial "
                f"yet; fix: run `hpsearch run --study {parent}` first"
            )
        return choice.config[setting]

    # A grid may extend at its edges (protocol/edges.py): its refine nodes' ranges hold the
    # values that far beyond the grid from the first trial on.
    edge_steps = MAX_EDGE_STEPS if spec.sampler.name == "grid" else 0
    adapted.spec = spec.with_space(spec.space.resolve_refinements(value, edge_steps))
    return adapted


def try_augmentation(
    spec: StudySpec, overrides: Mapping[str, Any], data: Callable[[], DataSplits],
) -> tuple[StudySpec, str | None]:
    """PROTOCOL.md phase 1: "few images per class -> data augmentation at once" [000].

    A phase with `few_images_per_class: N` tries its `augment` values only on image data
    (C, H, W) with fewer than N training images per class; otherwise, or when `--set augment`
    pins it, the axis is dropped and the phase runs without it. Returns the spec and a line
    saying which, with the count. The selection then keeps augmentation only where it wins:
    a translation that helps 28x28 digits wrecks 8x8 ones (the sources name no threshold).
    """
    few = spec.few_images_per_class
    if few is None or spec.space is None or "augment" not in spec.space.sampled_settings():
        return spec, None
    if "augment" in overrides:
        return _without_augment(spec), f"augmentation pinned: --set augment={overrides['augment']}"
    splits = data()
    per_class = len(splits.train) / max(1, splits.num_classes)
    counted = f"{per_class:,.0f} training images per class"
    if len(splits.input_shape) != 3:
        return _without_augment(spec), "augmentation not tried: the inputs are not images"
    if per_class >= few:
        return _without_augment(spec), f"augmentation not tried: {counted} (few: under {few:,})"
    return spec, f"augmentation tried: {counted}, under {few:,} [000]"


def without_pinned_augment(spec: StudySpec, overrides: Mapping[str, Any]) -> StudySpec:
    """The spec without its `augment` axis when `--set augment` pins what the axis tries."""
    if spec.few_images_per_class is None or "augment" not in overrides or spec.space is None:
        return spec
    return _without_augment(spec)


def _without_augment(spec: StudySpec) -> StudySpec:
    space, _ = spec.space.restricted(lambda setting: setting != "augment")
    return spec.with_space(space)


def check_overrides(spec: StudySpec, overrides: Mapping[str, Any], contract: Contract) -> None:
    """`--set` may fix what the study does not search, and only what reaches the model."""
    refuse_searched(spec, overrides)
    for key, value in overrides.items():
        if not contract.honoured(key):
            raise ConfigError(f"--set {key}={value}: {contract.refusal(key)}")


def refuse_searched(spec: StudySpec, overrides: Mapping[str, Any]) -> None:
    """A `--set` of a setting the space searches would train every trial at the fixed value
    while Optuna records (and TPE learns from) the sampled one: refuse it."""
    sampled = spec.chosen_space().sampled_settings()
    searched = {p.name: p.field for p in walk(spec.chosen_space().params) if p.name in sampled}
    for key, value in overrides.items():
        clash = next((name for name in searched
                      if name == key or name.partition(".")[0] == key), None)
        if clash is not None:
            raise UsageError(
                f"--set {key}={value}: study `{spec.name}` searches `{clash}` "
                f"({spec.file}: {searched[clash]}): every trial would train at {value!r} "
                f"while Optuna records another value; fix: drop --set {key}, or run a copy "
                f"of the study file without `{clash}` in its space under another --name"
            )


def searched_for(spec: StudySpec, model: str) -> StudySpec | None:
    """The spec with its space for `model` (unrefined), or None when it has none."""
    try:
        return spec.with_space_for(model, _declared(spec, model))
    except MissingSpace:
        return None


def check_task(spec: StudySpec, config: TrainConfig, data: Any) -> None:
    """A study whose objective or selection reads accuracy cannot run on a task without it."""
    if _has_accuracy(config, data) is not False:
        return
    names = [("objective.metric", m) for m in spec.objective.metrics]
    names += [(f"selection.{i}.criterion", s.criterion) for i, s in enumerate(spec.selection)]
    for where, metric in names:
        if METRICS[metric].needs_accuracy:
            loss_based = ", ".join(m for m, d in METRICS.items() if not d.needs_accuracy
                                   and "loss" in m)
            phase = (" (a protocol phase: override it with a study file of the same name in "
                     "your studies/ folder)") if spec.phase else ""
            raise SpecError(spec.file, where,
                            f"`{metric}` needs accuracy, which loss `{config.loss}` does not give",
                            None, f"select on a loss-based metric ({loss_based}){phase}")


def _has_accuracy(config: TrainConfig, data: Any) -> bool | None:
    """False for a regression loss, or a custom loss on targets that are no class indices;
    None when only the trained run can tell (a fit hook, Lightning, a Dataset)."""
    task = task_of(config)
    if task != CUSTOM:
        return task != REGRESSION
    train = data.train if isinstance(data, DataSplits) and config.fit is None else None
    if not isinstance(train, TensorSplit):
        return None
    return train.y.dim() == 1 and not train.y.is_floating_point()
