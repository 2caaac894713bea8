"""Running a study: validate everything first, then create or resume it and spend its budget.

The budget is a number of COMPLETE or PRUNED trials counted over the whole study, so a rerun
after an interruption finishes the rest, a rerun of a finished study runs nothing, and
several workers sharing one storage stop together once the study has enough trials.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import interrupt, notes, records
from hpsearch.checkpoints import keep_chosen
from hpsearch.errors import TrainingError
from hpsearch.objective import (
    CLAIMS,
    OverBudget,
    StudyObjective,
    TrialCrashed,
    TwinTrial,
)
from hpsearch.preparation import prepare_study
from hpsearch.protocol.chain import precondition_failure, skipped_choice
from hpsearch.protocol.choice import choose
from hpsearch.protocol.edges import RunTrial, extend_at_edges
from hpsearch.protocol.setup_phase import run_setup_phase
from hpsearch.records import PhaseChoice
from hpsearch.spec import StudySpec, find_study_file, load_study_spec
from hpsearch.storage import (
    GRACE_S,
    Storage,
    count_trials,
    count_trials_and_last_number,
    describe,
    fail_stale_trials,
    queue_retry,
    records_heartbeats,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A study whose trials crash this many times in a row stops: the cause is in the code or the
# data, and running the rest of the budget would only repeat the same failure. Two crashes
# in a row at the same place (same exception type, same file and line) are the same bug:
# the study stops at the second.
MAX_CONSECUTIVE_FAILURES = 3
# How often (s) a worker whose search is over looks whether the others' trials have ended:
# first after FIRST_SETTLE_POLL_S, then twice as long each time, up to SETTLE_POLL_S. The
# others' last trials often end within milliseconds (the end of a phase, of a run); a fixed
# 1 s poll idled each worker up to a second at every phase's end (storage_overhead.py's
# 2-worker rows, 2026-12-06: 39-76 ms a trial from run to run, half of it this wait).
FIRST_SETTLE_POLL_S = 0.05
SETTLE_POLL_S = 1.0
# A trial's first heartbeat is written just after the trial is stored (Optuna starts its
# heartbeat thread once `ask` returns): milliseconds later, seconds when workers contend for
# SQLite's lock. A waiting worker gives a RUNNING trial with no heartbeat this long (s) before
# it takes it for the trial of a worker that records none (a plain Optuna script's).
FIRST_HEARTBEAT_S = 10.0


class _LiveTrials:
    """Whether a waiting worker should go on waiting for other workers' RUNNING trials."""

    def __init__(self) -> None:
        self.silent_since: float | None = None  # RUNNING trials, none with a heartbeat yet
        self.next_pause_s = FIRST_SETTLE_POLL_S

    def pause(self) -> None:
        """Sleep before the next look, each pause twice the last, up to SETTLE_POLL_S."""
        pause_s = min(self.next_pause_s, SETTLE_POLL_S)
        time.sleep(pause_s)
        self.next_pause_s = 2 * pause_s

    def wait(self, running: bool, beating: bool) -> bool:
        """While some trial's worker beats; while RUNNING trials have none yet, for
        FIRST_HEARTBEAT_S."""
        if beating or not running:
            self.silent_since = None
            return beating
        self.silent_since = self.silent_since or time.monotonic()
        return time.monotonic() - self.silent_since < FIRST_HEARTBEAT_S


class RunObserver(Protocol):
    """What a front end (progress bar, notebook) hears while a study runs."""

    def on_start(self, study: optuna.Study, budget: int, finished: int) -> None: ...

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None: ...

    # Optional: def on_epoch(self, trial: int, record: dict, planned: int) -> None, each
    # epoch of the trial this process trains (the progress bar shows it).


@dataclass
class RunSummary:
    """The outcome of one `run_study` call."""

    study_name: str
    storage: str  # URL with the password masked
    budget: int
    finished_before: int  # COMPLETE + PRUNED trials before this run
    new_trials: list[int] = field(default_factory=list)  # numbers of the trials this run ran
    counts: dict[str, int] = field(default_factory=dict)  # whole study: state name -> count
    skipped: str | None = None  # why the phase did not apply (precondition, nothing to search)
    choice: PhaseChoice | None = None  # the phase's choice, as stored on the study
    not_searched: list[str] = field(default_factory=list)  # settings the model ignores
    longer: str | None = None  # "epochs 20 -> 40 (...)": the inherited choice is undertrained
    augmentation: str | None = None  # "augmentation tried: 300 training images per class..."
    warnings: list[str] = field(default_factory=list)  # e.g. a worker killed after the budget
    spec: StudySpec | None = field(default=None, repr=False)  # as the run resolved it

    @property
    def nothing_to_do(self) -> bool:
        # The budget was spent before, and no grid extension resumed (protocol/edges.py).
        return self.skipped is not None or (
            self.finished_before >= self.budget and not self.new_trials)


