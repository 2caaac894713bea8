"""Chaining phases: a phase starts from the choices of the phases it inherits from.

Each finished phase stores its choice on its study (`selection`: the chosen trial, its
resolved configuration and criteria, and why). A child phase merges its parents' chosen
configurations in order, records where they came from, and checks its precondition on them
(PROTOCOL.md: regularization only when overfitting [000, 003]; micro-optimisation only if
everything else is sound [000]; the final, longer training only while the curves still rise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from hpsearch.config import what_it_computes
from hpsearch.protocol.criteria import OVERFIT_ACC_GAP, OVERFIT_LOSS_GAP
from hpsearch.records import PhaseChoice

# Curves that are not sound: overshoot, saw-teeth, no progress [000]. A curve still falling
# at the end ("undertrained") is sound; it only wants more epochs.
UNSOUND = ("diverged", "oscillating", "underfitting")


@dataclass
class Inheritance:
    """What a phase starts from: merged parent configurations and their sources."""

    config: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)  # [{study, trial, reason}]
    choices: dict[str, PhaseChoice] = field(default_factory=dict)  # parent study -> choice

    def last_choice(self) -> PhaseChoice | None:
        """The choice of the last parent: the configuration the phase is about to change."""
        return self.choices[self.sources[-1]["study"]] if self.sources else None

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "from": self.sources}


def merge(parents: Sequence[tuple[str, PhaseChoice]]) -> Inheritance:
    """The chosen configurations of `(study, choice)` parents merged in order (later parents
    win), where they run left out: what a phase starts from."""
    inheritance = Inheritance()
    for name, choice in parents:
        inheritance.config.update(what_it_computes(choice.config))
        inheritance.sources.append({"study": name, "trial": choice.trial, "reason": choice.reason})
        inheritance.choices[name] = choice
    return inheritance


def precondition_failure(precondition: str, inheritance: Inheritance) -> str | None:
    """Why the phase does not apply to what it inherits, or None when it does."""
    choice = inheritance.last_choice()
    if precondition == "none" or choice is None:
        return None
    criteria = choice.criteria
    if precondition == "overfits":
        gap = criteria.get("overfitting_gap")
        # The trial's own verdict decides, at the threshold that applied to its gap: both
        # accuracies at the peak mean an accuracy gap, else (regression, a module logging no
        # train accuracy) a relative loss gap. Choices stored before the kind was: by accuracy.
        kind = criteria.get("overfitting_gap_kind") or (
            "accuracy" if criteria.get("peak_val_acc") is not None else "loss")
        if kind == "accuracy":
            gap_name, threshold = "train-val accuracy gap", OVERFIT_ACC_GAP
        else:
            gap_name, threshold = "relative val-train loss gap", OVERFIT_LOSS_GAP
        if gap is None:
            return ("the inherited choice's overfitting gap is unknown (its runs report no "
                    "train loss or accuracy at the peak); regularization applies only when "
                    "overfitting [003]")
        overfits = criteria.get("overfits")
        if overfits is None:  # a choice stored before criteria had `overfits`: judge its gap
            overfits = gap > threshold
        if not overfits:
            return (
                f"the inherited choice does not overfit ({gap_name} {_fmt(gap)} "
                f"<= {threshold}); regularization applies only when overfitting [003]"
            )
        return None
    if precondition == "improving":
        if still_improving(choice) is None:
            return (f"the inherited choice was no longer improving at its end (validation "
                    f"peak at epoch {criteria.get('peak_epoch')} of {criteria.get('epochs')}, "
                    "train loss not falling steeply): more epochs would not pay")
        return None
    verdict = criteria.get("lr_verdict")
    if verdict in UNSOUND:
        return (
            f"the inherited curves are not sound ({verdict}); micro-optimisation only when "
            "everything else is sound [000]: fix the earlier phases first"
        )
    return None


# A validation peak in the last 10% of the epochs: the curve was still rising when training
# stopped, whatever the train loss did. Only on runs of 10 epochs or more: below, the last
# 10% is the last epoch alone, and the train-loss verdict (`undertrained`) decides.
LATE_PEAK = 0.9
LATE_PEAK_MIN_EPOCHS = 10


def still_improving(choice: PhaseChoice) -> str | None:
    """How the chosen trial was still improving when it stopped, or None: undertrained (its
    train loss still falling steeply [000]) or a validation peak in its last epochs. A trial
    that stopped early met its plateau."""
    criteria = choice.criteria
    planned = choice.config.get("epochs")
    ran = criteria.get("epochs", planned)
    if planned is None or ran is None or ran < planned:
        return None
    if criteria.get("undertrained"):
        return (f"is undertrained: its train loss still fell steeply at its last epoch "
                f"({ran})")
    peak = criteria.get("peak_epoch")
    if peak is not None and ran >= LATE_PEAK_MIN_EPOCHS and peak >= LATE_PEAK * ran:
        return (f"was still improving: its validation peak came at epoch {peak} of {ran}")
    return None


def skipped_choice(
    reason: str, inheritance: Inheritance, config: dict[str, Any] | None = None
) -> PhaseChoice:
    """The choice of a skipped phase: the configuration it started from (what it inherits,
    with its own base and `--set`), unchanged, and never fewer epochs than its parent's
    choice trained (`--set epochs=4` asks the phases for 4; a longer-trained parent's 16 are
    what its choice is: the test phase must retrain that)."""
    parent = inheritance.last_choice()
    config = dict(inheritance.config if config is None else config)
    if parent and parent.config.get("epochs", 0) > config.get("epochs", 0):
        config["epochs"] = parent.config["epochs"]
        config["patience"] = parent.config.get("patience", config.get("patience"))
    same = parent is not None and what_it_computes(parent.config) == what_it_computes(config)
    return PhaseChoice(
        trial=None,
        checkpoint=parent.checkpoint if same else None,  # the parent's model is this one
        config=config,
        criteria=dict(parent.criteria) if parent else {},
        main_criterion=parent.main_criterion if parent else None,
        reason=f"skipped: {reason}",
        skipped=True,
    )


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"
