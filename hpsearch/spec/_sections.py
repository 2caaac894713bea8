"""The `base:` and `objective:` sections of a study file.

`base` holds fixed training settings, checked with config.coerce_value like `--set`; two
shorthands name a factory and its arguments in one entry:
    model: {factory: "mypkg.nets:build", args: {hidden: 64}}  -> model, model_args
    data:  {factory: "mypkg.data:load", args: {size: 1000}}   -> dataset, dataset_args
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict

from hpsearch.config import is_setting
from hpsearch.errors import SpecError
from hpsearch.metrics import METRICS
from hpsearch.spec._messages import (
    bad_type,
    check_keys,
    check_setting_value,
    join,
    require_mapping,
    unknown_name,
    unknown_setting,
)

DIRECTIONS = ("maximize", "minimize")
_FACTORY_FORMS = {"model": ("model", "model_args"), "data": ("dataset", "dataset_args")}
_FACTORY_EXAMPLE = '{factory: "mypkg.nets:build", args: {hidden: 64}}'


class ObjectiveSpec(BaseModel):
    """What a study optimizes: one direction per metric (several metrics: multi-objective)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metrics: list[str]
    directions: list[str]


def parse_objective(data: Any, file: str, field: str = "objective") -> ObjectiveSpec:
    """`{metric: NAME | [NAMES], direction: DIR | [DIRS]}`; directions default to each
    metric's natural one (metrics.py)."""
    mapping = require_mapping(data, file, field, "{metric: val_acc, direction: maximize}")
    check_keys(mapping, ("metric", "direction"), file, field)
    if "metric" not in mapping:
        fix = f"add `metric: NAME` with one of: {', '.join(METRICS)}"
        raise SpecError(file, join(field, "metric"), "is required", None, fix)
    metrics = _names(mapping["metric"], file, join(field, "metric"), "metric", METRICS)
    if "direction" not in mapping:
        return ObjectiveSpec(metrics=metrics, directions=[METRICS[m].direction for m in metrics])
    directions = _names(mapping["direction"], file, join(field, "direction"), "direction",
                        DIRECTIONS)
    if len(directions) != len(metrics):
        problem = f"gives {len(directions)} direction(s) for {len(metrics)} metric(s)"
        fix = "give one direction per metric, or leave `direction` out for their natural ones"
        raise SpecError(file, join(field, "direction"), problem, None, fix)
    return ObjectiveSpec(metrics=metrics, directions=directions)


def _names(raw: Any, file: str, field: str, noun: str, known: Any) -> list[str]:
    """A name or a list of names, each known and listed once."""
    items = [(field, raw)] if not isinstance(raw, list) else [
        (join(field, index), item) for index, item in enumerate(raw)
    ]
    if not items:
        raise SpecError(file, field, "must not be empty", raw, f"name at least one {noun}")
    names: list[str] = []
    for where, name in items:
        if not isinstance(name, str):
            raise bad_type(file, where, f"a {noun} name", name)
        if name not in known:
            raise unknown_name(file, where, noun, name, known)
        if noun == "metric" and name in names:
            raise SpecError(file, where, "duplicate metric", name, "list each metric once")
        names.append(name)
    return names


def parse_base(data: Any, file: str, field: str = "base") -> dict[str, Any]:
    """Fixed settings, type-checked; whole dicts ordered before dotted `model_args.x` entries
    so that `resolve_config` applies the entries on top of the dict."""
    mapping = require_mapping(data, file, field, "{model: mlp, epochs: 20}")
    settings: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, value in mapping.items():
        where = join(field, key)
        if key in _FACTORY_FORMS and (isinstance(value, Mapping) or key == "data"):
            factory, args = _factory(value, file, where)
            name_key, args_key = _FACTORY_FORMS[key]
            entries = {name_key: factory, args_key: args}
        elif is_setting(str(key)):
            entries = {key: check_setting_value(file, where, key, value)}
        else:
            raise unknown_setting(file, where, str(key))
        for name, setting in entries.items():
            if name in origins:
                raise SpecError(file, where, f"`{name}` is also set by {origins[name]}", None,
                                "set it in one place only")
            settings[name], origins[name] = setting, where
    return dict(sorted(settings.items(), key=lambda item: "." in item[0]))


def _factory(value: Any, file: str, field: str) -> tuple[str, dict[str, Any]]:
    example = _FACTORY_EXAMPLE + (", or use `dataset: NAME`" if field.endswith("data") else "")
    mapping = require_mapping(value, file, field, example)
    check_keys(mapping, ("factory", "args"), file, field)
    factory = mapping.get("factory")
    if not isinstance(factory, str) or ":" not in factory:
        raise SpecError(file, join(field, "factory"), 'must be an import path "module:function"',
                        factory, 'write e.g. factory: "mypkg.nets:build"')
    args = mapping.get("args") or {}
    return factory, dict(require_mapping(args, file, join(field, "args"), "{hidden: 64}"))
