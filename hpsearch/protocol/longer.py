"""Acting on an `undertrained` verdict: the next phase trains longer, with early stopping.

The protocol's own criteria mark a choice `undertrained` when its train loss still falls
steeply at the last epoch: more epochs would still pay [000]; so do a validation accuracy
that peaks in the last epochs (the curve still rising when training stopped). A phase that keeps judging its
techniques at the epochs its parent ran then judges regularization, BatchNorm or a scheduler
before their gains can show (a scheduler "costs extra epochs" [000]; the reference runs use
1000 [001]). A phase file with `train_longer:` (spec/_protocol_fields.TrainLongerSpec) gives
its trials `factor` times the epochs, up to `max_epochs`, and early stopping after
`patience` epochs without a new validation peak, so converged trials stop paying. A choice
that stopped early has met its plateau: it is not still improving, whatever its train loss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpsearch.protocol.chain import Inheritance, still_improving
from hpsearch.spec import StudySpec


@dataclass(frozen=True)
class LongerTraining:
    """The epochs a phase trains for instead of `before`, and why."""

    before: int
    epochs: int
    patience: int
    improving: bool  # the choice was still improving at its end; else: as many epochs
    reason: str

    def settings(self) -> dict[str, Any]:
        """The settings layer the phase's trials get, after every other (--set included)."""
        return {"epochs": self.epochs, "patience": self.patience}

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.epochs, "patience": self.patience,
                "still_improving": self.improving, "reason": self.reason}

    def line(self) -> str:
        why = "still improving" if self.improving else "as the inherited choice"
        return f"epochs {self.before} -> {self.epochs} ({why}; early stop after {self.patience})"


# A chain of phases that keep improving doubles its epochs phase after phase: at most 4x the
# epochs the run asks for (the phase's own or `--set epochs`), so a quick `--set epochs=3`
# run stays quick (12 at most) while the default 20 reaches `max_epochs`.
MAX_OVER_ASKED = 4
def longer_training(spec: StudySpec, inheritance: Inheritance, epochs: int) -> LongerTraining | None:
    """The epochs of a phase whose file has `train_longer`: at least those its inherited
    choice ran (a phase never judges at fewer epochs than the one before it, whatever
    `--set epochs` says), times `factor` (at most `max_epochs`) when that choice was still
    improving at its end. None when that is not more than `epochs`, what the trials would run."""
    rule, choice = spec.train_longer, inheritance.last_choice()
    if rule is None or choice is None:
        return None
    ran = int(choice.config.get("epochs", epochs))
    target = max(epochs, ran)
    improving = still_improving(choice)
    if improving:
        cap = max(min(rule.max_epochs, MAX_OVER_ASKED * epochs), target)
        target = min(round(target * rule.factor), cap)
    if target <= epochs:
        return None
    source = inheritance.sources[-1]
    picked = f"the inherited choice ({source['study']}, trial {source['trial']})"
    reason = f"{picked} {improving}" if improving else f"{picked} was trained for {ran} epochs"
    return LongerTraining(epochs, target, rule.patience, bool(improving), reason)
