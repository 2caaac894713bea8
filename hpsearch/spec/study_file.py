"""Study files (`studies/NAME.yaml`): find them, load them, validate them into a `StudySpec`.

A study file is data (STYLE.md, Hydra's sweeper): one tuning phase as an Optuna study.
Only `objective` and `space` (or `spaces`, one per model family) are required:

    description: Optimizer and its learning rate (PROTOCOL.md phase 4)
    phase: optimizer
    base: {model: mlp, dataset: digits, epochs: 20, batch_size: 300}
    objective: {metric: val_acc, direction: maximize}
    sampler: {name: tpe, seed: 0}
    pruner: {name: median, n_warmup_steps: 5}
    trials: 30
    space: {optimizer: {choices: [sgd, adam], when: {sgd: {momentum: 0.9}}}}

The protocol fields (PROTOCOL.md) say how the phase picks its winner:
    eliminate: [diverged, oscillating]      lr_verdict reasons that prune a trial
    selection: [{criterion: best_val_acc, tolerance: 0.005}, {criterion: val_loss_at_peak}]
    precondition: overfits                  none | overfits | sound
    baseline: true                          the inherited configuration runs unchanged
    keep_tolerance: 0.002                   a technique must beat the baseline by more
    peak_kept_within: 0.002                 ...and keep its peak validation accuracy
                                            (at most this far below the baseline's)
    follow: [optimizer]                     categoricals fixed to the inherited value:
                                            only that choice's branch is searched
    train_longer: {factor: 2, max_epochs: 80, patience: 10}
                                            more epochs when the inherited choice is
                                            undertrained, early stopping on a plateau
    inherits_if_run: [setup]                parents whose choice is used once they have
                                            run; before that the phase starts from base
    few_images_per_class: 1000              the `augment` axis is tried only on image
                                            data with fewer training images per class

Every problem is ONE `SpecError` naming the file, the field, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hpsearch.errors import SpecError, UsageError, format_problem
from hpsearch.spec import _params
from hpsearch.spec._families import (
    declared_space,
    missing_family,
    model_family,
    no_declared_knobs,
    parse_family_choice,
    parse_spaces,
)
from hpsearch.spec._messages import check_keys, validate_model
from hpsearch.spec._protocol_fields import (
    SelectionSpec,
    TrainLongerSpec,
    parse_eliminate,
    parse_follow,
    parse_peak_kept_within,
    parse_precondition,
    parse_selection,
    parse_train_longer,
)
from hpsearch.spec._sections import ObjectiveSpec, parse_base, parse_objective
from hpsearch.spec.samplers import (
    PrunerSpec,
    SamplerSpec,
    check_multi_objective,
    parse_pruner,
    parse_sampler,
)
from hpsearch.spec.space import SearchSpace, parse_space
from hpsearch.spec.yaml_loader import load_yaml_text

DEFAULT_TRIALS = 20
# A budget past this is a typo (`trials: 1e38` would run until killed): a million trials
# of a second each is eleven days.
MAX_TRIALS = 1_000_000
_REQUIRED = {
    "objective": "`objective: {metric: val_acc}`",
    "space": "`space: {lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}`",
}
_START = "write at least `objective:` and `space:`"


class _StudyFile(BaseModel):
    """The top level as written; sections are validated by their own parsers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    description: str = ""
    phase: str | None = None
    inherits: list[str] = Field(default_factory=list)  # earlier studies (chaining: later)
    inherits_if_run: list[str] = Field(default_factory=list)
    base: Any = Field(default_factory=dict)
    objective: Any
    eliminate: list[str] = Field(default_factory=list)
    selection: Any = None
    precondition: str = "none"
    baseline: bool = False
    keep_tolerance: float = Field(0.0, ge=0)
    peak_kept_within: float | None = Field(None, ge=0)
    follow: list[str] = Field(default_factory=list)
    train_longer: Any = None
    few_images_per_class: int | None = Field(None, ge=1)
    sampler: Any = Field(default_factory=dict)
    pruner: Any = None
    trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    space: Any = None
    spaces: Any = None
    families: list[str] = Field(default_factory=list)