def resolve_spec(study: str | Path | StudySpec, studies_dir: str | Path | None) -> StudySpec:
    """A StudySpec from a spec, a study name (the user's studies folder, then the phase files
    installed with hpsearch: spec/catalog.py), or a YAML path."""
    if isinstance(study, StudySpec):
        return study
    return load_study_spec(find_study_file(str(study), studies_dir))


def run_study(
    study: str | Path | StudySpec,
    *,
    trials: int | None = None,
    storage: str | Storage | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
    studies_dir: str | Path | None = None,
    observer: RunObserver | None = None,
    tag: str | None = None,
    worker: int = 0,
    retries: int = 0,
    artifacts: str | Path | None = None,
    tensorboard: str | Path | None = None,
) -> RunSummary:
    """Run study `study` until it has `trials` COMPLETE or PRUNED trials (default: the file's).

    Everything that can be wrong with the input (study file, overrides, parents, model, data
    set) is checked before storage is written, so a bad request stores nothing. A phase whose
    precondition fails on what it inherits is skipped, the reason stored on its study. At the
    end the phase's choice (PROTOCOL.md's criteria, not only Optuna's best) is stored too.
    A trial that raises is queued again with the same parameters up to `retries` times.
    The chosen trial's model is kept (checkpoints.py) in `artifacts` (default: beside a
    SQLite file, else storage/artifacts); with `tensorboard`, a folder, every trial writes
    its TensorBoard event files under `<folder>/<study>/trial-<N>` (train/tensorboard.py).
    """
    spec = resolve_spec(study, studies_dir)
    prepared = prepare_study(spec, storage, overrides or {}, name=name, tag=tag, worker=worker,
                             artifacts=artifacts)
    spec, optuna_study = prepared.spec, prepared.study
    _listen_to_epochs(prepared.objective, observer)
    prepared.objective.tensorboard = Path(tensorboard).resolve() if tensorboard else None
    fail_stale_trials(optuna_study)  # a finished study too: no killed worker's trial stays RUNNING
    budget = trial_budget(spec, trials)
    summary = RunSummary(optuna_study.study_name, describe(storage), budget,
                         _finished(optuna_study),
                         not_searched=prepared.not_searched,
                         longer=prepared.longer.line() if prepared.longer else None,
                         augmentation=prepared.augmentation, spec=spec)
    skip = prepared.skip or precondition_failure(spec.precondition, prepared.inheritance)
    if skip is not None:
        # What it started from: a skipped phase trains nothing, so it passes on no extension.
        config = prepared.objective.config_for({}, longer=False).fixed_settings()
        records.write_choice(optuna_study, skipped_choice(skip, prepared.inheritance, config))
        notes.annotate(optuna_study)
        summary.skipped = skip
        return summary
    try:
        _search(optuna_study, prepared.objective, spec, budget, summary, observer, retries)
    except (KeyboardInterrupt, interrupt.StopRequested):
        raise _interrupted(optuna_study, prepared.objective.started) from None
    summary.counts = _state_counts(optuna_study)
    return summary


def _listen_to_epochs(objective: StudyObjective, observer: RunObserver | None) -> None:
    """An observer that shows epochs (the progress bar) hears each one of this process."""
    on_epoch = getattr(observer, "on_epoch", None)
    if on_epoch is None:
        return
    planned = objective.config_for({}).epochs
    objective.epoch_listener = lambda trial, record: on_epoch(trial, record, planned)


