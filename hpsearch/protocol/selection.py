"""The protocol's choice among a phase's trials: criteria in order, each with a tolerance.

Optuna's `best_trial` maximises one number. The protocol instead reads one main criterion
and breaks near-ties with the next ones [000, 004]: among the completed trials within a
tolerance of the best main criterion (say 0.5 accuracy points), the next criterion decides,
and so on. In a technique phase only the techniques that beat the inherited baseline's main
criterion by more than the phase's tolerance compete with it; if none does, the baseline
stays.
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


def select_over_baseline(
    candidates: Sequence[Candidate], criteria: Sequence[Criterion], keep_tolerance: float,
    peak_kept_within: float | None = None,
) -> Choice:
    """The criteria in order among the baseline and the techniques that earn their keep.

    PROTOCOL.md: "drop a technique that gains nothing" [000]; a gain within noise is nothing.
    The rule runs before the later criteria, not after them: a tie-breaker (the smallest
    overfitting gap, the most stable curve) ranks only techniques that beat the baseline's main
    criterion by more than `keep_tolerance`. Applied after them, it judged the tie-breaker's
    pick alone, and a pick that gained nothing threw out a runner-up that did (Fashion-MNIST,
    regularization: dropout at +0.36 points dropped because a lower-gap dropout gained -0.04).
    With `peak_kept_within`, a technique must also keep the baseline's peak validation
    accuracy to within that much: "validation accuracy kept or improved" is the BatchNorm
    phase's third criterion [000], a condition, not the last tie-breaker (Fashion-MNIST:
    BatchNorm won on stability while losing 0.45 points of peak accuracy).
    Without a baseline trial (it failed), the plain selection.
    """
    baseline = next((c for c in candidates if c.baseline), None)
    if baseline is None:
        return select(candidates, criteria)
    main = criteria[0]
    gains = {c.trial: score(c, main) - score(baseline, main) for c in candidates}
    earning = [c for c in candidates
               if c.baseline or (gains[c.trial] > keep_tolerance
                                 and _keeps_peak(c, baseline, peak_kept_within))]
    choice = select(earning, criteria)
    runners_up = _runners_up([c for c in candidates if c.trial != choice.trial], criteria)
    if len(earning) == 1:
        return _no_technique_earns(candidates, baseline, main, gains, keep_tolerance,
                                   peak_kept_within, runners_up)
    techniques = f"{len(earning) - 1} of {len(candidates) - 1} completed techniques"
    choice.steps.insert(0, f"{techniques} beat the baseline (trial {baseline.trial}) by more "
                           f"than {keep_tolerance:g} on {main.name}"
                           + _peak_words(peak_kept_within, plural=True))
    earn_words = (f"{techniques} improve the {main.words()} of the baseline (trial "
                  f"{baseline.trial}) by more than {_amount(main, keep_tolerance, signed=False)}"
                  + ("" if peak_kept_within is None else
                     f" and lose at most {peak_kept_within * 100:g} points of its peak"))
    choice.runners_up = runners_up
    if choice.trial == baseline.trial:
        choice.kept_baseline = True
        choice.reason = f"baseline kept: {choice.reason}"
        choice.why = (f"{earn_words}; among them and the baseline, {choice.why}; the baseline "
                      "is kept")
        return choice
    gain = gains[choice.trial]
    choice.reason += f"; beats the baseline (trial {baseline.trial}) by {gain:.4g}"
    choice.why = (f"{earn_words}; among them and the baseline, {choice.why}; it beats the "
                  f"baseline by {_amount(main, gain)}")
    return choice


PEAK = "best_val_acc"  # the peak validation accuracy, as `peak_kept_within` reads it


def _amount(criterion: Criterion, gain: float, signed: bool = True) -> str:
    """A gain in words: `+0.23 points` for an accuracy, `+0.00264` otherwise; unsigned, a
    tolerance as written (`0.2 points`)."""
    if not signed:
        return f"{gain * 100:g} points" if criterion.accuracy else f"{gain:g}"
    return f"{gain * 100:+.2f} points" if criterion.accuracy else f"{gain:+.3g}"


def _keeps_peak(candidate: Candidate, baseline: Candidate, within: float | None) -> bool:
    if within is None:
        return True
    peak = Criterion(PEAK, "maximize")
    return score(candidate, peak) >= score(baseline, peak) - within


def _peak_words(within: float | None, plural: bool = False) -> str:
    keep = "keep their" if plural else "keeps its"
    return "" if within is None else f" and {keep} {PEAK} to within {within:g} of it"


def _no_technique_earns(candidates: Sequence[Candidate], baseline: Candidate, main: Criterion,
                        gains: Mapping[int, float], keep_tolerance: float,
                        peak_kept_within: float | None, runners_up: list[dict]) -> Choice:
    """The baseline kept, and why: no technique completed, the best one gained too little,
    or it gained but lost more peak accuracy than `peak_kept_within` allows."""
    techniques = [c for c in candidates if not c.baseline]
    if not techniques:
        reason = why = f"baseline kept (trial {baseline.trial}): no technique completed"
    else:
        best = min(techniques, key=lambda c: (-gains[c.trial], c.trial))
        gain = gains[best.trial]
        if gain > keep_tolerance:  # it gained, but lost the peak accuracy it had to keep
            lost = baseline.values.get(PEAK, math.nan) - best.values.get(PEAK, math.nan)
            reason = (f"baseline kept (trial {baseline.trial}): the best technique, trial "
                      f"{best.trial}, gains {gain:.4g} on {main.name} but loses {lost:.4g} "
                      f"{PEAK}, more than the {peak_kept_within:g} it may")
            why = (f"the technique that improves the {main.words()} most, trial {best.trial} "
                   f"(by {_amount(main, gain)}), loses {lost * 100:.2g} points of peak validation "
                   f"accuracy against the baseline (trial {baseline.trial}), more than "
                   f"{peak_kept_within * 100:g} points: the baseline is kept")
        else:
            reason = (f"baseline kept (trial {baseline.trial}): the best technique, trial "
                      f"{best.trial}, gains {gain:.4g} on {main.name}, not more than the "
                      f"tolerance {keep_tolerance:g}")
            why = (f"no technique improves the {main.words()} by more than "
                   f"{_amount(main, keep_tolerance, signed=False)} over the baseline (trial "
                   f"{baseline.trial}): the best technique, trial {best.trial}, moves it by "
                   f"{_amount(main, gain)}; the baseline is kept")
    step = (f"{main.name}: no technique beats the baseline by more than {keep_tolerance:g}"
            f"{_peak_words(peak_kept_within)}")
    return Choice(trial=baseline.trial, reason=reason, steps=[step], kept_baseline=True,
                  runners_up=runners_up, why=why)
