"""Study files (`studies/NAME.yaml`): find them, load them, validate them into a `StudySpec`.

A study file is data (STYLE.md, Hydra's sweeper): one tuning phase as an Optuna study.
Only `objective` and `space` are required:

    description: Optimizer and its learning rate (PROTOCOL.md phase 4)
    phase: optimizer
    base: {model: mlp, dataset: digits, epochs: 20, batch_size: 300}
    objective: {metric: val_acc, direction: maximize}
    sampler: {name: tpe, seed: 0}
    pruner: {name: median, n_warmup_steps: 5}
    trials: 30
    space: {optimizer: {choices: [sgd, adam], when: {sgd: {momentum: 0.9}}}}

Every problem is ONE `SpecError` naming the file, the field, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hpsearch.errors import SpecError, UsageError, format_problem
from hpsearch.spec import _params
from hpsearch.spec._messages import check_keys, did_you_mean, validate_model
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
STUDY_SUFFIXES = (".yaml", ".yml")
_REQUIRED = {
    "objective": "`objective: {metric: val_acc}`",
    "space": "`space: {lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}`",
}
_START = "write at least `objective:` and `space:`"


class _StudyFile(BaseModel):
    """The top level as written; sections are validated by their own parsers."""

    model_config = ConfigDict(extra="forbid", strict=True)
    description: str = ""
    phase: str | None = None
    inherits: list[str] = Field(default_factory=list)  # earlier studies (chaining: later)
    base: Any = Field(default_factory=dict)
    objective: Any
    sampler: Any = Field(default_factory=dict)
    pruner: Any = None
    trials: int | None = Field(None, ge=1)
    space: Any


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
    trials: int = DEFAULT_TRIALS
    space: SearchSpace
    inherits: list[str] = Field(default_factory=list)

    def fixed_values(self) -> dict[str, Any]:
        """The settings this study never varies: `base` and the space's fixed values."""
        return {**self.base, **self.space.fixed_values()}


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
    for key, example in _REQUIRED.items():
        if key not in given:
            raise SpecError(file, key, "is required", None, f"add {example}")
    top = validate_model(_StudyFile, given, file, "")
    base = parse_base(top.base, file)
    objective = parse_objective(top.objective, file)
    sampler = parse_sampler(top.sampler, file)
    pruner = parse_pruner(_pruner_data(top.pruner, objective), file)
    check_multi_objective(len(objective.metrics), sampler, pruner, file)
    space = parse_space(top.space, file)
    _check_base_and_space(base, space, file)
    grid_size = space.grid_size() if sampler.name == "grid" else None  # checks the grid too
    trials = top.trials or grid_size or DEFAULT_TRIALS
    return StudySpec(
        name=name, path=path, description=top.description, phase=top.phase, base=base,
        objective=objective, sampler=sampler, pruner=pruner, trials=trials, space=space,
        inherits=top.inherits,
    )


def _pruner_data(raw: Any, objective: ObjectiveSpec) -> Any:
    """An absent pruner is median, or none for several metrics (Optuna cannot prune those)."""
    if raw is not None:
        return raw
    return {"name": "none"} if len(objective.metrics) > 1 else {}


def _check_base_and_space(base: Mapping[str, Any], space: SearchSpace, file: str) -> None:
    for param in _params.walk(space.params):
        if param.name in base:
            raise SpecError(file, param.field, f"`{param.name}` is also set in base", None,
                            "set it in base or in space, not both")


def _read_yaml(path: Path, file: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(file, "", f"cannot read the file: {err.strerror}", None,
                        "check the path") from None
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
    if data is None:
        raise SpecError(file, "", "is empty", None, _START)
    return data


def list_study_files(studies_dir: Path) -> list[Path]:
    """The study files in `studies_dir`, sorted by name (none if it does not exist)."""
    if not studies_dir.is_dir():
        return []
    return sorted(p for p in studies_dir.iterdir() if p.suffix in STUDY_SUFFIXES and p.is_file())


def find_study_file(name_or_path: str, studies_dir: Path) -> Path:
    """`NAME` -> studies_dir/NAME.yaml (or .yml); an existing .yaml/.yml path is taken as is."""
    given = Path(name_or_path)
    if given.suffix in STUDY_SUFFIXES:
        candidates = [given, studies_dir / given.name]
    else:
        candidates = [studies_dir / f"{name_or_path}{suffix}" for suffix in STUDY_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    names = [p.stem for p in list_study_files(studies_dir)]
    fix = (
        f"{did_you_mean(given.stem, names)}available studies: {', '.join(names)}"
        if names else f"write {studies_dir / (given.stem + '.yaml')}"
    )
    problem = f"no study file `{name_or_path}`"
    raise UsageError(format_problem(str(studies_dir), "", problem, None, fix))