def _search(study, objective, spec, budget, summary, observer, retries: int = 0) -> None:
    """The phase's trials (its setup checks first), then its choice, extended at the grid's
    edges."""
    if spec.phase == "setup":
        run_setup_phase(study, objective)
    started = not summary.nothing_to_do
    if started:
        _optimize(study, objective, spec.baseline, budget, summary, observer, retries)
    run = _fixed_trials(study, objective, budget, summary, observer, started, retries)
    choice = extend_at_edges(study, spec, choose(study.get_trials(deepcopy=False), spec), run)
    if choice is not None:
        candidates = objective.candidates
        choice.checkpoint = keep_chosen(candidates.directory, study, choice, candidates)
        records.write_choice(study, choice)
        candidates.clear()  # after the choice is stored: another worker may be reading it
        notes.annotate(study)
    summary.choice = choice


def _interrupted(study: optuna.Study, started: list[int]) -> interrupt.Interrupted:
    """What the trials this process started were left as, read back from storage."""
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    return interrupt.Interrupted(
        study.study_name,
        failed=[n for n in started if states.get(n) == TrialState.FAIL],
        running=[n for n in started if states.get(n) == TrialState.RUNNING],
    )


def trial_budget(spec: StudySpec, trials: int | None) -> int:
    """The trial budget: `--trials`, else the file's. A grid runs each point once (plus the
    baseline): its size is the budget, and `--trials` can only lower it."""
    if spec.sampler.name != "grid":
        return spec.trials if trials is None else trials
    points = spec.space.grid_size() + int(spec.baseline)
    return points if trials is None else min(trials, points)


def _run_baseline(study: optuna.Study, objective: StudyObjective, guard: _BudgetGuard) -> None:
    """Technique phases first run the inherited configuration unchanged [000]."""
    trials = study.get_trials(deepcopy=False)
    if any(records.TrialFacts.of(t).baseline and t.state in FINISHED for t in trials):
        return
    _run_enqueued(study, objective, guard, objective.baseline_coordinates(),
                  {records.BASELINE: True})


def _fixed_trials(
    study: optuna.Study,
    objective: StudyObjective,
    budget: int,
    summary: RunSummary,
    observer: RunObserver | None,
    started: bool,
    retries: int,
) -> RunTrial | None:
    """How a grid's edge extension runs a trial at fixed params: like the baseline. None
    under a zero budget (`--trials 0`, the workers' checking and summary passes run nothing).
    """
    if budget == 0:
        return None
    guard = _BudgetGuard(budget, summary, observer, retries, objective=objective)

    def run(params: dict[str, Any], user_attrs: dict[str, Any]) -> None:
        nonlocal started
        if observer is not None and not started:  # a rerun resuming an extension
            observer.on_start(study, budget, _finished(study))
            started = True
        # A step another worker is training is waited for: its outcome decides the next
        # step and the choice, which every worker of the phase must store alike.
        _run_enqueued(study, objective, guard, params, user_attrs, wait_for_others=True)

    return run


def _run_enqueued(
    study: optuna.Study,
    objective: StudyObjective,
    guard: _BudgetGuard,
    params: dict[str, Any],
    user_attrs: dict[str, Any],
    wait_for_others: bool = False,
) -> None:
    """One trial at `params` marked with `user_attrs`; one an interrupted run left WAITING
    runs instead of a second. Optuna runs its queue in order: trials queued before it (a
    stale trial's retry) run first. With `wait_for_others`, when another worker is training
    that trial, return once it has finished (or run its retry, if that worker died).

    It runs under a RandomSampler: a GridSampler's bookkeeping (`grid_id`) is for its own
    points, and it refuses to sample for an enqueued trial that holds none.
    """
    if not _carrying(study, user_attrs, (TrialState.WAITING, TrialState.RUNNING)):
        study.enqueue_trial(params, user_attrs=user_attrs)  # not queued, nor run by another
    sampler, study.sampler = study.sampler, optuna.samplers.RandomSampler()
    objective.queued = user_attrs
    try:
        while True:
            while _waiting(study, user_attrs):  # until it ran (or another worker took it)
                # TwinTrial: two workers that queued the same trial at once run a copy each;
                # the later one ends at once and waits for the other's below.
                study.optimize(objective, n_trials=1, callbacks=[guard],
                               catch=_caught() + (OverBudget, TwinTrial))
            if not (wait_for_others and _wait_for_other_worker(study, user_attrs)):
                break  # else the other worker died: its retry is queued, and runs here
    finally:
        study.sampler, objective.queued = sampler, None


