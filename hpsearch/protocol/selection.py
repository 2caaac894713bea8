"""The protocol's choice among a phase's trials: criteria in order, each with a tolerance.

Optuna's `best_trial` maximises one number. The protocol instead reads one main criterion
and breaks near-ties with the next ones [000, 004]: among the completed trials within a
tolerance of the best main criterion (say 0.5 accuracy points), the next criterion decides,
and so on. A technique phase then keeps its best trial only if it beats the inherited
baseline by more than the phase's tolerance; otherwise the baseline stays.
Pure functions over plain values, so they can be tested on tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Criterion:
    """One selection criterion: a metric name, its direction and an absolute tolerance."""

    name: str
    direction: str  # "maximize" | "minimize"
    tolerance: float = 0.0  # in the criterion's own units (accuracy 0.005 = 0.5 points)


@dataclass(frozen=True)
class Candidate:
    """A completed trial as selection sees it: its number and its criteria values."""

    trial: int
    values: Mapping[str, Any]
    baseline: bool = False


@dataclass
class Choice:
    """The selected trial, why, and the runners-up with their criteria."""

    trial: int
    reason: str
    steps: list[str] = field(default_factory=list)
    runners_up: list[dict[str, Any]] = field(default_factory=list)
    kept_baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "reason": self.reason,
            "steps": self.steps,
            "runners_up": self.runners_up,
            "kept_baseline": self.kept_baseline,
        }


def score(candidate: Candidate, criterion: Criterion) -> float:
    """The candidate's value as a number to maximise; missing or NaN values rank last."""
    value = candidate.values.get(criterion.name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return float(value) if criterion.direction == "maximize" else -float(value)


def select(candidates: Sequence[Candidate], criteria: Sequence[Criterion]) -> Choice:
    """Narrow the pool criterion by criterion (within tolerance of the best), then pick.

    A final tie goes to the best main criterion, then to the lowest trial number.
    """
    if not candidates:
        raise ValueError("select() needs at least one candidate")
    pool = list(candidates)
    steps = []
    for criterion in criteria:
        pool, step = _within_tolerance(pool, criterion)
        steps.append(step)
        if len(pool) == 1:
            break
    main = criteria[0]
    chosen = min(pool, key=lambda c: (-score(c, main), c.trial))
    runners = [c for c in candidates if c.trial != chosen.trial]
    return Choice(
        trial=chosen.trial,
        reason=_reason(chosen, criteria, steps),
        steps=steps,
        runners_up=_runners_up(runners, criteria),
    )


def _within_tolerance(
    pool: list[Candidate], criterion: Criterion
) -> tuple[list[Candidate], str]:
    best = max(score(c, criterion) for c in pool)
    kept = [c for c in pool if score(c, criterion) >= best - criterion.tolerance]
    shown = _plain(best, criterion)
    step = (
        f"{criterion.name}: best {shown:.4g}; {len(kept)} of {len(pool)} trials within "
        f"{criterion.tolerance:g}"
    )
    return kept, step


def _plain(best: float, criterion: Criterion) -> float:
    return best if criterion.direction == "maximize" else -best


def _reason(chosen: Candidate, criteria: Sequence[Criterion], steps: list[str]) -> str:
    values = ", ".join(
        f"{c.name} {chosen.values.get(c.name):.4g}"
        for c in criteria
        if isinstance(chosen.values.get(c.name), (int, float))
    )
    return f"trial {chosen.trial} ({values}) after: " + "; ".join(steps)


def _runners_up(candidates: Sequence[Candidate], criteria: Sequence[Criterion], top: int = 5):
    main = criteria[0]
    ranked = sorted(candidates, key=lambda c: (-score(c, main), c.trial))[:top]
    return [
        {"trial": c.trial, **{k.name: c.values.get(k.name) for k in criteria}} for c in ranked
    ]


def keep_or_baseline(
    choice: Choice, candidates: Sequence[Candidate], main: Criterion, keep_tolerance: float
) -> Choice:
    """Keep the technique only if it beats the baseline by more than `keep_tolerance`.

    PROTOCOL.md: "drop a technique that gains nothing" [000]; a gain within noise is nothing.
    """
    baseline = next((c for c in candidates if c.baseline), None)
    chosen = next(c for c in candidates if c.trial == choice.trial)
    if baseline is None:
        return choice
    if chosen.baseline:
        choice.kept_baseline = True
        choice.reason = f"baseline kept: {choice.reason}"
        return choice
    gain = score(chosen, main) - score(baseline, main)
    if gain > keep_tolerance:
        choice.reason += f"; beats the baseline (trial {baseline.trial}) by {gain:.4g}"
        return choice
    return Choice(
        trial=baseline.trial,
        reason=(
            f"baseline kept (trial {baseline.trial}): the best technique, trial {chosen.trial}, "
            f"gains {gain:.4g} on {main.name}, not more than the tolerance {keep_tolerance:g}"
        ),
        steps=choice.steps,
        runners_up=choice.runners_up,
        kept_baseline=True,
    )
