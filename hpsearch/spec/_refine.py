"""`{refine: STUDY, factors: [...]}`: search around the value an earlier study chose.

PROTOCOL.md phase 2 explores the learning rate, then refines around the best, e.g. Adam
1e-3 -> [5e-4, 1e-3, 2e-3] [000]. The node is parsed at load (the parent study has not run
yet) and becomes a plain list of values once the runner knows the chosen value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hpsearch.config import base_type
from hpsearch.errors import SpecError
from hpsearch.spec._messages import bad_type, check_keys, check_setting_value, join
from hpsearch.spec._params import (
    ChoiceParam,
    Edge,
    Param,
    RefinedParam,
    RefineParam,
    walk,
)

# At most x4 beyond a [0.5, 1, 2] grid (x1.67**2 for SGD's [0.67, 1, 1.67]). A rate that
# still improves two more doublings past the refinement is the lr phase's eliminatory
# criteria's job (divergence and oscillation prune rates that are too high; PROTOCOL.md
# phase 2 [000]): past the bound, the exploration grid itself is wrong and should be widened,
# which the record says.
MAX_EDGE_STEPS = 2
SIGNIFICANT_DIGITS = 6  # 1e-3 * 0.5 is 0.0005, not 0.0005000000000000001
_KEYS = ("refine", "factors")
_FACTORS_FIX = "list the factors to multiply the chosen value by, e.g. factors: [0.5, 1, 2]"

Chosen = Callable[[str, str], Any]  # (parent study, setting) -> the value it chose


@dataclass(frozen=True)
class Refinement:
    """One refine node: which setting, around which study's choice, by which factors."""

    setting: str
    parent: str
    factors: tuple[float, ...]


def parse_refine(
    name: str, spec: Mapping[str, Any], file: str, field: str, optuna_name: str
) -> RefineParam:
    """Validate `{refine: STUDY, factors: [...]}` for setting `name`."""
    check_keys(spec, _KEYS, file, field)
    integer = _numeric_kind(name, file, field)
    parent = spec["refine"]
    if not isinstance(parent, str) or not parent:
        raise bad_type(file, join(field, "refine"), "a study name", parent)
    if "factors" not in spec:
        raise SpecError(file, join(field, "factors"), "is required", None, _FACTORS_FIX)
    factors = _factors(spec["factors"], file, join(field, "factors"))
    return RefineParam(name, optuna_name, parent, factors, field, integer)


def _numeric_kind(name: str, file: str, field: str) -> bool | None:
    """True for an int setting, False for a float one, None for a `model_args.x` entry
    (its type is only known from the chosen value)."""
    want = base_type(name)
    if want in (str, bool, dict):
        kind = {str: "a text", bool: "a true/false", dict: "a mapping"}[want]
        fix = "refine a float or int setting, or search this one with `choices: [...]`"
        raise SpecError(file, field, f"`{name}` is {kind} setting, not a number", None, fix)
    return {int: True, float: False}.get(want)


def _factors(raw: Any, file: str, field: str) -> tuple[float, ...]:
    if not isinstance(raw, list):
        raise bad_type(file, field, "a list", raw)
    if not raw:
        raise SpecError(file, field, "must not be empty", raw, _FACTORS_FIX)
    factors: list[float] = []
    for index, item in enumerate(raw):
        where = join(field, index)
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise bad_type(file, where, "a number", item)
        if item <= 0:
            raise SpecError(file, where, "must be > 0", item,
                            "use positive factors: each multiplies the chosen value")
        if item in factors:
            raise SpecError(file, where, "duplicate factor", item, "list each factor once")
        factors.append(item)
    return tuple(factors)


def refinements(params: tuple[Param, ...]) -> list[Refinement]:
    """Every refine node, branches included, in file order."""
    return [Refinement(p.name, p.parent, p.factors) for p in walk(params)
            if isinstance(p, RefineParam)]


def check_resolved(params: tuple[Param, ...], file: str) -> None:
    """Refuse to sample (or grid) a space whose refine nodes have no values yet."""
    for param in walk(params):
        if isinstance(param, RefineParam):
            raise SpecError(
                file, param.field,
                f"`{param.name}` refines the value study `{param.parent}` chose, which is not "
                "resolved yet", None,
                f"resolve refinements first (SearchSpace.resolve_refinements) once study "
                f"`{param.parent}` has run",
            )