class StudySpec(BaseModel):
    """A validated study file: everything needed to create and run its Optuna study."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str  # the file stem: studies/optimizer.yaml is the study `optimizer`
    path: Path | None = None
    description: str = ""
    phase: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    objective: ObjectiveSpec
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    # The trial budget: `trials:`, else the grid size of the space for a grid sampler, else
    # DEFAULT_TRIALS. None only for a grid over `spaces` until a space is chosen.
    trials: int | None = DEFAULT_TRIALS
    declared_trials: int | None = None  # `trials:` as written; None: a default applies
    # The space trials sample. With `spaces:` it is None until `with_space_for(model)`.
    space: SearchSpace | None
    spaces: dict[str, SearchSpace] = Field(default_factory=dict)  # model family -> space
    uses_declared: bool = False  # `spaces.factory: declared`: a user model's own knobs
    # `families: [mlp, cnn]`: the space that also chooses the model family, for image data.
    family_space: SearchSpace | None = None
    inherits: list[str] = Field(default_factory=list)
    # Parents whose choice is inherited once they have run; until then the phase starts from
    # its base, so it also runs on its own (the LR phases after `setup`).
    inherits_if_run: list[str] = Field(default_factory=list)
    eliminate: list[str] = Field(default_factory=list)  # lr_verdict reasons that prune
    selection: list[SelectionSpec] = Field(default_factory=list)  # in order; first is main
    precondition: str = "none"  # none | overfits | sound: when the phase applies
    baseline: bool = False  # the inherited configuration runs unchanged as a trial
    keep_tolerance: float = 0.0  # a technique must beat the baseline by more (criterion 1)
    # ...and lose at most this much peak validation accuracy against it (None: no bound):
    # "validation accuracy kept or improved", the BatchNorm phase's criterion 3 [000].
    peak_kept_within: float | None = None
    # Categoricals not sampled but fixed to the inherited value, only its branch searched:
    # optimizer options are the chosen optimizer's options (PROTOCOL.md phase 4 [000]).
    follow: list[str] = Field(default_factory=list)
    # More epochs (and early stopping) when the inherited choice is undertrained [000].
    train_longer: TrainLongerSpec | None = None
    # Few images per class: augmentation at once [000]. The space's `augment` axis is tried
    # only on image data with fewer training images per class than this (adapt.py).
    few_images_per_class: int | None = None
    file: str = ""  # how messages name the study file

    def fixed_values(self) -> dict[str, Any]:
        """The settings this study never varies: `base` and the space's fixed values."""
        return {**self.base, **self.chosen_space().fixed_values()}

    @staticmethod
    def model_family(model: str) -> str:
        """mlp, cnn, torchvision (`torchvision:NAME`), or factory (any other model name)."""
        return model_family(model)

    def with_space_for(self, model: str, declared: Mapping[str, Any] | None = None) -> StudySpec:
        """A copy whose `space` is the one for `model`: the file's `space`, else
        `spaces[family]`, else (`spaces.factory: declared`) the knobs the factory
        `declared`, names relative to `model_args` (`{hidden: {low: 16, high: 256}}` sets
        model_args.hidden). No space for `model` raises `MissingSpace`."""
        if not self.spaces and not self.uses_declared:
            return self.with_space(self.chosen_space())
        family = model_family(model)
        if family == "factory" and self.uses_declared:
            if declared is None:
                raise no_declared_knobs(self.file, model)
            return self.with_space(declared_space(declared, model, self.file))
        if family in self.spaces:
            return self.with_space(self.spaces[family])
        families = list(self.spaces) + (["factory (declared)"] if self.uses_declared else [])
        raise missing_family(self.file, model, families)

    def choosing_family(self, model: str) -> bool:
        """Whether the file chooses the family (`families:`) and `model` is one of them."""
        return self.family_space is not None and model in self.family_space.params[0].choices

    def with_space(self, space: SearchSpace) -> StudySpec:
        """A copy searching `space`; without `trials:` a grid's budget is its new size."""
        _check_base_and_space(self.base, space, space.file)
        trials = _trials(self.declared_trials, self.sampler, space)
        return self.model_copy(update={"space": space, "trials": trials})

    def following(self, values: Mapping[str, Any]) -> StudySpec:
        """A copy whose `follow` categoricals are fixed to `values` (the inherited config)."""
        space = self.chosen_space()
        for setting in self.follow:
            space = space.follow(setting, values[setting])
        return self.with_space(space)

    def parents(self) -> list[str]:
        """Every study this one starts from: `inherits`, then `inherits_if_run`."""
        return [*self.inherits, *self.inherits_if_run]

    def chosen_space(self) -> SearchSpace:
        """`space`, or a UsageError while a `spaces` file has no space chosen yet."""
        if self.space is None:
            raise UsageError(format_problem(
                self.file, "spaces", "no search space chosen yet", None,
                "call with_space_for(model) first: the space depends on the model family"))
        return self.space


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate one study file; messages name the file as `path` was given."""
    file = str(path)
    data = _read_yaml(Path(path), file)
    return parse_study_spec(data, file, name=Path(path).stem, path=Path(path))


def parse_study_spec(
    data: Any, file: str, name: str, path: Path | None = None
) -> StudySpec:
    """Validate the loaded YAML of a study file (sections in the order people write them)."""
    if not isinstance(data, Mapping):
        raise SpecError(file, "", "must be a mapping of study keys", data, _START)
    # `base:` with every line commented out loads as None: it means "nothing", not an error.
    given = {key: value for key, value in data.items() if value is not None}
    check_keys(given, _StudyFile.model_fields, file, "")
    _check_required(given, file)
    top = validate_model(_StudyFile, given, file, "")
    base = parse_base(top.base, file)
    objective = parse_objective(top.objective, file)
    protocol = _protocol_fields(top, objective, file)
    sampler = parse_sampler(top.sampler, file)
    pruner = parse_pruner(_pruner_data(top.pruner, objective), file)
    check_multi_objective(len(objective.metrics), sampler, pruner, file)
    space, spaces, uses_declared = _spaces(top, base, sampler, file)
    _check_augment_axis(top.few_images_per_class, space, file)
    return StudySpec(
        name=name, path=path, description=top.description, phase=top.phase, base=base,
        objective=objective, sampler=sampler, pruner=pruner,
        trials=_trials(top.trials, sampler, space), declared_trials=top.trials, space=space,
        spaces=spaces, uses_declared=uses_declared, inherits=top.inherits,
        inherits_if_run=top.inherits_if_run, file=file,
        family_space=parse_family_choice(top.families, top.spaces, file), **protocol,
    )


def _protocol_fields(top: _StudyFile, objective: ObjectiveSpec, file: str) -> dict[str, Any]:
    return {
        "eliminate": parse_eliminate(top.eliminate, file),
        "selection": parse_selection(top.selection, objective, file),
        "precondition": parse_precondition(top.precondition, file),
        "baseline": top.baseline,
        "keep_tolerance": top.keep_tolerance,
        "peak_kept_within": parse_peak_kept_within(top, file),
        "follow": parse_follow(top.follow, file),
        "train_longer": parse_train_longer(top.train_longer, file),
        "few_images_per_class": top.few_images_per_class,
    }


def _spaces(
    top: _StudyFile, base: Mapping[str, Any], sampler: SamplerSpec, file: str
) -> tuple[SearchSpace | None, dict[str, SearchSpace], bool]:
    """`space`, or every space of `spaces` (and whether `factory: declared`), checked against
    base and (grid) the sampler."""
    space = None if top.space is None else parse_space(top.space, file)
    spaces, uses_declared = ({}, False) if top.spaces is None else parse_spaces(top.spaces, file)
    for each in ([space] if space else []) + list(spaces.values()):
        _check_base_and_space(base, each, file)
        _trials(top.trials, sampler, each)  # a grid sampler checks that each is a grid
    return space, spaces, uses_declared


def _check_augment_axis(few: int | None, space: SearchSpace | None, file: str) -> None:
    """`few_images_per_class` says when to try the space's `augment` values: it needs them."""
    if few is not None and (space is None or "augment" not in space.sampled_settings()):
        raise SpecError(file, "few_images_per_class", "needs an `augment` axis in `space`", few,
                        "add `augment: {values: [none, crop]}` to `space`, or drop the field")


