"""The protocol fields of a study file: `eliminate`, `selection`, `precondition`,
`train_longer`.

PROTOCOL.md gives every phase eliminatory criteria, one or two main criteria and
tie-breakers, and some phases apply only in a given state ("regularization, only when
overfitting"; "micro-optimization, only if everything else is sound") [000, 004]. These
fields declare them; the protocol package (selection, chaining) acts on them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hpsearch.config import field_names, is_setting
from hpsearch.errors import SpecError
from hpsearch.metrics import METRICS
from hpsearch.spec._messages import (
    bad_type,
    join,
    require_mapping,
    unknown_name,
    validate_model,
)
from hpsearch.spec._sections import DIRECTIONS, ObjectiveSpec

# The verdicts of protocol.criteria.lr_verdict, in its order; the LR phases eliminate on
# them: overshoot (diverges), saw-teeth, underfitting, undertraining [000].
ELIMINATION_REASONS = ("diverged", "oscillating", "underfitting", "undertrained")
# none: always run; overfits: regularization phase, only when overfitting [000]; sound:
# micro-optimization, only if everything else is sound [000]; improving: only when the
# inherited choice was still improving at its end (the final, longer training).
PRECONDITIONS = ("none", "overfits", "sound", "improving")
_SELECTION_EXAMPLE = "{criterion: best_val_acc, tolerance: 0.005}"


class SelectionSpec(BaseModel):
    """One selection criterion: trials within `tolerance` (absolute, in the criterion's units)
    of the best are equivalent, and the next criterion decides among them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: str  # a metrics.METRICS name
    direction: str  # maximize | minimize
    tolerance: float = 0.0
    label: str = ""  # the criterion in words, for the choice's reason
    accuracy: bool = False  # an accuracy (a fraction): its tolerance reads in points


class _SelectionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    criterion: str
    direction: str | None = None  # default: the criterion's natural direction (METRICS)
    tolerance: float = Field(0.0, ge=0)


_TRAIN_LONGER_EXAMPLE = "{factor: 2, max_epochs: 80, patience: 10}"


class TrainLongerSpec(BaseModel):
    """When the inherited choice is undertrained (its train loss still falls steeply at the
    last epoch [000]), this phase's trials run `factor` times its epochs, at most `max_epochs`
    (never fewer than they would), and stop early once `patience` epochs bring no new
    validation peak (0: never), so the trials that have converged do not pay for the rest."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    factor: float = Field(2.0, gt=1)
    max_epochs: int = Field(80, ge=1)
    patience: int = Field(10, ge=0)


def parse_train_longer(raw: Any, file: str, field: str = "train_longer") -> TrainLongerSpec | None:
    """`train_longer: {factor, max_epochs, patience}`, or None when the field is absent."""
    if raw is None:
        return None
    mapping = require_mapping(raw, file, field, _TRAIN_LONGER_EXAMPLE)
    return validate_model(TrainLongerSpec, mapping, file, field)


def parse_eliminate(names: list[str], file: str, field: str = "eliminate") -> list[str]:
    """The `lr_verdict` reasons that prune a trial, each known and listed once."""
    seen: list[str] = []
    for index, name in enumerate(names):
        where = join(field, index)
        if name not in ELIMINATION_REASONS:
            raise unknown_name(file, where, "elimination reason", name, ELIMINATION_REASONS)
        if name in seen:
            raise SpecError(file, where, "duplicate reason", name, "list each reason once")
        seen.append(name)
    return seen


def parse_peak_kept_within(top: Any, file: str) -> float | None:
    """`peak_kept_within` bounds what a technique may lose against the baseline trial, so it
    needs one."""
    if top.peak_kept_within is not None and not top.baseline:
        raise SpecError(file, "peak_kept_within", "needs a baseline trial", top.peak_kept_within,
                        "add `baseline: true`, or remove `peak_kept_within`")
    return top.peak_kept_within


def parse_follow(names: list[str], file: str, field: str = "follow") -> list[str]:
    """Settings whose top-level categorical follows the inherited value; each a setting."""
    for index, name in enumerate(names):
        if not is_setting(name):
            raise unknown_name(file, join(field, index), "setting", name, field_names())
    return list(names)


def parse_precondition(name: str, file: str, field: str = "precondition") -> str:
    """`none`, `overfits` or `sound`."""
    if name not in PRECONDITIONS:
        raise unknown_name(file, field, "precondition", name, PRECONDITIONS)
    return name


def parse_selection(
    raw: Any, objective: ObjectiveSpec, file: str, field: str = "selection"
) -> list[SelectionSpec]:
    """The selection criteria in order; absent: the objective's metrics, tolerance 0."""
    if raw is None:
        return [selection_spec(m, d) for m, d in zip(objective.metrics, objective.directions)]
    if not isinstance(raw, list):
        raise bad_type(file, field, "a list", raw)
    if not raw:
        raise SpecError(file, field, "must not be empty", raw, "list at least one criterion, "
                        "or leave `selection` out to select on the objective")
    entries: list[SelectionSpec] = []
    for index, item in enumerate(raw):
        entry = _selection_entry(item, file, join(field, index))
        if any(e.criterion == entry.criterion for e in entries):
            raise SpecError(file, join(field, index, "criterion"), "duplicate criterion",
                            entry.criterion, "list each criterion once")
        entries.append(entry)
    return entries


def _selection_entry(item: Any, file: str, field: str) -> SelectionSpec:
    mapping = require_mapping(item, file, field, _SELECTION_EXAMPLE)
    entry = validate_model(_SelectionEntry, mapping, file, field)
    if entry.criterion not in METRICS:
        raise unknown_name(file, join(field, "criterion"), "criterion", entry.criterion, METRICS)
    direction = entry.direction
    if direction is None:
        direction = METRICS[entry.criterion].direction
    if direction not in DIRECTIONS:
        raise unknown_name(file, join(field, "direction"), "direction", direction, DIRECTIONS)
    return selection_spec(entry.criterion, direction, entry.tolerance)


def selection_spec(criterion: str, direction: str, tolerance: float = 0.0) -> SelectionSpec:
    """A criterion with its words: the metric's description without its parenthesis."""
    metric = METRICS.get(criterion)
    label = metric.description.split(" (")[0] if metric else criterion.replace("_", " ")
    return SelectionSpec(criterion=criterion, direction=direction, tolerance=tolerance,
                         label=label, accuracy=bool(metric and metric.needs_accuracy))