def resolve(
    params: tuple[Param, ...], chosen: Chosen, file: str, edge_steps: int = 0
) -> tuple[Param, ...]:
    """`params` with every refine node, in branches too, replaced by its list of values.
    With `edge_steps` (a grid), a top-level node also holds the values up to that many steps
    beyond each end of its grid (a RefinedParam), which protocol/edges.py may try."""
    return tuple(_resolve_one(param, chosen, file, edge_steps) for param in params)


def _resolve_one(param: Param, chosen: Chosen, file: str, edge_steps: int) -> Param:
    if isinstance(param, RefineParam):
        value = chosen(param.parent, param.name)
        values = refined_values(param, value, file)
        edges = edge_ladders(param, value, file, edge_steps)
        if not any(edge.values for edge in edges):
            return ChoiceParam(param.name, param.optuna_name, values, param.field)
        return RefinedParam(param.name, param.optuna_name, values, param.field, edges=edges)
    if isinstance(param, ChoiceParam) and param.branches:
        # Branch refine nodes stay plain lists: a grid cannot search `when` branches, and
        # edge extension is a grid's (edge_steps stays 0 below the top level).
        branches = {k: resolve(branch, chosen, file) for k, branch in param.branches.items()}
        return dataclasses.replace(param, branches=branches)
    return param


def refined_values(param: RefineParam, value: Any, file: str) -> tuple[Any, ...]:
    """`value * factor` for each factor, to 6 significant digits; integers for an int setting
    (or an int value of a `model_args` entry); duplicates after rounding dropped. A setting
    the parent left unset (None: e.g. no weight decay) stays unset, as 0 stays 0: a refinement
    tunes the strength of what was chosen and switches nothing on."""
    if value is None:
        return (None,)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(file, param.field, f"study `{param.parent}` chose no number for "
                        f"`{param.name}`", value,
                        f"run study `{param.parent}` first, or search `{param.name}` without "
                        "`refine`")
    values: list[Any] = []
    for factor in param.factors:
        item = _refined(param, value, factor, file)
        if item not in values:
            values.append(item)
    return tuple(values)


def edge_ladders(param: RefineParam, value: Any, file: str, steps: int) -> tuple[Edge, ...]:
    """The values 1..`steps` steps beyond the largest and the smallest grid value; a step is
    the end factor over its neighbour, to 6 significant digits (2 for [0.5, 1, 2], 1.67 for
    [0.67, 1, 1.67]). None for a grid of one factor, or around a value that is not positive
    (the range holding them is logarithmic, like the learning rates it serves)."""
    factors = sorted(param.factors)
    if steps < 1 or len(factors) < 2 or value is None or not value > 0:
        return ()
    return (_edge(param, value, file, "up", factors[-1], factors[-2], steps),
            _edge(param, value, file, "down", factors[0], factors[1], steps))


def _edge(param: RefineParam, value: Any, file: str, direction: str, end: float,
          neighbour: float, steps: int) -> Edge:
    step = round_sig(end / neighbour)
    last = _refined(param, value, end, file)
    values: list[Any] = []
    for k in range(1, steps + 1):
        try:
            item = _refined(param, value, end * step**k, file)
        except SpecError:  # a value the setting refuses: the ladder stops before it
            break
        # An int rounded back onto the last value (or down to 0) adds nothing new.
        if item <= 0 or (item <= last if direction == "up" else item >= last):
            break
        values.append(item)
        last = item
    return Edge(direction, step, tuple(values))


def _refined(param: RefineParam, value: Any, factor: float, file: str) -> Any:
    """`value * factor` to 6 significant digits, an int for an int setting (or int value).
    Factor 1 is the chosen value itself, unrounded (a sampled 0.0027992477...): the grid then
    holds the parent's configuration exactly, and a baseline trial can sit on it."""
    integer = isinstance(value, int) if param.integer is None else param.integer
    refined = value if factor == 1 else round_sig(value * factor)
    return check_setting_value(file, param.field, param.name,
                               round_half_up(refined) if integer else refined)


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` rounded to `digits` significant digits (through its decimal text, so the
    result is the float nearest to what people write)."""
    return float(f"{value:.{digits}g}")


def round_half_up(value: float) -> int:
    """2.5 -> 3 (Python's round() gives 2: banker's rounding surprises in a grid)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))