def _check_required(given: Mapping[str, Any], file: str) -> None:
    """`objective`, and exactly one of `space` (every model) and `spaces` (per family)."""
    if "space" in given and "spaces" in given:
        raise SpecError(file, "spaces", "cannot be combined with `space`", None,
                        "keep `space` for one space for every model, or `spaces` for one "
                        "per model family")
    for key, example in _REQUIRED.items():
        if key not in given and not (key == "space" and "spaces" in given):
            raise SpecError(file, key, "is required", None, f"add {example}")


def _trials(declared: int | None, sampler: SamplerSpec, space: SearchSpace | None) -> int | None:
    """`trials:` as written, else a grid's size (which checks the grid), else the default;
    None for a grid whose space is not chosen yet."""
    if sampler.name != "grid":
        return declared or DEFAULT_TRIALS
    if space is None:
        return declared
    size = space.grid_size()
    return declared or size


def _pruner_data(raw: Any, objective: ObjectiveSpec) -> Any:
    """An absent pruner is median, or none for several metrics (Optuna cannot prune those)."""
    if raw is not None:
        return raw
    return {"name": "none"} if len(objective.metrics) > 1 else {}


# Larger than any study file a person writes (the installed ones are under 4 KB); reading
# stops here rather than parse a data file passed by mistake.
MAX_STUDY_FILE_BYTES = 1_000_000
NEWLINE = ord("\n")


