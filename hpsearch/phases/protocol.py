"""`hpsearch protocol`: every phase of PROTOCOL.md in order, each from the choices before it.

Each phase is an ordinary study run to its budget, so a second run finds every budget spent
and does no work twice; an interrupted phase resumes where it stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from hpsearch import records
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.phases.precheck import refuse_searched_overrides, refuse_stored_conflicts
from hpsearch.phases.test_set import run_test
from hpsearch.records import PhaseChoice, TestResult
from hpsearch.runner import RunObserver, RunSummary, run_study
from hpsearch.spec import StudySpec, find_study_file, load_study_spec
from hpsearch.spec.catalog import PHASES  # the order the phases run in
from hpsearch.storage import Storage, connect, load_study, study_name


@dataclass
class PhaseOutcome:
    """What one phase did: ran trials, found its budget spent, skipped, tested, had every
    trial eliminated, or could not start because a phase it inherits from has no choice."""

    phase: str
    study: str
    status: str  # "ran" | "done" | "skipped" | "tested" | "eliminated" | "blocked"
    line: str  # one summary line: the choice and its main criterion
    summary: RunSummary | None = None
    test: TestResult | None = None


def phases_between(start: str | None, stop: str | None) -> list[str]:
    """The phases from `start` to `stop`, inclusive, in protocol order."""
    for given in (start, stop):
        if given is not None and given not in PHASES:
            raise UsageError(
                f"--from/--to: unknown phase `{given}`; fix: use one of {', '.join(PHASES)}"
            )
    first = PHASES.index(start) if start else 0
    last = PHASES.index(stop) if stop else len(PHASES) - 1
    return list(PHASES[first : last + 1])


def run_order(specs: list[StudySpec]) -> list[StudySpec]:
    """The phases in protocol order, except that a phase runs after every phase it inherits
    from: a studies folder may rewire the chain (e.g. BatchNorm before the architecture), and
    a phase cannot start from a choice that does not exist yet. A cycle is refused."""
    waiting, placed = list(specs), []
    while waiting:
        names = {spec.name for spec in waiting}
        ready = next((spec for spec in waiting if not names & set(spec.parents())), None)
        if ready is None:
            files = ", ".join(f"{spec.file} (inherits {', '.join(spec.parents())})"
                              for spec in waiting)
            raise UsageError(f"inherits: the phases inherit from each other in a cycle: "
                             f"{files}; fix: make one of them inherit an earlier phase")
        waiting.remove(ready)
        placed.append(ready)
    return placed


def _with_later_parents(specs: list[StudySpec],
                        studies_dir: str | Path | None) -> list[StudySpec]:
    """The phases asked for, and the phases they inherit from that come after them in the
    protocol's order (a rewired chain's `--to architecture` runs `batchnorm` too). Parents
    before `--from` are not added: the user starts there from their stored choices."""
    first = PHASES.index(specs[0].name) if specs and specs[0].name in PHASES else 0
    specs = list(specs)
    for spec in specs:  # grows while it is walked: parents of added parents are added too
        for parent in spec.parents():
            if (parent in PHASES and PHASES.index(parent) > first
                    and parent not in {s.name for s in specs}):
                specs.append(load_study_spec(find_study_file(parent, studies_dir)))
    return specs


def run_protocol(
    *,
    studies_dir: str | Path | None = None,
    storage: str | Storage | None = None,
    overrides: Mapping[str, Any] | None = None,
    start: str | None = None,
    stop: str | None = None,
    trials_scale: float = 1.0,
    tag: str | None = None,
    observer: Callable[[str], RunObserver | None] = lambda phase: None,
    on_phase: Callable[[PhaseOutcome], None] = lambda outcome: None,
    artifacts: str | Path | None = None,
    tensorboard: str | Path | None = None,
) -> list[PhaseOutcome]:
    """Run the protocol's phases in order; return (and report) one outcome per phase.

    `studies_dir` holds the user's own phase files, which override the installed ones by
    name. Every phase file is read, `--set` checked against every phase's search and every
    stored phase's fixed settings, before the first phase runs: a bad request stops before
    anything is stored. A phase where every trial is eliminated stops only the phases that
    inherit from it; the run fails (NoChoice) when the last phase asked for has no choice.
    Every phase's chosen model and the tested one are kept in `artifacts` (checkpoints.py);
    with `tensorboard`, every trial writes its TensorBoard event files there.
    """
    if trials_scale <= 0:
        raise UsageError(f"--trials-scale: must be > 0, got {trials_scale}; fix: use e.g. 0.5")
    specs = run_order(_with_later_parents(
        [load_study_spec(find_study_file(phase, studies_dir))
         for phase in phases_between(start, stop)], studies_dir))
    refuse_searched_overrides(specs, overrides or {})
    refuse_stored_conflicts(specs, storage, overrides or {}, tag)
    storage = connect(storage)  # opened once: every phase runs on it
    outcomes: list[PhaseOutcome] = []
    without_choice: dict[str, str] = {}  # phase -> why it has no choice (its own or a parent's)
    for spec in specs:
        phase = spec.name
        outcome = _blocked(phase, spec, without_choice, tag) or _run_phase(
            phase, spec, storage, overrides or {}, trials_scale, tag, observer,
            {"artifacts": artifacts, "tensorboard": tensorboard})
        if outcome.status in ("eliminated", "blocked"):
            without_choice[phase] = outcome.line
        on_phase(outcome)
        outcomes.append(outcome)
    if outcomes and outcomes[-1].status in ("eliminated", "blocked"):
        raise NoChoice(_stopped_message(outcomes))
    return outcomes


def _run_phase(phase, spec, storage, overrides, trials_scale, tag, observer,
               outputs: dict) -> PhaseOutcome:
    """One phase; `outputs`: where its models (artifacts) and event files (tensorboard) go."""
    if spec.phase == "test":
        return _test_phase(spec, storage, overrides, tag, outputs["artifacts"])
    summary = run_study(
        spec, trials=_scaled_trials(spec, trials_scale), storage=storage, overrides=overrides,
        tag=tag, observer=observer(phase), **outputs,
    )
    outcome = _outcome(phase, summary)
    if outcome.status != "skipped" and not summary.choice:
        # No survivor: phases that do not inherit from this one still run (an eliminated
        # SGD branch does not stop the Adam branch, which the architecture phase inherits).
        outcome.status, outcome.line = "eliminated", _no_choice_line(summary, storage)
    return outcome


def _blocked(phase, spec, without_choice, tag) -> PhaseOutcome | None:
    """A phase whose parent has no choice cannot start: say which parent, and why."""
    parent = next((p for p in spec.parents() if p in without_choice), None)
    if parent is None:
        return None
    name = study_name(spec.name, tag)
    return PhaseOutcome(phase, name, "blocked", f"not run: it inherits `{parent}`, which has "
                        f"no choice ({without_choice[parent]})")


class NoChoice(HpsearchError):
    """The last phase asked for has no choice: every trial of it (or of a phase it inherits
    from) was eliminated or failed."""


def _no_choice_line(summary: RunSummary, storage: Storage) -> str:
    trials = load_study(storage, summary.study_name).get_trials(deepcopy=False)
    reasons = Counter(records.TrialFacts.of(t).reason or t.state.name.lower() for t in trials)
    listed = ", ".join(f"{reason} x{count}" for reason, count in reasons.most_common())
    return f"no trial survived ({listed or 'no trials'})"


def _stopped_message(outcomes: list[PhaseOutcome]) -> str:
    eliminated = "; ".join(f"phase `{o.phase}`: {o.line}" for o in outcomes
                           if o.status == "eliminated")
    last = outcomes[-1]
    ends = ("" if last.status == "eliminated"
            else f", so `{last.phase}`, which depends on it, had nothing to start from")
    return (
        f"{eliminated}{ends}; fix: train longer (--set epochs=N) or widen the phase's search "
        "space, then rerun (its budget counts pruned trials: raise it with --trials-scale)"
    )


def _scaled_trials(spec: StudySpec, scale: float) -> int | None:
    """Budgets scale with --trials-scale; a grid keeps its size (every point is a phase step)."""
    if spec.sampler.name == "grid" or scale == 1.0:
        return None
    return max(1, round(spec.trials * scale))


def _test_phase(spec: StudySpec, storage, overrides, tag, artifacts) -> PhaseOutcome:
    if not spec.inherits:
        raise UsageError(f"{spec.path}: inherits: the test phase must name the study to test")
    target = study_name(spec.inherits[-1], tag)
    runtime = {k: v for k, v in overrides.items() if k in ("device", "data_dir")}
    done = records.read_test(load_study(storage, target))  # the test set is used once
    result = done or run_test(target, storage, overrides=runtime, artifacts=artifacts)
    status = "done" if done else "tested"
    line = f"{result.text()} of {target}'s choice, evaluated once"
    return PhaseOutcome(spec.name, target, status, line, test=result)


def _outcome(phase: str, summary: RunSummary) -> PhaseOutcome:
    if summary.skipped is not None:
        return PhaseOutcome(phase, summary.study_name, "skipped", f"skipped: {summary.skipped}", summary)
    status = "done" if summary.nothing_to_do else "ran"
    line = choice_line(summary.choice)
    if summary.longer:  # the phase trains longer than asked: say so
        line = f"{summary.longer}; {line}"
    if summary.augmentation:  # the setup phase: whether it tried augmentation, and why
        line = f"{summary.augmentation}; {line}"
    if summary.not_searched:  # the phase searched less than its file: say what and why
        line += f"; not searched, the model does not read them: {', '.join(summary.not_searched)}"
    return PhaseOutcome(phase, summary.study_name, status, line, summary)


def choice_line(choice: PhaseChoice | None) -> str:
    """`chose trial 4 (lr=0.001): best_val_acc 0.9713` or why there is no choice."""
    if not choice:
        return "no completed trial: nothing chosen"
    params = ", ".join(f"{k}={_short(v)}" for k, v in choice.params.items())
    head = "kept the baseline" if choice.kept_baseline else f"chose trial {choice.trial}"
    main, value = choice.main_criterion, choice.main_value()
    tail = f": {main} {_short(value)}" if value is not None else ""
    extra = choice.extra_epochs
    cost = f", {_short(extra)} epochs to converge vs the baseline" if extra else ""
    return f"{head}" + (f" ({params})" if params else "") + tail + cost


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
