"""A phase's choice among its trials: PROTOCOL.md's criteria in order, then the baseline rule.

Pure: it reads the trials given and returns a `PhaseChoice`; the runner stores it on the
study (records.write_choice), so later phases, notebooks and optuna-dashboard all read the
same choice instead of recomputing it.
"""

from __future__ import annotations

from typing import Sequence

from optuna.trial import FrozenTrial, TrialState

from hpsearch.protocol.selection import Candidate, Criterion, select, select_over_baseline
from hpsearch.records import PhaseChoice, TrialFacts, read_config, read_criteria


def criteria_of(spec) -> list[Criterion]:
    """The study file's selection criteria as `Criterion` objects, named in words."""
    return [Criterion(s.criterion, s.direction, s.tolerance, s.label, s.accuracy)
            for s in spec.selection]


def candidates(trials: Sequence[FrozenTrial]) -> list[Candidate]:
    """Completed trials with their stored criteria (pruned ones are eliminated)."""
    return [Candidate(t.number, read_criteria(t).to_dict(), TrialFacts.of(t).baseline)
            for t in trials if t.state == TrialState.COMPLETE]


def choose(trials: Sequence[FrozenTrial], spec) -> PhaseChoice | None:
    """The phase's choice among `trials` (a study's), or None when none completed."""
    pool = candidates(trials)
    if not pool:
        return None
    criteria = criteria_of(spec)
    if spec.baseline:
        choice = select_over_baseline(pool, criteria, spec.keep_tolerance,
                                      spec.peak_kept_within)
    else:
        choice = select(pool, criteria)
    by_number = {t.number: t for t in trials}
    trial = by_number[choice.trial]
    return PhaseChoice(
        trial=choice.trial,
        config=read_config(trial),
        criteria=read_criteria(trial).to_dict(),
        params=_params_of(trial),
        reason=choice.reason,
        main_criterion=criteria[0].name,
        kept_baseline=choice.kept_baseline,
        steps=choice.steps,
        why=choice.why,
        runners_up=[{**r, "params": _params_of(by_number[r["trial"]])}
                    for r in choice.runners_up],
        eliminated=_eliminated(trials),
        extra_epochs=_extra_epochs(pool, choice.trial),
    )


def _params_of(trial: FrozenTrial) -> dict:
    """The trial's parameters by name. A trial's parameters come back in the order they were
    written: this worker's copy in the order sampled, a read of another worker's trial in the
    order its rows were stored, which differs between workers (a parameter new to the study
    is stored at once, the others with the start facts). Two workers of one phase print and
    store the same choice alike."""
    return dict(sorted(trial.params.items()))


def _eliminated(trials: Sequence[FrozenTrial]) -> list[dict]:
    """Pruned trials and why (diverged, oscillating, a pruner's verdict...)."""
    return [{"trial": t.number, "reason": TrialFacts.of(t).reason or "pruned",
             "params": _params_of(t)}
            for t in trials if t.state == TrialState.PRUNED]


def _extra_epochs(pool: list[Candidate], chosen: int) -> float | None:
    """Epochs to converge beyond the baseline's: what a technique costs (the scheduler's
    criterion 3 [000]). None without a baseline; negative when the choice converges sooner."""
    baseline = next((c for c in pool if c.baseline), None)
    picked = next(c for c in pool if c.trial == chosen)
    if baseline is None:
        return None
    mine, theirs = picked.values.get("convergence_epochs"), baseline.values.get("convergence_epochs")
    return None if mine is None or theirs is None else mine - theirs