def _read_text(path: Path, file: str) -> str:
    """The file's text: UTF-8 (with or without a byte-order mark), or one clear error."""
    try:
        if path.stat().st_size > MAX_STUDY_FILE_BYTES:
            raise SpecError(file, "", f"is {path.stat().st_size:,} bytes, not a study file",
                            None, "pass the study's YAML file (a few KB)")
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(file, "", f"cannot read the file: {err.strerror}", None,
                        "check the path") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        source = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "latin1"
        raise SpecError(
            file, "", f"is not UTF-8 text (line {raw[:err.start].count(NEWLINE) + 1} holds "
                      f"byte {raw[err.start]:#04x})", None,
            f"save it as UTF-8 (e.g. `iconv -f {source} -t utf-8`)") from None


def _check_base_and_space(base: Mapping[str, Any], space: SearchSpace, file: str) -> None:
    for param in _params.walk(space.params):
        if param.name in base:
            raise SpecError(file, param.field, f"`{param.name}` is also set in base", None,
                            "set it in base or in space, not both")


def _read_yaml(path: Path, file: str) -> Any:
    text = _read_text(path, file)
    try:
        data = load_yaml_text(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(file, "", f"invalid YAML: {err.problem}{where}", None,
                        "check indentation, colons and quotes there") from None
    except yaml.YAMLError as err:  # DuplicateKeyError names the key and its line
        raise SpecError(file, "", f"invalid YAML: {err}", None,
                        "keep one of the repeated keys") from None
    except RecursionError:  # thousands of nested brackets: the parser recurses per level
        raise SpecError(file, "", "is nested too deeply to read", None,
                        "a study file needs a few levels: objective, space, a parameter") from None
    if data is None:
        raise SpecError(file, "", "is empty", None, _START)
    return data