def _wait_for_other_worker(study: optuna.Study, user_attrs: dict[str, Any]) -> bool:
    """Wait while a live worker trains the trial carrying `user_attrs`; True when it died
    and its retry is queued. A trial whose worker records no heartbeats (a plain Optuna
    script's) is not waited for, once FIRST_HEARTBEAT_S has passed without one: its death
    could not be told from slowness."""
    live = _LiveTrials()
    while True:
        running = _carriers(study, user_attrs, (TrialState.RUNNING,))
        if not live.wait(bool(running), any(records_heartbeats(study, t) for t in running)):
            break
        interrupt.check()  # Ctrl-C while waiting: nothing of this worker's is running
        live.pause()
        fail_stale_trials(study)  # a dead worker's trial: failed, and queued again once
    return _waiting(study, user_attrs)


def _waiting(study: optuna.Study, user_attrs: dict[str, Any]) -> bool:
    return _carrying(study, user_attrs, (TrialState.WAITING,))


def _carrying(study: optuna.Study, user_attrs: dict[str, Any],
              states: tuple[TrialState, ...]) -> bool:
    """A trial in `states` carries every one of `user_attrs`."""
    return bool(_carriers(study, user_attrs, states))


def _carriers(study: optuna.Study, user_attrs: dict[str, Any],
              states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The trials in `states` that carry every one of `user_attrs`."""
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if all(t.user_attrs.get(key) == value for key, value in user_attrs.items())]


def _optimize(
    study: optuna.Study,
    objective: StudyObjective,
    baseline: bool,
    budget: int,
    summary: RunSummary,
    observer: RunObserver | None,
    retries: int,
) -> None:
    if observer is not None:
        observer.on_start(study, budget, summary.finished_before)
    guard = _BudgetGuard(budget, summary, observer, retries, objective=objective)
    if baseline:
        _run_baseline(study, objective, guard)
    if _finished(study) < budget and not guard.stopped:
        objective.budget = budget  # each new trial claims a slot first (objective.py)
        try:
            while True:
                ran, guard.budget_claimed = len(summary.new_trials), False
                while not _search_until_stopped(study, objective, guard, summary):
                    pass  # a trial was failed under this worker: the search goes on
                if guard.stopped:
                    break
                if _others_left(study):
                    continue  # a retry was queued meanwhile: it runs here
                if not _slot_freed(study, guard, budget, ran):
                    break
        finally:
            objective.budget = None
    if guard.stopped:
        raise TrainingError(
            f"{guard.consecutive_failures} trials in a row failed{guard.why}; last: "
            f"{guard.last_error}; fix: correct the code there (the error is stored on each "
            f"failed trial; rerun with --debug for the whole traceback)"
        )


def _slot_freed(study: optuna.Study, guard: _BudgetGuard, budget: int, ran: int) -> bool:
    """This worker stopped because every slot was claimed, and a slot another worker held
    is free again (its trial failed without a retry: a twin, a crash): it is filled here.
    Not when something else stopped the study (a spent grid, an observer), nor after a
    pass that ran no trial (no claim succeeded: nothing to gain from another)."""
    return (guard.budget_claimed and len(guard.summary.new_trials) > ran
            and _finished(study) < budget)


def _others_left(study: optuna.Study) -> bool:
    """Wait while other workers still train trials of this study, so every worker of a phase
    (`hpsearch protocol` on several machines) chooses from the same finished trials. A killed
    worker's trial is failed once its heartbeat is stale (GRACE_S) and queued again: True
    when such a queued trial is left to run, False when nothing is. Trials of workers that
    record no heartbeats (a plain Optuna script) cannot tell a dead worker from a slow one:
    they are not waited for. Through the gRPC proxy, hpsearch's workers record theirs as
    trial attributes (proxy_heartbeats.py). A trial just started has no heartbeat yet: it is
    given FIRST_HEARTBEAT_S to record one (without that wait, a worker could choose while
    another's last trial had just begun: two processes stored different choices)."""
    live = _LiveTrials()
    while True:
        fail_stale_trials(study)
        if count_trials(study, (TrialState.WAITING,)):
            return True
        beating = count_trials(study, (TrialState.RUNNING,), heartbeating=True) > 0
        running = beating or count_trials(study, (TrialState.RUNNING,)) > 0
        if not live.wait(running, beating):
            return False
        interrupt.check()  # Ctrl-C while waiting: nothing of this worker's is running
        live.pause()


def _search_until_stopped(study, objective, guard, summary: RunSummary) -> bool:
    """Optuna's loop until the guard stops it (True). False when a live trial of this worker
    was failed by another worker meanwhile (its heartbeat came late: a stalled disk, a
    swapping machine; optuna#4234): Optuna's `tell` refuses the finished trial and would end
    the run with a traceback; here the trial stays FAIL, a warning says so, the search goes
    on and a new trial takes its slot."""
    try:
        study.optimize(objective, callbacks=[guard],
                       catch=_caught() + (OverBudget, TwinTrial), gc_after_trial=False)
        return True
    except (ValueError, AssertionError) as err:
        if not _refused_tell(err) or not objective.started:
            raise
        number = objective.started[-1]
        if not study.get_trials(deepcopy=False)[number].state.is_finished():
            raise
        summary.warnings.append(
            f"trial {number} was failed by another worker while it trained here (a heartbeat "
            f"older than {GRACE_S} s); its result is dropped and a new trial took its slot")
        return False


def _refused_tell(err: BaseException) -> bool:
    """Optuna's `tell` refused a trial another process finished. When the objective had
    returned, Optuna's `_run_trial` finds a FAIL trial with no error of the objective's to
    log and raises `AssertionError("Should not reach.")` over the refusal: the refusal is
    then the assertion's context."""
    refusal = err.__context__ if isinstance(err, AssertionError) else err
    return isinstance(refusal, ValueError) and str(refusal).startswith("Cannot tell a ")


def _caught() -> tuple[type[Exception], ...]:
    """A crashed trial is recorded FAIL and the study goes on; with --debug
    (HPSEARCH_DEBUG=1) the first crash stops it, so its whole traceback can be shown."""
    return () if os.environ.get("HPSEARCH_DEBUG") == "1" else (TrialCrashed,)


@dataclass
class _BudgetGuard:
    """Optuna callback: stop at the budget, or after repeated crashes; feed the observer;
    queue a crashed trial again while it has retries left (--retries: a transient failure,
    CUDA out of memory while another process held the GPU). A crash counts towards stopping
    the study only once its retries are spent."""

    budget: int
    summary: RunSummary
    observer: RunObserver | None
    retries: int = 0
    consecutive_failures: int = 0
    budget_claimed: bool = False  # the study was stopped because every slot is claimed
    last_error: str = ""
    sites: list[str] = field(default_factory=list)  # where each failure of the run happened
    objective: StudyObjective | None = None  # told each count of the claimed slots

    @property
    def stopped(self) -> bool:
        return self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES or self.repeated

    @property
    def repeated(self) -> bool:
        """The last two failures in a row happened at the same place: the same bug."""
        return self.consecutive_failures >= 2 and len(set(self.sites[-2:])) == 1

    @property
    def why(self) -> str:
        return f", the same way ({self.sites[-1]})" if self.repeated else ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        facts = records.TrialFacts.of(trial)
        if facts.over_budget:
            self.budget_claimed = True
            study.stop()  # other workers hold the rest of the budget
            return
        if facts.twin_of is not None:
            return  # not a failure of the code: the next trial samples apart
        self.summary.new_trials.append(trial.number)
        retried = self._retried(study, trial)
        if not retried:
            self._count_failure(trial)
        if self.observer is not None:
            self.observer.on_trial(study, trial)
        if not retried and self._claimed(study) >= self.budget:
            self.budget_claimed = True
            study.stop()  # the trials still running elsewhere finish the budget
        elif not retried and self.stopped:
            study.stop()
        interrupt.check()  # the trial is stored in full: a stop request ends the run here

    def _claimed(self, study: optuna.Study) -> int:
        """Finished trials, and those running or queued (other workers': this one's is
        done); the count is handed to the objective, whose next claim may reuse it."""
        claimed, last_number = count_trials_and_last_number(study, CLAIMS)
        if self.objective is not None:
            self.objective.claims_counted = (claimed, last_number)
        return claimed

    def _retried(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The trial crashed and is queued again (it runs next here, or on another worker)."""
        return (self.retries > 0 and trial.state == TrialState.FAIL
                and records.TrialFacts.of(trial).error_site is not None
                and queue_retry(study, trial, self.retries))

    def _count_failure(self, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.consecutive_failures = 0
            self.sites.clear()
            return
        self.consecutive_failures += 1
        facts = records.TrialFacts.of(trial)
        self.last_error = facts.error or "unknown error"
        self.sites.append(facts.error_site or f"trial {trial.number}")


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
