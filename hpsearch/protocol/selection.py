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
    label: str = ""  # in words, for the explanation ("peak validation accuracy")
    accuracy: bool = False  # an accuracy (a fraction): its tolerance reads in points

    def words(self) -> str:
        return self.label or self.name

    def tolerance_words(self) -> str:
        """`0.5 points` for an accuracy, else the tolerance in the criterion's own units."""
        return f"{self.tolerance * 100:g} points" if self.accuracy else f"{self.tolerance:g}"


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
    why: str = ""  # the steps in words: "3 of 7 trials within 0.5 points of ..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "reason": self.reason,
            "steps": self.steps,
            "runners_up": self.runners_up,
            "kept_baseline": self.kept_baseline,
            "why": self.why,
        }


@dataclass(frozen=True)
class Step:
    """One criterion's narrowing of the pool: `kept` of `of` trials within its tolerance of
    the best value."""

    criterion: Criterion
    best: float
    kept: int
    of: int


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
    steps: list[Step] = []
    for criterion in criteria:
        pool, step = _within_tolerance(pool, criterion)
        steps.append(step)
        if len(pool) == 1:
            break
    main = criteria[0]
    chosen = min(pool, key=lambda c: (-score(c, main), c.trial))
    runners = [c for c in candidates if c.trial != chosen.trial]
    lines = [_step_line(step) for step in steps]
    return Choice(
        trial=chosen.trial,
        reason=_reason(chosen, criteria, lines),
        steps=lines,
        runners_up=_runners_up(runners, criteria),
        why=explain(steps, tie=len(pool) > 1),
    )


def _within_tolerance(pool: list[Candidate], criterion: Criterion) -> tuple[list[Candidate], Step]:
    best = max(score(c, criterion) for c in pool)
    kept = [c for c in pool if score(c, criterion) >= best - criterion.tolerance]
    return kept, Step(criterion, _plain(best, criterion), len(kept), len(pool))


def _step_line(step: Step) -> str:
    return (f"{step.criterion.name}: best {step.best:.4g}; {step.kept} of {step.of} trials "
            f"within {step.criterion.tolerance:g}")


def explain(steps: Sequence[Step], tie: bool = False) -> str:
    """The selection in words: `3 of 7 trials within 0.5 points of the highest peak
    validation accuracy (0.9713); the lowest validation loss at the peak decided (0.081)`."""
    parts = []
    for index, step in enumerate(steps):
        c = step.criterion
        extreme = "highest" if c.direction == "maximize" else "lowest"
        if step.kept == 1:
            among = " among them" if index else ""
            parts.append(f"the {extreme} {c.words()}{among} decided ({step.best:.4g})")
            break
        who = f"{step.kept} of {step.of} trials" if index == 0 else f"{step.kept} of them"
        parts.append(f"{who} within {c.tolerance_words()} of the {extreme} {c.words()} "
                     f"({step.best:.4g})")
    if tie:
        parts.append(f"a tie on every criterion: the best {steps[0].criterion.words()}, then "
                     "the lowest trial number, decided")
    return "; ".join(parts)


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
        choice.why = f"{choice.why}; that is the baseline (trial {baseline.trial}): kept"
        return choice
    gain = score(chosen, main) - score(baseline, main)
    if gain > keep_tolerance:
        choice.reason += f"; beats the baseline (trial {baseline.trial}) by {gain:.4g}"
        choice.why += f"; it beats the baseline (trial {baseline.trial}) by {gain:.4g}"
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
        why=(f"{choice.why}; but trial {chosen.trial} gains only {gain:.4g} {main.words()} "
             f"over the baseline (trial {baseline.trial}), not more than {keep_tolerance:g}: "
             "the baseline is kept"),
    )
