"""The search space of a study: parsed from `space:`, validated, and suggested per trial.

Grammar (one entry per parameter; the name is a setting, or a selector with `when`):
    lr: 0.001  |  lr: {value: 0.001}                     fixed
    lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, step: null}
    optimizer: {choices: [sgd, adam], when: {sgd: {momentum: {low: 0.8, high: 0.99}}}}
    batch_size: {values: [64, 128, 256]}                   a grid axis
    lr: {refine: lr_adam, factors: [0.5, 1, 2]}            a grid axis around study
                                                           lr_adam's choice (resolved later)
A parameter inside a branch is sampled under its own Optuna name (`lr[sgd]`, nested
`lr[sgd/step]`), so each branch gets its own distribution and TPE with `group=True` models
every branch separately; optuna-dashboard shows the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from optuna.distributions import BaseDistribution
from optuna.trial import BaseTrial

from hpsearch.errors import SpecError, UsageError, format_problem
from hpsearch.spec import _params, _refine, _restrict
from hpsearch.spec._params import (
    ChoiceParam,
    FixedParam,
    Param,
    RangeParam,
    RefinedParam,
    RefineParam,
    definitions,
)
from hpsearch.spec._refine import Refinement
from hpsearch.spec._space_parser import parse_params

__all__ = [
    "ChoiceParam", "FixedParam", "Param", "RangeParam", "Refinement", "RefinedParam",
    "RefineParam", "SearchSpace", "parse_space",
]

_GRID_FIX = "use sampler tpe or random, or write the parameter as `values: [...]`"


@dataclass(frozen=True)
class SearchSpace:
    """The parsed `space:` of one study file (`file` names it in messages)."""

    params: tuple[Param, ...]
    file: str = ""

    def suggest(self, trial: BaseTrial) -> dict[str, Any]:
        """Setting -> value for this trial: active branches only, fixed values included,
        selectors (which are no settings) left out."""
        _refine.check_resolved(self.params, self.file)
        return _params.suggest(self.params, trial)

    def coordinates(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """Optuna parameter name -> value where the configuration `values` sits in this
        space, or None when no point of it holds that configuration (_params.coordinates)."""
        return _params.coordinates(self.params, values)

    def fixed_values(self) -> dict[str, Any]:
        """The settings fixed at the top of the space (set in every trial)."""
        return {p.name: p.value for p in self.params if isinstance(p, FixedParam)}

    def sampled_settings(self) -> set[str]:
        """Every setting some trial may sample, or set only inside a branch."""
        names = {p.name for p in _params.walk(self.params) if not _is_selector(p)}
        return names - set(self.fixed_values())

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna parameter name -> distribution, for every branch (the distribution table)."""
        _refine.check_resolved(self.params, self.file)
        return _params.distributions(self.params)

    def grid(self) -> dict[str, list[Any]]:
        """The GridSampler search space: one axis per list of values or choices."""
        axes = self._grid_axes()
        _refine.check_resolved(tuple(axes), self.file)
        return {p.optuna_name: list(p.choices) for p in axes if isinstance(p, ChoiceParam)}

    def grid_size(self) -> int:
        """How many trials a full grid takes (1 for a space of fixed values only); a refine
        node counts one point per factor even before it is resolved."""
        return math.prod(_axis_size(param) for param in self._grid_axes())

    def _grid_axes(self) -> list[ChoiceParam | RefineParam]:
        """The top-level nodes a grid searches, or the SpecError of the first it cannot."""
        axes: list[ChoiceParam | RefineParam] = []
        for param in self.params:
            if isinstance(param, FixedParam):
                continue
            if isinstance(param, RangeParam):
                raise SpecError(self.file, param.field, "the grid sampler cannot search a range",
                                None, _GRID_FIX)
            if isinstance(param, ChoiceParam) and param.has_when:
                raise SpecError(self.file, param.field,
                                "the grid sampler cannot search `when` branches", None, _GRID_FIX)
            axes.append(param)
        return axes

    def refinements(self) -> list[Refinement]:
        """Every `refine` node (branches included), in file order."""
        return _refine.refinements(self.params)

    def resolve_refinements(
        self, chosen: Callable[[str, str], Any], edge_steps: int = 0
    ) -> SearchSpace:
        """A copy where each refine node is a list of values: the value `chosen(parent,
        setting)` times each factor, to 6 significant digits (ints rounded, deduplicated).
        With `edge_steps` (a grid), a top-level node is a RefinedParam whose range also holds
        the values that many steps beyond each end of its grid (protocol/edges.py)."""
        return SearchSpace(_refine.resolve(self.params, chosen, self.file, edge_steps),
                           self.file)

    def replace(self, setting: str, raw: Mapping[str, Any]) -> SearchSpace:
        """A copy where the top-level parameter `setting` is `raw` (study-file grammar, e.g. a
        recorded LR-finder range `{values: [1e-4, 1e-3]}`); added if the space lacks it."""
        (param,) = parse_params({setting: raw}, self.file, "space")
        names = [p.name for p in self.params]
        if setting in names:
            at = names.index(setting)
            params = self.params[:at] + (param,) + self.params[at + 1 :]
        else:
            params = self.params + (param,)
        _check_set_once(params, {}, self.file)
        return SearchSpace(params, self.file)


    def restricted(self, keep: Callable[[str], bool]) -> tuple[SearchSpace, list[str]]:
        """A copy searching only the settings `keep` accepts (those a model honours), and
        the settings dropped (_restrict.py)."""
        params, dropped = _restrict.restrict(self.params, keep)
        return SearchSpace(params, self.file), dropped

    def follow(self, setting: str, value: Any) -> SearchSpace:
        """A copy where the top-level categorical `setting` is fixed to `value` and only that
        choice's branch is searched (its parameters keep their names, e.g. `momentum[sgd]`)."""
        at = next((i for i, p in enumerate(self.params) if p.name == setting), None)
        param = None if at is None else self.params[at]
        if not isinstance(param, ChoiceParam) or value not in param.choices:
            choices = list(param.choices) if isinstance(param, ChoiceParam) else []
            raise UsageError(format_problem(
                self.file, f"space.{setting}", f"follows the inherited {setting}, which has no "
                f"choice here (choices: {choices})", value, f"add {value!r} to its choices"))
        fixed = FixedParam(setting, value, param.field)
        branch = tuple(param.branches.get(value, ()))
        return SearchSpace(self.params[:at] + (fixed,) + branch + self.params[at + 1 :], self.file)


