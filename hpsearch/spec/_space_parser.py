"""Parse the `space:` grammar into nodes (_params.py). Hand-written: the grammar is recursive.

One function per form: a fixed value, a numeric range, a categorical (with `when`
branches), a list of values, a refinement (_refine.py). Every check raises a `SpecError`
naming the field path in the file (`space.optimizer.when.sgd.lr.low`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from optuna.distributions import FloatDistribution, IntDistribution

from hpsearch.config import base_type, field_names, is_setting
from hpsearch.errors import SpecError
from hpsearch.spec._messages import (
    bad_type,
    check_keys,
    check_setting_value,
    did_you_mean,
    join,
    require_mapping,
    unknown_name,
    unknown_setting,
)
from hpsearch.spec._params import ChoiceParam, FixedParam, Param, RangeParam
from hpsearch.spec._refine import parse_refine

SPACE_EXAMPLE = "{lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}"
_FORMS = "{type: float, low: ..., high: ...}, {choices: [...]}, {values: [...]} or {value: ...}"
_RANGE_KEYS = ("type", "low", "high", "log", "step")
_CHOICE_KEYS = ("type", "choices", "when")
_SCALARS = (str, int, float, bool, type(None))  # what Optuna can store as a categorical value


def parse_params(
    data: Any, file: str, field: str, path: tuple[str, ...] = (), prefix: str = ""
) -> tuple[Param, ...]:
    """The nodes of one level of the space; `path` is the branch labels leading here.

    `prefix` makes names relative (`model_args.`: a model factory's own knobs); messages keep
    the field as written."""
    mapping = require_mapping(data, file, field, SPACE_EXAMPLE)
    return tuple(
        _parse_param(prefix + str(name), spec, file, join(field, name), path, prefix)
        for name, spec in mapping.items()
    )


def optuna_name(name: str, path: tuple[str, ...]) -> str:
    """`lr` at the top, `lr[sgd]` in a branch, `lr[sgd/step]` nested: one name per branch."""
    return f"{name}[{'/'.join(path)}]" if path else name


def _parse_param(
    name: str, spec: Any, file: str, field: str, path: tuple[str, ...], prefix: str
) -> Param:
    if isinstance(spec, list):
        fix = "write `{values: [...]}` to search these values, or `{value: [...]}` to fix a list"
        raise SpecError(file, field, "a bare list is ambiguous", spec, fix)
    if not isinstance(spec, Mapping):
        _check_name(name, False, file, field)
        return _fixed(name, spec, file, field)
    form = _form(spec, file, field)
    selector = form == "choice" and "when" in spec and not is_setting(name)
    _check_name(name, selector, file, field)
    if form == "fixed":
        check_keys(spec, ("value",), file, field)
        return _fixed(name, spec["value"], file, join(field, "value"))
    if form == "range":
        return _range(name, spec, file, field, path)
    if form == "refine":
        return parse_refine(name, spec, file, field, optuna_name(name, path))
    return _choice(name, spec, selector, file, field, path, prefix)


def _form(spec: Mapping[str, Any], file: str, field: str) -> str:
    kind = spec.get("type")
    if kind is not None and kind not in ("float", "int", "categorical"):
        raise unknown_name(file, join(field, "type"), "parameter type", kind,
                           ("float", "int", "categorical"))
    if "value" in spec:
        return "fixed"
    if "refine" in spec:
        return "refine"
    if "values" in spec or "choices" in spec:
        return "choice" if kind in (None, "categorical") else _mixed_forms(kind, file, field)
    if kind == "categorical":
        return "choice"
    if kind is not None or "low" in spec or "high" in spec:
        return "range"
    raise SpecError(file, field, "is not a parameter", dict(spec), f"write {_FORMS}")


def _mixed_forms(kind: str, file: str, field: str) -> str:
    fix = "remove `type` to search the listed choices, or give low and high for a range"
    raise SpecError(file, join(field, "type"), "does not go with a list of choices", kind, fix)


def _check_name(name: str, selector: bool, file: str, field: str) -> None:
    if is_setting(name):
        return
    if not selector:
        raise unknown_setting(file, field, name)
    # A selector may have any name, but one this close to a setting is a typo that would
    # silently leave the setting at its default.
    hint = did_you_mean(name, field_names(), cutoff=0.85)
    if hint:
        fix = f"{hint}a selector (a choice that is no setting) needs a name unlike any setting"
        raise SpecError(file, field, f"unknown setting `{name}`", None, fix)


def _fixed(name: str, value: Any, file: str, field: str) -> FixedParam:
    return FixedParam(name, check_setting_value(file, field, name, value), field)


def _range(
    name: str, spec: Mapping[str, Any], file: str, field: str, path: tuple[str, ...]
) -> RangeParam:
    check_keys(spec, _RANGE_KEYS, file, field)
    for key in ("low", "high"):
        if key not in spec:
            raise SpecError(file, join(field, key), "is required", None, "give both low and high")
    low, high = (_number(spec[k], file, join(field, k)) for k in ("low", "high"))
    log = _boolean(spec.get("log", False), file, join(field, "log"))
    step = spec.get("step")
    step = None if step is None else _number(step, file, join(field, "step"))
    if _range_type(name, spec.get("type"), (low, high), file, field) == "int":
        low, high = (_integer(spec[k], file, join(field, k)) for k in ("low", "high"))
        step = None if step is None else _integer(step, file, join(field, "step"))
        _check_range(low, high, log, step, file, field)
        distribution = IntDistribution(low, high, log=log, step=step or 1)
    else:
        _check_range(low, high, log, step, file, field)
        distribution = FloatDistribution(float(low), float(high), log=log, step=step)
    for key in ("low", "high"):  # the setting's own range (config.RANGES) holds both ends
        check_setting_value(file, join(field, key), name, spec[key])
    return RangeParam(name, optuna_name(name, path), distribution, field)


def _range_type(
    name: str, declared: Any, bounds: tuple[float, float], file: str, field: str
) -> str:
    """float or int: as declared, else the setting's type, else the bounds' type."""
    want = base_type(name)
    if want in (str, bool, dict):
        kind = {str: "a text", bool: "a true/false", dict: "a mapping"}[want]
        fix = "search it with `choices: [...]`, or fix it with `value: ...`"
        raise SpecError(file, field, f"`{name}` is {kind} setting, not a number", None, fix)
    guessed = "float" if any(isinstance(b, float) for b in bounds) else "int"
    kind = declared or {int: "int", float: "float"}.get(want, guessed)
    if kind == "float" and want is int:
        where = join(field, "type") if declared else field
        raise SpecError(file, where, f"`{name}` is an int setting", declared, "use type: int")
    return kind


def _check_range(
    low: float, high: float, log: bool, step: float | None, file: str, field: str
) -> None:
    if low > high:
        raise SpecError(file, join(field, "low"), f"must be <= high = {high}", low,
                        "swap low and high")
    if step is not None and step <= 0:
        raise SpecError(file, join(field, "step"), "must be > 0", step,
                        "use a positive step, or remove it")
    if log and step is not None:
        raise SpecError(file, join(field, "step"), "cannot be combined with log: true", step,
                        "remove step, or set log: false")
    if log and low <= 0:
        raise SpecError(file, join(field, "low"), "must be > 0 with log: true", low,
                        "use a positive low, or set log: false")


def _choice(
    name: str, spec: Mapping[str, Any], selector: bool, file: str, field: str,
    path: tuple[str, ...], prefix: str,
) -> ChoiceParam:
    key = "values" if "values" in spec else "choices"
    check_keys(spec, ("values",) if key == "values" else _CHOICE_KEYS, file, field)
    if key not in spec:
        raise SpecError(file, join(field, key), "is required", None, "list the choices")
    setting = None if selector else name
    choices = _choice_list(setting, spec[key], file, join(field, key))
    branches = _branches(name, spec.get("when"), choices, file, join(field, "when"), path,
                         prefix)
    return ChoiceParam(name, optuna_name(name, path), choices, field, branches, selector,
                       has_when="when" in spec)


def _choice_list(setting: str | None, raw: Any, file: str, field: str) -> tuple[Any, ...]:
    """The choices, each checked for `setting` (None: a selector's free labels), unique."""
    if not isinstance(raw, list):
        raise bad_type(file, field, "a list", raw)
    if not raw:
        raise SpecError(file, field, "must not be empty", raw, "list at least one choice")
    choices: list[Any] = []
    for index, item in enumerate(raw):
        where = join(field, index)
        if not isinstance(item, _SCALARS):
            raise bad_type(file, where, "a string, a number, true/false or null", item)
        value = item if setting is None else check_setting_value(file, where, setting, item)
        if value in choices:
            raise SpecError(file, where, "duplicate choice", item, "list each choice once")
        choices.append(value)
    return tuple(choices)


def _branches(
    name: str, when: Any, choices: tuple[Any, ...], file: str, field: str,
    path: tuple[str, ...], prefix: str,
) -> dict[Any, tuple[Param, ...]]:
    if when is None:
        return {}
    mapping = require_mapping(when, file, field, "{sgd: {momentum: {low: 0.8, high: 0.99}}}")
    branches: dict[Any, tuple[Param, ...]] = {}
    for key, sub in mapping.items():
        choice = _matching_choice(key, choices)
        if choice is _NO_CHOICE:
            raise unknown_name(file, join(field, key), "choice", key,
                               [label(c) for c in choices], owner=f"`{name}`")
        where, inner = join(field, key), path + (label(choice),)
        branches[choice] = () if sub is None else parse_params(sub, file, where, inner, prefix)
    return branches


_NO_CHOICE = object()


def _matching_choice(key: Any, choices: tuple[Any, ...]) -> Any:
    """The choice a `when` key names: YAML keys are typed like values (`0.5:`, `64:`)."""
    for choice in choices:
        if key == choice or label(choice) == str(key):
            return choice
    return _NO_CHOICE


def label(choice: Any) -> str:
    """A choice as written in YAML: `true`, `null`, `sgd`, `0.5`."""
    if isinstance(choice, bool) or choice is None:
        return {True: "true", False: "false", None: "null"}[choice]
    return str(choice)


def _number(value: Any, file: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_type(file, field, "a number", value)
    return value


def _integer(value: Any, file: str, field: str) -> int:
    number = _number(value, file, field)
    if isinstance(number, float) and not number.is_integer():
        raise bad_type(file, field, "an integer", value)
    return int(number)


def _boolean(value: Any, file: str, field: str) -> bool:
    if not isinstance(value, bool):
        raise bad_type(file, field, "true or false", value)
    return value
