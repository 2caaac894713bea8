"""`sampler:` and `pruner:` of a study file: validated specs, then Optuna 5.0 objects.

Each sampler or pruner has a private pydantic model whose fields are exactly the arguments a
study may give it, with Optuna 5.0's defaults (checked against the constructors), so an
unknown argument is an error that lists the allowed ones.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping

import optuna
from optuna.exceptions import ExperimentalWarning
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hpsearch.errors import SpecError
from hpsearch.spec._messages import (
    join,
    require_mapping,
    spec_problem,
    unknown_name,
    validate_model,
)

if TYPE_CHECKING:
    from hpsearch.spec.study_file import StudySpec

SamplerName = Literal["tpe", "random", "grid", "cmaes", "gp"]
PrunerName = Literal[
    "none", "median", "percentile", "successive_halving", "hyperband", "threshold"
]


class SamplerSpec(BaseModel):
    """A validated `sampler:`: its name, seed and the other arguments, defaults filled in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: SamplerName = "tpe"
    seed: int | None = None
    args: dict[str, Any] = Field(default_factory=dict)


class PrunerSpec(BaseModel):
    """A validated `pruner:`: its name and arguments, defaults filled in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: PrunerName = "median"
    args: dict[str, Any] = Field(default_factory=dict)


class _Args(BaseModel):
    # strict: `n_warmup_steps: "5"` or `multivariate: 1` are errors, not conversions
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _SeededArgs(_Args):
    seed: int | None = None


class _TpeArgs(_SeededArgs):
    n_startup_trials: int = Field(10, ge=0)
    multivariate: bool = True
    group: bool = True  # conditional spaces: one joint model per set of co-occurring params
    constant_liar: bool = True  # parallel workers steer away from each other's running trials

    @model_validator(mode="after")
    def _group_needs_multivariate(self) -> _TpeArgs:
        if self.group and not self.multivariate:  # TPESampler raises ValueError otherwise
            raise spec_problem("group: true needs multivariate: true", "set multivariate: true "
                               "or group: false")
        return self


class _CmaEsArgs(_SeededArgs):
    n_startup_trials: int = Field(1, ge=0)  # CmaEsSampler's default


class _GpArgs(_SeededArgs):
    n_startup_trials: int = Field(10, ge=0)  # GPSampler's default


_SAMPLER_ARGS: dict[str, type[_Args]] = {
    "tpe": _TpeArgs, "random": _SeededArgs, "grid": _SeededArgs, "cmaes": _CmaEsArgs,
    "gp": _GpArgs,
}


def _auto_or_count(value: Any) -> Any:
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    raise spec_problem('must be "auto" or an integer >= 1', 'write "auto" or a whole number of '
                       "steps (epochs)", value)


AutoOrCount = Annotated[Any, AfterValidator(_auto_or_count)]


class _PercentileStyleArgs(_Args):
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)
    n_min_trials: int = Field(1, ge=1)


class _PercentileArgs(_PercentileStyleArgs):
    percentile: float = Field(ge=0, le=100)


class _SuccessiveHalvingArgs(_Args):
    min_resource: AutoOrCount = "auto"
    reduction_factor: int = Field(4, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)


class _HyperbandArgs(_Args):
    min_resource: int = Field(1, ge=1)  # Optuna 5.0: an int only, unlike successive halving
    max_resource: AutoOrCount = "auto"
    reduction_factor: int = Field(3, ge=2)


class _ThresholdArgs(_Args):
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_bound_in_order(self) -> _ThresholdArgs:
        if self.lower is None and self.upper is None:
            raise spec_problem("needs lower or upper", "give the worst acceptable value "
                               "as `lower` (maximize) or `upper` (minimize)")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise spec_problem(f"lower ({self.lower}) must be <= upper ({self.upper})",
                               "swap lower and upper")
        return self


_PRUNER_ARGS: dict[str, type[_Args]] = {
    "none": _Args, "median": _PercentileStyleArgs, "percentile": _PercentileArgs,
    "successive_halving": _SuccessiveHalvingArgs, "hyperband": _HyperbandArgs,
    "threshold": _ThresholdArgs,
}


def parse_sampler(data: Any, file: str, field: str = "sampler") -> SamplerSpec:
    """Validate `sampler:` (default: TPE for conditional spaces, no seed)."""
    name, args = _name_and_args(data, file, field, "sampler", "tpe", _SAMPLER_ARGS)
    seed = args.pop("seed")
    return SamplerSpec(name=name, seed=seed, args=args)


def parse_pruner(data: Any, file: str, field: str = "pruner") -> PrunerSpec:
    """Validate `pruner:` (default: median with Optuna's defaults)."""
    name, args = _name_and_args(data, file, field, "pruner", "median", _PRUNER_ARGS)
    return PrunerSpec(name=name, args=args)


def _name_and_args(
    data: Any, file: str, field: str, kind: str, default: str, models: Mapping[str, type[_Args]]
) -> tuple[str, dict[str, Any]]:
    mapping = require_mapping(data, file, field, f"{{name: {default}}}")
    name = mapping.get("name", default)
    if name not in models:
        raise unknown_name(file, join(field, "name"), kind, name, models)
    model = models[name]
    rest = {key: value for key, value in mapping.items() if key != "name"}
    allowed = ["name", *model.model_fields]
    parsed = validate_model(model, rest, file, field, "argument", allowed, f"{kind} `{name}`")
    return name, parsed.model_dump()


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a study file asks for."""
    sampler = spec.sampler
    if sampler.name == "grid":
        return optuna.samplers.GridSampler(spec.chosen_space().grid(), seed=sampler.seed)
    if sampler.name == "tpe":
        with warnings.catch_warnings():
            # `group` is flagged experimental since Optuna 2.8; conditional spaces need it,
            # and the notice on every run would only be noise.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=sampler.seed, **sampler.args)
    classes = {
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
    }
    return classes[sampler.name](seed=sampler.seed, **sampler.args)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner a study file asks for (`none`: Optuna's NopPruner)."""
    classes = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "threshold": optuna.pruners.ThresholdPruner,
    }
    return classes[spec.pruner.name](**spec.pruner.args)


def check_multi_objective(
    n_metrics: int, sampler: SamplerSpec, pruner: PrunerSpec, file: str
) -> None:
    """Optuna prunes single-objective studies only, and CMA-ES optimizes one metric."""
    if n_metrics < 2:
        return
    if pruner.name != "none":
        raise SpecError(file, "pruner.name", "Optuna cannot prune a study with several metrics",
                        pruner.name, "use `pruner: {name: none}`, or one metric")
    if sampler.name == "cmaes":
        raise SpecError(file, "sampler.name", "CMA-ES optimizes a single metric", sampler.name,
                        "use sampler tpe, random or gp, or one metric")
