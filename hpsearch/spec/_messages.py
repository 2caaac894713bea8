"""Every study-file message is built here, so the wording stays uniform and testable.

Each helper returns (or raises) one `SpecError`: file, field path, the rule broken, the value
and the fix (STYLE.md: "errors state the rule, the value and the fix").
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from hpsearch.config import (
    CHOICES,
    NAMES_OR_PATHS,
    RANGES,
    base_type,
    coerce_value,
    field_names,
    is_setting,
)
from hpsearch.errors import ConfigError, SpecError

ModelT = TypeVar("ModelT", bound=BaseModel)


def join(*parts: str) -> str:
    """A field path: `space` + `lr` + `low` -> `space.lr.low` (empty parts dropped)."""
    return ".".join(str(part) for part in parts if part != "")


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """`did you mean lr? ` when `name` looks like a typo of a known name, else ``."""
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=cutoff)
    return f"did you mean {', '.join(close)}? " if close else ""


def unknown_name(
    file: str, field: str, noun: str, name: Any, allowed: Iterable[str], owner: str = ""
) -> SpecError:
    """`unknown sampler `foo`` (or `unknown argument `x` for pruner `median``), with the
    allowed names, and the closest one, in the fix."""
    allowed = [str(a) for a in allowed]
    fix = f"{did_you_mean(name, allowed)}use one of: {', '.join(allowed)}"
    owner = f" for {owner}" if owner else ""
    return SpecError(file, field, f"unknown {noun} `{name}`{owner}", None, fix)


def check_keys(
    data: Mapping[str, Any], allowed: Iterable[str], file: str, field: str, noun: str = "key"
) -> None:
    """Refuse the first key of `data` that is not in `allowed` (typos are never ignored)."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise unknown_name(file, join(field, key), noun, key, allowed)


def require_mapping(data: Any, file: str, field: str, example: str) -> Mapping[str, Any]:
    """`data` itself if it is a mapping; otherwise the error shows an example to copy."""
    if isinstance(data, Mapping):
        return data
    raise SpecError(file, field, "must be a mapping", data, f"write it like {example}")


def bad_type(file: str, field: str, want: str, value: Any) -> SpecError:
    """`must be a number (got 'abc')`: one wording for every wrong type."""
    key = field.rsplit(".", 1)[-1]
    return SpecError(file, field, f"must be {want}", value, f"write {want} for `{key}`")


def check_setting_value(file: str, field: str, name: str, value: Any) -> Any:
    """The value converted for setting `name` (config.coerce_value), or a SpecError."""
    try:
        return coerce_value(name, value, field)
    except ConfigError:
        raise _setting_value_error(file, field, name, value) from None


def _setting_value_error(file: str, field: str, name: str, value: Any) -> SpecError:
    if not is_setting(name):
        return unknown_setting(file, field, name)
    allowed = CHOICES.get(name)
    if allowed is not None and isinstance(value, str):
        problem = f"`{name}` must be one of {', '.join(allowed)}"
        return SpecError(file, field, problem, value, f"{did_you_mean(value, allowed)}pick one")
    named = NAMES_OR_PATHS.get(name)
    if named is not None and isinstance(value, str):
        problem = f"`{name}` must be one of {', '.join(named)} or an import path package.module:name"
        return SpecError(file, field, problem, value, f"{did_you_mean(value, named)}pick one")
    bounds = RANGES.get(name)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and not bounds.holds(value):
        return SpecError(file, field, f"`{name}` must be {bounds.text(name)}", value,
                         f"give `{name}` a value in that range (`hpsearch settings` lists them)")
    want = base_type(name)
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        want, "a mapping"
    )
    return SpecError(file, field, f"`{name}` must be {kind}", value, f"write {kind} for `{name}`")


def unknown_setting(file: str, field: str, name: str) -> SpecError:
    """A name that is no training setting, with the closest settings (config.py's wording)."""
    hint = did_you_mean(name, field_names()).rstrip() or "run `hpsearch settings` to list them"
    return SpecError(file, field, f"unknown setting `{name}`", None, hint)


def validate_model(
    cls: type[ModelT], data: Mapping[str, Any], file: str, field: str, noun: str = "key",
    allowed: Iterable[str] | None = None, owner: str = "",
) -> ModelT:
    """`cls(**data)`, with pydantic's errors turned into ONE SpecError.

    An unknown key is reported first because a misspelt key usually explains the other errors
    (`n_warmup_step: 5` is unknown and `n_warmup_steps` silently takes its default).
    """
    try:
        return cls.model_validate(dict(data))
    except ValidationError as err:
        errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    where = join(field, *first["loc"])
    if first["type"] == "extra_forbidden":
        keys = list(cls.model_fields) if allowed is None else list(allowed)
        raise unknown_name(file, where, noun, first["loc"][-1], keys, owner)
    raise _translate(first, file, where)


def spec_problem(problem: str, fix: str, value: Any = None) -> PydanticCustomError:
    """An error for a pydantic validator, reported by `validate_model` with this fix."""
    return PydanticCustomError(
        "spec", "{problem}", {"problem": problem, "fix": fix, "value": value}
    )


_WANTS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}

_BOUNDS = {
    "greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"
}


def _translate(error: Mapping[str, Any], file: str, where: str) -> SpecError:
    kind, value = error["type"], error.get("input")
    if kind in _WANTS:
        return bad_type(file, where, _WANTS[kind], value)
    if kind == "missing":
        return SpecError(file, where, "is required", None, f"add `{where.rsplit('.', 1)[-1]}:`")
    if kind in _BOUNDS:
        op = _BOUNDS[kind]
        bound = next(iter(error["ctx"].values()))
        return SpecError(file, where, f"must be {op} {bound}", value, f"use a value {op} {bound}")
    if kind == "spec":  # raised by our own validators with the fix in the context
        ctx = error["ctx"]
        return SpecError(file, where, ctx["problem"], ctx["value"], ctx["fix"])
    return SpecError(file, where, error["msg"], value, f"correct `{where}`")
