"""The nodes of a parsed search space: a fixed value, a numeric range, a categorical choice,
and a refinement around an earlier study's chosen value.

A categorical may carry `when` branches, each a tuple of nodes active only for that choice;
that recursion is what makes the space conditional. Nodes are immutable and know how to
suggest themselves, so `SearchSpace` (space.py) only walks them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial


@dataclass(frozen=True)
class FixedParam:
    """`lr: 0.001` or `{value: 0.001}`: a setting this space (or branch) always sets."""

    name: str
    value: Any
    field: str  # where it is written in the study file, for messages


@dataclass(frozen=True)
class RangeParam:
    """`{type: float|int, low, high, log, step}`, sampled as `optuna_name`."""

    name: str
    optuna_name: str
    distribution: FloatDistribution | IntDistribution
    field: str

    def sample(self, trial: BaseTrial) -> int | float:
        d = self.distribution
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.optuna_name, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.optuna_name, d.low, d.high, step=d.step, log=d.log)


@dataclass(frozen=True)
class ChoiceParam:
    """`{choices: [...], when: {...}}` or `{values: [...]}`, sampled as `optuna_name`.

    A selector (`regularizer`) is a choice that is no setting: it only picks a branch.
    """

    name: str
    optuna_name: str
    choices: tuple[Any, ...]
    field: str
    branches: Mapping[Any, tuple["Param", ...]] = dataclasses.field(default_factory=dict)
    selector: bool = False
    has_when: bool = False  # written with `when:` (even if every branch is empty)

    @property
    def distribution(self) -> CategoricalDistribution:
        return CategoricalDistribution(self.choices)

    def sample(self, trial: BaseTrial) -> Any:
        return trial.suggest_categorical(self.optuna_name, list(self.choices))


@dataclass(frozen=True)
class Edge:
    """The values one step, two steps... beyond one end of a refine grid (protocol/edges.py
    tries them while the choice sits on that end)."""

    direction: str  # "up": beyond the largest grid value; "down": beyond the smallest
    step: float  # what each step multiplies by: the end factor over its neighbour
    values: tuple[Any, ...]  # 1, 2, ... steps beyond the end, in order


@dataclass(frozen=True)
class RefinedParam(ChoiceParam):
    """A top-level refine node resolved for a grid: the grid runs `choices`, but every trial
    suggests through one numeric range that also holds the `edges` values.

    Optuna refuses to widen a categorical within a study ("CategoricalDistribution does not
    support dynamic value space") and warns on a fixed value outside its distribution, so the
    range spans from the start every value an edge extension may add; the GridSampler still
    gets the grid values only (`SearchSpace.grid`).
    """

    edges: tuple[Edge, ...] = ()  # beyond the largest value ("up"), the smallest ("down")

    @property
    def distribution(self) -> FloatDistribution | IntDistribution:
        values = [*self.choices, *(v for edge in self.edges for v in edge.values)]
        low, high = min(values), max(values)
        if all(isinstance(v, int) for v in values):
            return IntDistribution(low, high, log=low >= 1)  # Optuna: log ints start at 1
        return FloatDistribution(float(low), float(high), log=low > 0)

    def sample(self, trial: BaseTrial) -> int | float:
        d = self.distribution
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.optuna_name, d.low, d.high, log=d.log)
        return trial.suggest_float(self.optuna_name, d.low, d.high, log=d.log)


@dataclass(frozen=True)
class RefineParam:
    """`{refine: lr_adam, factors: [0.5, 1, 2]}`: a grid axis around the value the parent
    study chose for this setting (PROTOCOL.md phase 2: Adam 1e-3 -> 5e-4, 1e-3, 2e-3 [000]).

    Its values exist only once the parent study has run, so it cannot be sampled until
    `SearchSpace.resolve_refinements` has turned it into a list of values.
    """

    name: str
    optuna_name: str
    parent: str  # the study whose chosen value is refined
    factors: tuple[float, ...]
    field: str
    integer: bool = False  # an int setting: the refined values are rounded to integers

    @property
    def distribution(self) -> BaseDistribution:
        raise RuntimeError(f"{self.field}: resolve refinements before asking for distributions")

    def sample(self, trial: BaseTrial) -> Any:
        raise RuntimeError(f"{self.field}: resolve refinements before suggesting")


Param = Union[FixedParam, RangeParam, ChoiceParam, RefinedParam, RefineParam]


def suggest(params: tuple[Param, ...], trial: BaseTrial) -> dict[str, Any]:
    """Setting -> value for this trial: fixed values, sampled values, active branches only."""
    values: dict[str, Any] = {}
    for param in params:
        if isinstance(param, FixedParam):
            values[param.name] = param.value
            continue
        value = param.sample(trial)
        if not (isinstance(param, ChoiceParam) and param.selector):
            values[param.name] = value
        if isinstance(param, ChoiceParam) and value in param.branches:
            values.update(suggest(param.branches[value], trial))
    return values


_MISSING = object()


def coordinates(params: tuple[Param, ...], values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Optuna parameter name -> value at which the configuration `values` (setting -> value)
    sits in this space, along its active branches; None when no point holds it: a selector
    (no setting records which branch it took), a refine node not resolved yet, a setting
    `values` lacks, a fixed value it differs from, or a value outside its node's distribution.
    """
    found: dict[str, Any] = {}
    for param in params:
        value = _setting(values, param.name)
        if isinstance(param, FixedParam):
            if value != param.value:
                return None
            continue
        if isinstance(param, RefineParam) or (isinstance(param, ChoiceParam) and param.selector):
            return None
        if value is _MISSING or not _holds(param.distribution, value):
            return None
        found[param.optuna_name] = value
        if isinstance(param, ChoiceParam) and value in param.branches:
            inner = coordinates(param.branches[value], values)
            if inner is None:
                return None
            found.update(inner)
    return found


def _setting(values: Mapping[str, Any], name: str) -> Any:
    """`values[name]`, `model_args.hidden` read inside `values["model_args"]`."""
    head, _, key = name.partition(".")
    if key:
        inner = values.get(head)
        return inner.get(key, _MISSING) if isinstance(inner, Mapping) else _MISSING
    return values.get(name, _MISSING)


def _holds(distribution: BaseDistribution, value: Any) -> bool:
    """Whether `value` is one the distribution can suggest (Optuna warns and samples anew
    when a fixed value is not)."""
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(c) and value == c for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, IntDistribution) and not isinstance(value, int):
        return False
    d = distribution
    if not d.low <= value <= d.high:
        return False
    return d.step is None or math.isclose((value - d.low) / d.step, round((value - d.low) / d.step),
                                          abs_tol=1e-8)


def walk(params: tuple[Param, ...]) -> Iterator[Param]:
    """Every node, branches included, depth first in file order."""
    for param in params:
        yield from definitions(param)


def distributions(params: tuple[Param, ...]) -> dict[str, BaseDistribution]:
    """Optuna parameter name -> distribution for every sampled node (fixed ones excluded)."""
    return {p.optuna_name: p.distribution for p in walk(params) if not isinstance(p, FixedParam)}


def definitions(param: Param) -> Iterator[Param]:
    """`param` and every node any of its branches defines (all that it may set)."""
    yield param
    if isinstance(param, ChoiceParam):
        for branch in param.branches.values():
            for inner in branch:
                yield from definitions(inner)