def parse_space(data: Any, file: str, field: str = "space", prefix: str = "") -> SearchSpace:
    """Validate the `space:` mapping of a study file; raise SpecError on the first problem.
    With `prefix` (`model_args.`) every name, in branches too, is relative to it."""
    params = parse_params(data, file, field, prefix=prefix)
    _check_set_once(params, {}, file)
    return SearchSpace(params, file)


def _axis_size(param: ChoiceParam | RefineParam) -> int:
    return len(param.factors) if isinstance(param, RefineParam) else len(param.choices)


def _is_selector(param: Param) -> bool:
    return isinstance(param, ChoiceParam) and param.selector


def _check_set_once(params: tuple[Param, ...], outer: dict[str, str], file: str) -> None:
    """A setting may be set once on any path: siblings are active together, and a branch is
    active together with everything above it. `outer` maps those names to their field."""
    active = dict(outer)
    for param in params:
        for name, field in _names(param).items():
            if name in active:
                raise SpecError(file, field, f"`{name}` is also set at {active[name]}", None,
                                "set it in one place only, or in each branch instead")
        active.update(_names(param))
    for param in params:
        if not isinstance(param, ChoiceParam):
            continue
        around = {n: f for n, f in active.items() if n not in _names(param)}
        around[param.name] = param.field
        for branch in param.branches.values():
            _check_set_once(branch, around, file)


def _names(param: Param) -> dict[str, str]:
    """Name -> field of the first place `param` or one of its branches sets each name."""
    names: dict[str, str] = {}
    for node in definitions(param):
        names.setdefault(node.name, node.field)
    return names
