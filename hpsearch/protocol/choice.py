"""A phase's choice from its stored trials, written back onto its study.

The choice is stored on the study (user attribute `selection`), so later phases, notebooks
and optuna-dashboard all read the same one instead of recomputing it.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.protocol.chain import ATTR_SELECTION
from hpsearch.protocol.selection import Candidate, Criterion, keep_or_baseline, select

ATTR_CRITERIA = "criteria"  # trial attribute: every criterion of PROTOCOL.md over its curves
ATTR_BASELINE = "baseline"  # trial attribute: True for the inherited configuration, unchanged


def criteria_of(spec) -> list[Criterion]:
    """The study file's selection criteria as `Criterion` objects."""
    return [Criterion(s.criterion, s.direction, s.tolerance) for s in spec.selection]


def candidates(study: optuna.Study) -> list[Candidate]:
    """Completed trials with their stored criteria (pruned ones are eliminated)."""
    return [
        Candidate(t.number, t.user_attrs.get(ATTR_CRITERIA, {}), bool(t.user_attrs.get(ATTR_BASELINE)))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]


def choose(study: optuna.Study, spec) -> dict[str, Any] | None:
    """Select among the study's completed trials, store the choice on it, and return it."""
    pool = candidates(study)
    if not pool:
        return None
    criteria = criteria_of(spec)
    choice = select(pool, criteria)
    if spec.baseline:
        choice = keep_or_baseline(choice, pool, criteria[0], spec.keep_tolerance)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == choice.trial)
    stored = {
        **choice.to_dict(),
        **_trial_facts(trial),
        "main_criterion": criteria[0].name,
        "skipped": False,
        "extra_epochs": _extra_epochs(pool, choice.trial),
        "eliminated": _eliminated(study),
    }
    study.set_user_attr(ATTR_SELECTION, stored)
    return stored


def _eliminated(study: optuna.Study) -> list[dict[str, Any]]:
    """Pruned trials and why (diverged, oscillating, a pruner's verdict...)."""
    return [
        {"trial": t.number, "reason": t.user_attrs.get("reason", "pruned"), "params": t.params}
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    ]


def _extra_epochs(pool: list[Candidate], chosen: int) -> float | None:
    """Epochs to converge beyond the baseline's: what a technique costs (the scheduler's
    criterion 3 [000]). None without a baseline; negative when the choice converges sooner."""
    baseline = next((c for c in pool if c.baseline), None)
    picked = next(c for c in pool if c.trial == chosen)
    if baseline is None:
        return None
    mine, theirs = picked.values.get("convergence_epochs"), baseline.values.get("convergence_epochs")
    return None if mine is None or theirs is None else mine - theirs


def _trial_facts(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "config": trial.user_attrs.get("config", {}),
        "criteria": trial.user_attrs.get(ATTR_CRITERIA, {}),
        "params": trial.params,
    }
