"""`spaces:`: one search space per model family, for phases whose knobs depend on the model.

PROTOCOL.md phase 3 changes the architecture [000]: Conv2D blocks and widths for a CNN,
hidden sizes for an MLP, nothing alike between them. A study file gives one space per family
it supports; `factory: declared` searches the knobs a user's model declares instead
(`@hpsearch.declare(space=...)`, train/registry.py): only the architecture phase asks for
them, so no other phase searches them again.
"""

from __future__ import annotations

from typing import Any, Mapping

from hpsearch.errors import SpecError
from hpsearch.spec._messages import check_keys, require_mapping
from hpsearch.spec.space import SearchSpace, parse_space

MODEL_FAMILIES = ("mlp", "cnn", "torchvision", "factory")
DECLARED = "declared"  # `spaces.factory: declared`: the model's own declared knobs
_SPACES_EXAMPLE = "{mlp: {width: {values: [64, 128]}}, cnn: {depth: {values: [2, 3, 4]}}}"


class MissingSpace(SpecError):
    """No space for this model: a protocol phase is then skipped with `reason`."""

    def __init__(self, file: str, problem: str, fix: str):
        super().__init__(file, "spaces", problem, None, fix)
        self.reason = problem
# A factory's declared knobs are its keyword arguments: `hidden` sets `model_args.hidden`.
FACTORY_PREFIX = "model_args."


def model_family(model: str) -> str:
    """mlp, cnn, torchvision (`torchvision:NAME`), or factory (registered name, import path)."""
    if model in ("mlp", "cnn"):
        return model
    return "torchvision" if model.startswith("torchvision:") else "factory"


def parse_spaces(
    data: Any, file: str, field: str = "spaces"
) -> tuple[dict[str, SearchSpace], bool]:
    """(family -> its space, whether `factory: declared`); every space is validated now,
    whichever model runs later."""
    mapping = require_mapping(data, file, field, _SPACES_EXAMPLE)
    if not mapping:
        raise SpecError(file, field, "must not be empty", dict(mapping),
                        f"give a space for at least one of: {', '.join(MODEL_FAMILIES)}")
    check_keys(mapping, MODEL_FAMILIES, file, field, "model family")
    uses_declared = mapping.get("factory") == DECLARED
    spaces = {family: parse_space(raw, file, f"{field}.{family}")
              for family, raw in mapping.items() if not (family == "factory" and uses_declared)}
    return spaces, uses_declared


# The built-in families a phase may choose between (`families: [mlp, cnn]`): both are
# hpsearch's own models, so each honours its own knobs.
CHOOSABLE_FAMILIES = ("mlp", "cnn")
_FAMILIES_FIX = "list two or more of: mlp, cnn, each with its space under `spaces`"


def parse_family_choice(
    families: list[str], raw_spaces: Any, file: str, field: str = "families"
) -> SearchSpace | None:
    """`families: [mlp, cnn]`: one space that chooses the model among them, each branch that
    family's space (`model: {choices: [mlp, cnn], when: {mlp: ..., cnn: ...}}`)."""
    if not families:
        return None
    for index, family in enumerate(families):
        if family not in CHOOSABLE_FAMILIES or families.index(family) != index:
            raise SpecError(file, f"{field}.{index}", "unknown or repeated model family",
                            family, _FAMILIES_FIX)
        if not isinstance(raw_spaces, Mapping) or family not in raw_spaces:
            raise SpecError(file, f"{field}.{index}", f"has no space `spaces.{family}`",
                            family, _FAMILIES_FIX)
    if len(families) < 2:
        raise SpecError(file, field, "must list two families or more", families,
                        _FAMILIES_FIX)
    when = {family: raw_spaces[family] for family in families}
    return parse_space({"model": {"choices": list(families), "when": when}}, file, "spaces")


def declared_space(declared: Mapping[str, Any], model: str, file: str = "") -> SearchSpace:
    """The knobs a model factory declares, names relative to `model_args`; messages name
    the study file, the model and the field as the factory wrote it
    (`studies/architecture.yaml: model `tiny`: search_space.hidden.low`)."""
    label = f"{file}: model `{model}`" if file else f"model `{model}`"
    return parse_space(declared, label, "search_space", prefix=FACTORY_PREFIX)


def missing_family(file: str, model: str, families: list[str]) -> MissingSpace:
    """No space for `model`: say which family is missing and which the file has."""
    family = model_family(model)
    problem = f"no search space for model family `{family}` (model `{model}`)"
    fix = f"add `spaces.{family}`"
    if family == "factory":
        fix += " (or `spaces.factory: declared` to search the knobs the model declares)"
    fix += f"; this study has spaces for: {', '.join(families)}"
    return MissingSpace(file, problem, fix)


def no_declared_knobs(file: str, model: str) -> MissingSpace:
    """`spaces.factory: declared`, but the model declares no knobs."""
    return MissingSpace(
        file, f"model `{model}` declares no architecture knobs to search",
        "declare them: @hpsearch.declare(space={\"hidden\": {\"type\": \"int\", \"low\": 16, "
        "\"high\": 256}}) on the factory or class (or set its `search_space` attribute)")
