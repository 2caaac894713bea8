"""`spaces:`: one search space per model family, for phases whose knobs depend on the model.

PROTOCOL.md phase 3 changes the architecture [000]: Conv2D blocks and widths for a CNN,
hidden sizes for an MLP, nothing alike between them. A study file gives one space per family
it supports; a user model factory may instead declare its own knobs (train/registry.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from hpsearch.errors import SpecError
from hpsearch.spec._messages import check_keys, require_mapping
from hpsearch.spec.space import SearchSpace, parse_space

MODEL_FAMILIES = ("mlp", "cnn", "torchvision", "factory")
_SPACES_EXAMPLE = "{mlp: {width: {values: [64, 128]}}, cnn: {depth: {values: [2, 3, 4]}}}"
# A factory's declared knobs are its keyword arguments: `hidden` sets `model_args.hidden`.
FACTORY_PREFIX = "model_args."


def model_family(model: str) -> str:
    """mlp, cnn, torchvision (`torchvision:NAME`), or factory (registered name, import path)."""
    if model in ("mlp", "cnn"):
        return model
    return "torchvision" if model.startswith("torchvision:") else "factory"


def parse_spaces(data: Any, file: str, field: str = "spaces") -> dict[str, SearchSpace]:
    """Family -> its space; every space is validated now, whichever model runs later."""
    mapping = require_mapping(data, file, field, _SPACES_EXAMPLE)
    if not mapping:
        raise SpecError(file, field, "must not be empty", dict(mapping),
                        f"give a space for at least one of: {', '.join(MODEL_FAMILIES)}")
    check_keys(mapping, MODEL_FAMILIES, file, field, "model family")
    return {family: parse_space(raw, file, f"{field}.{family}")
            for family, raw in mapping.items()}


def declared_space(declared: Mapping[str, Any], model: str) -> SearchSpace:
    """The knobs a model factory declares, names relative to `model_args`; messages name
    the model and the field as the factory wrote it (`search_space.hidden.low`)."""
    return parse_space(declared, f"model `{model}`", "search_space", prefix=FACTORY_PREFIX)


def missing_family(
    file: str, model: str, spaces: Mapping[str, SearchSpace]
) -> SpecError:
    """No space for `model`: say which family is missing and which the file has."""
    family = model_family(model)
    problem = f"no search space for model family `{family}` (model `{model}`)"
    fix = f"add `spaces.{family}`"
    if family == "factory":
        fix += ", or declare the factory's knobs with @hpsearch.model(NAME, space={...})"
    fix += f"; this study has spaces for: {', '.join(spaces)}"
    return SpecError(file, "spaces", problem, None, fix)
