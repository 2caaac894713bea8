"""Acting on an `undertrained` verdict: the next phase trains longer, with early stopping.

The protocol's own criteria mark a choice `undertrained` when its train loss still falls
steeply at the last epoch: more epochs would still pay [000]. A phase that keeps judging its
techniques at the epochs its parent ran then judges regularization, BatchNorm or a scheduler
before their gains can show (a scheduler "costs extra epochs" [000]; the reference runs use
1000 [001]). A phase file with `train_longer:` (spec/_protocol_fields.TrainLongerSpec) gives
its trials `factor` times the epochs, up to `max_epochs`, and early stopping after
`patience` epochs without a new validation peak, so converged trials stop paying. A choice
that stopped early has met its plateau: it is not undertrained, whatever its train loss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpsearch.protocol.chain import Inheritance
from hpsearch.spec import StudySpec

ATTR_TRAIN_LONGER = "train_longer"  # study attribute: {from, to, patience, reason}


@dataclass(frozen=True)
class LongerTraining:
    """The epochs a phase trains for instead of `before`, and why."""

    before: int
    epochs: int
    patience: int
    undertrained: bool  # else: as many epochs as the inherited choice ran
    reason: str

    def settings(self) -> dict[str, Any]:
        """The settings layer the phase's trials get, after every other (--set included)."""
        return {"epochs": self.epochs, "patience": self.patience}

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.epochs, "patience": self.patience,
                "undertrained": self.undertrained, "reason": self.reason}

    def line(self) -> str:
        why = "undertrained" if self.undertrained else "as the inherited choice"
        return f"epochs {self.before} -> {self.epochs} ({why}; early stop after {self.patience})"


def longer_training(spec: StudySpec, inheritance: Inheritance, epochs: int) -> LongerTraining | None:
    """The epochs of a phase whose file has `train_longer`: at least those its inherited
    choice ran (a phase never judges at fewer epochs than the one before it, whatever
    `--set epochs` says), times `factor` (at most `max_epochs`) when that choice is
    undertrained. None when that is not more than `epochs`, what the trials would run."""
    rule, choice = spec.train_longer, inheritance.last_choice()
    if rule is None or choice is None:
        return None
    ran = int((choice.get("config") or {}).get("epochs", epochs))
    target = max(epochs, ran)
    undertrained = _undertrained(choice)
    if undertrained:
        target = min(round(target * rule.factor), max(rule.max_epochs, target))
    if target <= epochs:
        return None
    source = inheritance.sources[-1]
    picked = f"the inherited choice ({source['study']}, trial {source['trial']})"
    reason = (f"{picked} is undertrained: its train loss still fell steeply at its last epoch "
              f"({ran})" if undertrained else f"{picked} was trained for {ran} epochs")
    return LongerTraining(epochs, target, rule.patience, undertrained, reason)


def _undertrained(choice: dict[str, Any]) -> bool:
    criteria = choice.get("criteria") or {}
    planned = (choice.get("config") or {}).get("epochs")
    stopped_early = planned is not None and criteria.get("epochs", planned) < planned
    return bool(criteria.get("undertrained")) and not stopped_early
